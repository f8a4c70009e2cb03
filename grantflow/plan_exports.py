"""What a funding plan becomes outside Grantflow, for the console's finance pages and the CLI
(`grantflow plan notice`, `grantflow plan export`): the notice text the city publishes
("安排资金X万元对N个项目予以资助" with its list of projects) and the plan's lines as CSV and XLSX
for the finance bureau's own spreadsheets.

Money stays integer fen until it is written: 万元 and 元 are formatted from integers (divmod), and
the spreadsheet gets exact Decimal amounts, so no float ever rounds an award. Headers are Chinese,
as the bureau files them; the CSV starts with a BOM so Excel opens it as UTF-8.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from openpyxl import Workbook
from openpyxl.styles import Font

from grantflow.v1 import disbursement_pb2
from services.common.labels import LABELS
from services.common.vocabulary import PaymentState, PlanState, VocabularyError

FEN_PER_YUAN = 100
FEN_PER_WAN = 1_000_000  # 1 万元 = 10,000 元 = 1,000,000 分

LINE_HEADERS = (
    "序号",
    "申报编号",
    "单位名称",
    "统一社会信用代码",
    "资助金额（元）",
    "资助金额（万元）",
    "拨付状态",
    "尝试次数",
    "支付流水号",
    "失败原因",
    "专项代码",
)


def wan_yuan(fen: int) -> str:
    """Integer fen in 万元, exact: 300000 -> "0.3", 171_470_000_00 -> "17147", 1 -> "0.000001"."""
    sign = "-" if fen < 0 else ""
    whole, rest = divmod(abs(fen), FEN_PER_WAN)
    fraction = f"{rest:06d}".rstrip("0")
    return f"{sign}{whole}.{fraction}" if fraction else f"{sign}{whole}"


def plain_yuan(fen: int) -> str:
    """Integer fen as yuan with two decimals and no symbol or separators: 123456 -> "1234.56"."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), FEN_PER_YUAN)
    return f"{sign}{whole}.{cents:02d}"


def yuan_decimal(fen: int) -> Decimal:
    """Integer fen as an exact Decimal of yuan (for a spreadsheet's number cell)."""
    return Decimal(fen).scaleb(-2)


def payment_label(state: int) -> str:
    try:
        return LABELS[PaymentState.from_proto(state)]
    except (KeyError, VocabularyError):
        return ""


def plan_label(state: int) -> str:
    try:
        return LABELS[PlanState.from_proto(state)]
    except (KeyError, VocabularyError):
        return ""


@dataclass(frozen=True)
class NoticeItem:
    number: int
    applicant_name: str
    credit_code: str
    application_id: str
    amount_wan: str


@dataclass(frozen=True)
class NoticeSection:
    """One program's part of a plan's notice: its headline sentence and its projects."""

    program_code: str
    program_name: str
    headline: str
    items: tuple[NoticeItem, ...]
    total_fen: int


@dataclass(frozen=True)
class Notice:
    """A plan's published notice: the headline sentence, then each program's section (a plan
    of one program has one section, whose headline is the notice's)."""

    headline: str
    sections: tuple[NoticeSection, ...]
    total_fen: int

    @property
    def items(self) -> tuple[NoticeItem, ...]:
        return tuple(item for section in self.sections for item in section.items)

    @property
    def text(self) -> str:
        lines = [self.headline, ""]
        for section in self.sections:
            if len(self.sections) > 1:
                lines.append(section.headline)
            lines += [
                f"{item.number}. {item.applicant_name}（{item.credit_code}）：{item.amount_wan}万元"
                for item in section.items
            ]
            if len(self.sections) > 1:
                lines.append("")
        return "\n".join(lines).rstrip("\n")


def chinese_name(name: str) -> str:
    """A catalogue name without its English gloss: "中小微企业上云资助 (SME cloud ...)" -> the
    Chinese, which is what a published notice prints."""
    return name.split(" (", 1)[0].strip() or name


def line_program(plan: disbursement_pb2.FundingPlan, line: disbursement_pb2.PaymentLine) -> str:
    """The program a line funds (plans made before plans could span programs name it once, on
    the plan)."""
    return line.program_code or plan.program_code


def _by_program(
    plan: disbursement_pb2.FundingPlan,
) -> dict[str, list[disbursement_pb2.PaymentLine]]:
    """The plan's lines per program, programs in the order their first line appears."""
    groups: dict[str, list[disbursement_pb2.PaymentLine]] = {}
    for line in plan.lines:
        groups.setdefault(line_program(plan, line), []).append(line)
    return groups


