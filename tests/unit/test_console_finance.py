"""The finance console's notice text and exports: totals from the lines, 万元 exact from integer
fen, the CSV readable by Excel (BOM) and the XLSX readable by openpyxl with its header and total
rows."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from openpyxl import load_workbook

from console.pages.finance import Progress
from grantflow.plan_exports import (
    LINE_HEADERS,
    plain_yuan,
    plan_csv,
    plan_notice,
    plan_xlsx,
    wan_yuan,
)
from grantflow.v1 import disbursement_pb2 as pb


def sample_plan() -> pb.FundingPlan:
    lines = [
        pb.PaymentLine(
            line_id="l1",
            application_id="app-1",
            applicant_name="深圳市甲科技有限公司",
            applicant_credit_code="91440300MA5DC1XX1A",
            amount_fen=300_000,  # 3,000.00 元 = 0.3 万元
            state=pb.PAYMENT_STATE_PAID,
            attempts=1,
            gateway_reference="TRX-1",
        ),
        pb.PaymentLine(
            line_id="l2",
            application_id="app-2",
            applicant_name="深圳市乙制造有限公司",
            applicant_credit_code="91440300MA5DC1XX2B",
            amount_fen=12_345_678,  # 123,456.78 元 = 12.345678 万元
            state=pb.PAYMENT_STATE_FAILED,
            attempts=3,
            failure_reason="账户已销户",
        ),
        pb.PaymentLine(
            line_id="l3",
            application_id="app-3",
            applicant_name="深圳市丙服务有限公司",
            applicant_credit_code="91440300MA5DC1XX3C",
            amount_fen=1,  # one fen: 0.000001 万元, still exact
            state=pb.PAYMENT_STATE_PENDING,
        ),
    ]
    return pb.FundingPlan(
        plan_id="plan-1",
        program_code="SME-CLOUD",
        title="中小企业上云补贴 2026年第一批",
        state=pb.PLAN_STATE_PAYING,
        created_by="maker",
        approved_by="checker",
        total_fen=sum(line.amount_fen for line in lines),
        lines=lines,
    )


TOTAL_FEN = 300_000 + 12_345_678 + 1
NAMES = {"SME-CLOUD": "中小企业上云补贴 (SME cloud adoption)", "TECH-SMART": "智能化改造奖补"}


def two_program_plan() -> pb.FundingPlan:
    """The sample's lines spread over two programs of one budget line, interleaved."""
    plan = sample_plan()
    plan.program_code = ""
    for line, code in zip(plan.lines, ("SME-CLOUD", "TECH-SMART", "SME-CLOUD"), strict=True):
        line.program_code = code
    return plan


@pytest.mark.parametrize(
    ("fen", "wan"),
    [
        (0, "0"),
        (1, "0.000001"),
        (300_000, "0.3"),
        (1_000_000, "1"),
        (12_345_678, "12.345678"),
        (17_147_000_000, "17147"),  # 171.47 million yuan, the 2021 batch
        (1_373_400_000 + 10, "1373.40001"),
        (-2_500_000, "-2.5"),
    ],
)
def test_wan_yuan_is_exact_from_integer_fen(fen: int, wan: str) -> None:
    assert wan_yuan(fen) == wan
    # The same number as exact decimal arithmetic says (no float anywhere).
    assert Decimal(wan) == Decimal(fen) / Decimal(1_000_000)


def test_the_notice_says_the_plans_money_in_wan_and_its_number_of_projects() -> None:
    notice = plan_notice(sample_plan(), NAMES)
    assert notice.total_fen == TOTAL_FEN
    assert notice.headline == (
        "中小企业上云补贴（SME-CLOUD）：安排资金12.645679万元对3个项目予以资助。"
    )
    assert [item.amount_wan for item in notice.items] == ["0.3", "12.345678", "0.000001"]
    assert "1. 深圳市甲科技有限公司（91440300MA5DC1XX1A）：0.3万元" in notice.text
    assert sum(Decimal(item.amount_wan) for item in notice.items) == Decimal("12.645679")


