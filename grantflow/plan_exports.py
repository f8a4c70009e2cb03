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
class Notice:
    """A plan's published notice: the headline sentence and its list of projects."""

    program_name: str
    headline: str
    items: tuple[NoticeItem, ...]
    total_fen: int

    @property
    def text(self) -> str:
        lines = [self.headline, ""]
        lines += [
            f"{item.number}. {item.applicant_name}（{item.credit_code}）：{item.amount_wan}万元"
            for item in self.items
        ]
        return "\n".join(lines)


def chinese_name(name: str) -> str:
    """A catalogue name without its English gloss: "中小微企业上云资助 (SME cloud ...)" -> the
    Chinese, which is what a published notice prints."""
    return name.split(" (", 1)[0].strip() or name


def plan_notice(plan: disbursement_pb2.FundingPlan, program_name: str) -> Notice:
    """The notice of one plan (a plan funds one program): every line of it, in the plan's order.

    The sum is of the lines themselves, so the headline always agrees with the list below it."""
    total = sum(line.amount_fen for line in plan.lines)
    items = tuple(
        NoticeItem(
            number=number,
            applicant_name=line.applicant_name,
            credit_code=line.applicant_credit_code,
            application_id=line.application_id,
            amount_wan=wan_yuan(line.amount_fen),
        )
        for number, line in enumerate(plan.lines, start=1)
    )
    name = chinese_name(program_name) if program_name else plan.program_code
    headline = f"{name}（{plan.program_code}）：安排资金{wan_yuan(total)}万元对{len(items)}个项目予以资助。"
    return Notice(program_name=name, headline=headline, items=items, total_fen=total)


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
    ]


def _total_row(plan: disbursement_pb2.FundingPlan) -> list[object]:
    total = sum(line.amount_fen for line in plan.lines)
    return ["合计", f"{len(plan.lines)}个项目", "", "", plain_yuan(total), wan_yuan(total)]


def plan_csv(plan: disbursement_pb2.FundingPlan) -> bytes:
    """The plan's lines as CSV: a header row, one row per line, a total row; UTF-8 with BOM."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(LINE_HEADERS)
    for number, line in enumerate(plan.lines, start=1):
        writer.writerow(_line_row(number, line))
    writer.writerow(_total_row(plan))
    return buffer.getvalue().encode("utf-8-sig")


def plan_xlsx(plan: disbursement_pb2.FundingPlan, program_name: str) -> bytes:
    """The plan as a workbook: the plan's facts, then the lines under a header row, then the total.

    Amounts in 元 are number cells (exact Decimals, formatted with two decimals) so the bureau
    can sum them; 万元 is the text the notice prints."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "资助计划"
    bold = Font(bold=True)
    facts = [
        ("资助计划", plan.title),
        ("计划编号", plan.plan_id),
        ("项目", f"{program_name or plan.program_code}（{plan.program_code}）"),
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
    for number, line in enumerate(plan.lines, start=1):
        row = _line_row(number, line)
        row[4] = yuan_decimal(line.amount_fen)
        sheet.append(row)
        sheet.cell(row=sheet.max_row, column=5).number_format = "#,##0.00"
    total = sum(line.amount_fen for line in plan.lines)
    sheet.append(["合计", f"{len(plan.lines)}个项目", "", "", yuan_decimal(total), wan_yuan(total)])
    sheet.cell(row=sheet.max_row, column=5).number_format = "#,##0.00"
    for cell in sheet[sheet.max_row]:
        cell.font = bold
    for column, width in zip("ABCDEFGHIJ", (8, 34, 30, 22, 16, 16, 12, 10, 24, 30), strict=True):
        sheet.column_dimensions[column].width = width
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