def plan_notice(plan: disbursement_pb2.FundingPlan, names: Mapping[str, str]) -> Notice:
    """The notice of a plan ("安排资金X万元对N个项目予以资助" per program, `names` giving each
    program code's catalogue name), every line in the plan's order within its program.

    Sums are of the lines themselves, so each headline agrees with the list below it."""
    sections: list[NoticeSection] = []
    number = 0
    for code, lines in _by_program(plan).items():
        items = []
        for line in lines:
            number += 1
            items.append(
                NoticeItem(
                    number=number,
                    applicant_name=line.applicant_name,
                    credit_code=line.applicant_credit_code,
                    application_id=line.application_id,
                    amount_wan=wan_yuan(line.amount_fen),
                )
            )
        total = sum(line.amount_fen for line in lines)
        name = chinese_name(names[code]) if names.get(code) else code
        sections.append(
            NoticeSection(
                program_code=code,
                program_name=name,
                headline=f"{name}（{code}）：安排资金{wan_yuan(total)}万元对{len(items)}个项目予以资助。",
                items=tuple(items),
                total_fen=total,
            )
        )
    total = sum(section.total_fen for section in sections)
    if len(sections) == 1:
        headline = sections[0].headline
    else:
        headline = (
            f"{plan.title}：安排资金{wan_yuan(total)}万元对{number}个项目予以资助，"
            f"涉及{len(sections)}个专项。"
        )
    return Notice(headline=headline, sections=tuple(sections), total_fen=total)


def _line_row(number: int, line: disbursement_pb2.PaymentLine) -> list[object]:
    return [
        number,
        line.application_id,
        line.applicant_name,
        line.applicant_credit_code,
        plain_yuan(line.amount_fen),
        wan_yuan(line.amount_fen),
        payment_label(line.state),
        line.attempts,
        line.gateway_reference,
        line.failure_reason,
        line.program_code,
    ]


@dataclass(frozen=True)
class _Subtotal:
    """A program's subtotal row, after its lines, in a plan of several programs."""

    program_code: str
    lines: list[disbursement_pb2.PaymentLine]


def _rows(
    plan: disbursement_pb2.FundingPlan,
) -> list[tuple[int, disbursement_pb2.PaymentLine] | _Subtotal]:
    """The export's rows in order: (number, line) grouped by program, each program followed by
    its subtotal when the plan spans several programs."""
    rows: list[tuple[int, disbursement_pb2.PaymentLine] | _Subtotal] = []
    groups = _by_program(plan)
    number = 0
    for code, lines in groups.items():
        for line in lines:
            number += 1
            rows.append((number, line))
        if len(groups) > 1:
            rows.append(_Subtotal(code, lines))
    return rows


def _sum_row(label: str, lines: list[disbursement_pb2.PaymentLine]) -> list[object]:
    total = sum(line.amount_fen for line in lines)
    return [label, f"{len(lines)}个项目", "", "", plain_yuan(total), wan_yuan(total)]


def plan_csv(plan: disbursement_pb2.FundingPlan) -> bytes:
    """The plan's lines as CSV: a header row, one row per line (grouped by program, with a
    subtotal row per program when there are several), a total row; UTF-8 with BOM."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(LINE_HEADERS)
    for row in _rows(plan):
        if isinstance(row, _Subtotal):
            writer.writerow(_sum_row(f"小计 {row.program_code}", row.lines))
        else:
            writer.writerow(_line_row(*row))
    writer.writerow(_sum_row("合计", list(plan.lines)))
    return buffer.getvalue().encode("utf-8-sig")


def plan_xlsx(plan: disbursement_pb2.FundingPlan, names: Mapping[str, str]) -> bytes:
    """The plan as a workbook: the plan's facts, then the lines under a header row (grouped by
    program, with subtotals when there are several), then the total.

    Amounts in 元 are number cells (exact Decimals, formatted with two decimals) so the bureau
    can sum them; 万元 is the text the notice prints."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "资助计划"
    bold = Font(bold=True)
    programs = "、".join(
        f"{chinese_name(names[code]) if names.get(code) else code}（{code}）"
        for code in _by_program(plan)
    )
    facts = [
        ("资助计划", plan.title),
        ("计划编号", plan.plan_id),
        ("项目", programs or plan.program_code),
        ("状态", plan_label(plan.state)),
        ("制单人", plan.created_by),
        ("审核人", plan.approved_by),
    ]
    for key, value in facts:
        sheet.append([key, value])
        sheet.cell(row=sheet.max_row, column=1).font = bold
    sheet.append([])
    sheet.append(list(LINE_HEADERS))
    for cell in sheet[sheet.max_row]:
        cell.font = bold

    def append_sum(label: str, lines: list[disbursement_pb2.PaymentLine]) -> None:
        row = _sum_row(label, lines)
        row[4] = yuan_decimal(sum(line.amount_fen for line in lines))
        sheet.append(row)
        sheet.cell(row=sheet.max_row, column=5).number_format = "#,##0.00"
        for cell in sheet[sheet.max_row]:
            cell.font = bold

    for item in _rows(plan):
        if isinstance(item, _Subtotal):
            append_sum(f"小计 {item.program_code}", item.lines)
            continue
        number, line = item
        row = _line_row(number, line)
        row[4] = yuan_decimal(line.amount_fen)
        sheet.append(row)
        sheet.cell(row=sheet.max_row, column=5).number_format = "#,##0.00"
    append_sum("合计", list(plan.lines))
    for column, width in zip(
        "ABCDEFGHIJK", (8, 34, 30, 22, 16, 16, 12, 10, 24, 30, 16), strict=True
    ):
        sheet.column_dimensions[column].width = width
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