def test_a_plan_of_two_programs_is_noticed_per_program_with_the_plans_total() -> None:
    notice = plan_notice(two_program_plan(), NAMES)
    assert notice.headline == (
        "中小企业上云补贴 2026年第一批：安排资金12.645679万元对3个项目予以资助，涉及2个专项。"
    )
    assert [section.headline for section in notice.sections] == [
        "中小企业上云补贴（SME-CLOUD）：安排资金0.300001万元对2个项目予以资助。",
        "智能化改造奖补（TECH-SMART）：安排资金12.345678万元对1个项目予以资助。",
    ]
    # Numbered through the notice, each project under its program's headline.
    assert [(item.number, item.application_id) for item in notice.items] == [
        (1, "app-1"),
        (2, "app-3"),
        (3, "app-2"),
    ]
    text = notice.text.splitlines()
    assert (
        text.index(notice.sections[1].headline)
        == text.index("3. 深圳市乙制造有限公司（91440300MA5DC1XX2B）：12.345678万元") - 1
    )


def test_the_exports_of_a_plan_of_two_programs_have_subtotals_that_add_up() -> None:
    rows = list(csv.reader(io.StringIO(plan_csv(two_program_plan()).decode("utf-8-sig"))))
    assert [row[0] for row in rows[1:]] == [
        "1",
        "2",
        "小计 SME-CLOUD",
        "3",
        "小计 TECH-SMART",
        "合计",
    ]
    assert rows[3][4:6] == ["3000.01", "0.300001"]
    assert rows[2][-1] == "SME-CLOUD"
    book = load_workbook(io.BytesIO(plan_xlsx(two_program_plan(), NAMES)))
    sheet = book.active
    assert sheet is not None
    cells = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert cells[2][1] == "中小企业上云补贴（SME-CLOUD）、智能化改造奖补（TECH-SMART）"
    sums = {
        row[0]: Decimal(str(row[4])) for row in cells if str(row[0]).startswith(("小计", "合计"))
    }
    assert sums["小计 SME-CLOUD"] + sums["小计 TECH-SMART"] == sums["合计"] == Decimal("126456.79")


def test_the_csv_opens_in_excel_with_chinese_headers_lines_and_total() -> None:
    data = plan_csv(sample_plan())
    assert data.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs to read UTF-8
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert tuple(rows[0]) == LINE_HEADERS
    assert [row[1] for row in rows[1:4]] == ["app-1", "app-2", "app-3"]
    assert rows[2][4:8] == ["123456.78", "12.345678", "拨付失败", "3"]
    assert rows[-1][:2] == ["合计", "3个项目"]
    assert rows[-1][4:6] == [plain_yuan(TOTAL_FEN), "12.645679"]
    assert rows[-1][4] == "126456.79"


def test_the_xlsx_opens_with_its_header_lines_and_exact_total() -> None:
    book = load_workbook(io.BytesIO(plan_xlsx(sample_plan(), NAMES)))
    sheet = book.active
    assert sheet is not None
    rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert rows[0][:2] == ["资助计划", "中小企业上云补贴 2026年第一批"]
    header = next(i for i, row in enumerate(rows) if tuple(row) == LINE_HEADERS)
    lines = rows[header + 1 : header + 4]
    assert [row[2] for row in lines] == [
        "深圳市甲科技有限公司",
        "深圳市乙制造有限公司",
        "深圳市丙服务有限公司",
    ]
    assert [Decimal(str(row[4])) for row in lines] == [
        Decimal("3000.00"),
        Decimal("123456.78"),
        Decimal("0.01"),
    ]
    total = rows[header + 4]
    assert total[:2] == ["合计", "3个项目"]
    assert Decimal(str(total[4])) == Decimal("126456.79")
    assert total[5] == "12.645679"
    assert len(rows) == header + 5  # nothing after the total


def test_progress_counts_lines_and_money_by_payment_state() -> None:
    progress = Progress.of(sample_plan())
    assert (progress.total, progress.paid, progress.failed, progress.pending) == (3, 1, 1, 1)
    assert (progress.paid_fen, progress.failed_fen, progress.pending_fen) == (
        300_000,
        12_345_678,
        1,
    )
    assert progress.total_fen == TOTAL_FEN
    assert progress.paid_percent == 33
