"""The services' refusals as the console shows them: Chinese first, the service's words kept."""

from __future__ import annotations

import pytest

from console.service_text import in_chinese, shown


@pytest.mark.parametrize(
    ("problem", "chinese"),
    [
        ("is required", "必填"),
        ("title: is required", "必填"),
        ("is required for a new budget line", "新设预算科目时必填"),
        ("must be between 1 and 50", "须在 1 至 50 之间"),
        ("must be from 0 to 30", "须在 0 至 30 之间"),
        ("is longer than 200 characters", "不能超过 200 个字符"),
        ("must not exceed the proposed amount of 150000 fen", "不能超过规则核定金额 ¥1,500.00"),
        ("exceeds the maximum of 100000000000 fen", "超过上限 ¥1,000,000,000.00"),
        ("is not a valid unified social credit code", "不是有效的统一社会信用代码"),
        # Receiving accounts, as services/disbursement/accounts.py words them.
        ("is required (户名: the registered name)", "必填，户名须为单位登记名称"),
        ("must be 8 to 32 digits (账号: digits only)", "须为 8 至 32 位数字"),
        ("must be the 12-digit CNAPS bank code (开户行联行号)", "须为 12 位开户行联行号"),
        (
            "must be the enterprise's registered name '深圳市甲科技有限公司' "
            "(户名须与单位登记名称一致)",
            "户名须与单位登记名称“深圳市甲科技有限公司”一致",
        ),
        (
            "fin-a proposed this change: a second finance officer must approve it "
            "(变更收款账户须另一名财务人员审批)",
            "此项变更由您提出，须由另一名财务人员审批（审批与提出分离）",
        ),
        (
            "receiving account version 2 of application app-1 is confirmed, not a change "
            "waiting for approval",
            "该变更已不在待审批状态（已审批，或已被新的变更申请替代）",
        ),
    ],
)
def test_known_problems_are_said_in_chinese(problem: str, chinese: str) -> None:
    assert in_chinese(problem) == chinese


def test_chinese_first_with_the_services_words_and_english_as_written() -> None:
    assert shown("zh-CN", "must not be negative") == "不能为负数（must not be negative）"
    assert shown("en", "must not be negative") == "must not be negative"
    assert shown("zh-CN", "the plan was made by you") == "the plan was made by you"
