"""The services' refusals in Chinese first.

The services state a refused field's problem in English (services/common/validation.py and the
use cases: "is required", "must be between 1 and 50", "is longer than 200 characters"). A
person using the console reads Chinese first, so each known problem is said in Chinese, the
service's own words kept beside it for whoever must look it up; an unknown problem shows as the
service wrote it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from grantflow.format import yuan


def _fen(match: re.Match[str]) -> str:
    return yuan(int(match.group(1)))


# (pattern of the service's problem, its Chinese: a text with {1}, {2} for the groups, or a
# function of the match). Matched against the end of the message: field names come first.
Chinese = str | Callable[[re.Match[str]], str]
_PROBLEMS: list[tuple[str, Chinese]] = [
    (r"is required for a new budget line$", "新设预算科目时必填"),
    # Receiving accounts (services/disbursement/accounts.py): the Chinese term the service puts
    # in brackets is part of its message, so these come before the plain "is required".
    (r"is required \(户名: the registered name\)$", "必填，户名须为单位登记名称"),
    (r"is required \(开户行名称\)$", "必填"),
    (r"must be 8 to 32 digits \(账号: digits only\)$", "须为 8 至 32 位数字"),
    (r"is one digit repeated: not an account$", "同一数字重复，不是有效账号"),
    (r"must be the 12-digit CNAPS bank code \(开户行联行号\)$", "须为 12 位开户行联行号"),
    (r"names no bank \(its first 3 digits are 000\)$", "不是有效的联行号（前三位为 000）"),
    (
        r"must be the enterprise's registered name ['\"](.+)['\"] \(户名须与单位登记名称一致\)$",
        "户名须与单位登记名称“{1}”一致",
    ),
    (
        r"is confirmed already: a different one is a change, approved by finance "
        r"\(ProposeAccountChange\)$",
        "收款账户已确认；更换账户须提出变更，经财务审批后生效",
    ),
    (
        r"that account is the one in force already: nothing to change$",
        "该账户已是生效账户，无需变更",
    ),
    (
        r"has no confirmed receiving account to change: the applicant confirms one first "
        r"\(ConfirmReceivingAccount\)$",
        "尚未确认收款账户，须先由申报单位确认后才能变更",
    ),
    (
        r"proposed this change: a second finance officer must approve it "
        r"\(变更收款账户须另一名财务人员审批\)$",
        "此项变更由您提出，须由另一名财务人员审批（审批与提出分离）",
    ),
    (
        r"is \w+, not a change waiting for approval$",
        "该变更已不在待审批状态（已审批，或已被新的变更申请替代）",
    ),
    (
        r"is not your enterprise's: an applicant gives only its own award's receiving account$",
        "不是本单位的申报，不能填报其收款账户",
    ),
    (r"was released: nothing is to be paid$", "资助已释放，无需拨付"),
    (r"is required$", "必填"),
    (r"must not be negative$", "不能为负数"),
    (r"must be positive$", "须为正数"),
    (r"must be greater than zero$", "须大于零"),
    (r"must be at least (\d+)$", "不能小于 {1}"),
    (r"must be (?:between|from) (\d+) (?:and|to) (\d+)$", "须在 {1} 至 {2} 之间"),
    (r"must be at most (\d+) working days$", "不能超过 {1} 个工作日"),
    (r"is longer than (\d+) characters$", "不能超过 {1} 个字符"),
    (r"contains control characters$", "含有控制字符"),
    (r"is not a valid unified social credit code$", "不是有效的统一社会信用代码"),
    (r"is not a (?:page )?token this service issued$", "分页标记无效，请从第一页重新查询"),
    (r"must be a date YYYY-MM-DD$", "日期格式须为 YYYY-MM-DD"),
    (r"is not a valid time$", "时间无效"),
    (r"is listed twice$", "重复填写"),
    (r"appears twice$", "重复填写"),
    (r"has more than (\d+) \w+$", "超过上限 {1} 项"),
    (r"exceeds the maximum of (\d+) fen$", lambda m: f"超过上限 {_fen(m)}"),
    (r"exceeds the maximum of (\d+)$", "超过上限 {1}"),
    (
        r"must not exceed the proposed amount of (\d+) fen$",
        lambda m: f"不能超过规则核定金额 {_fen(m)}",
    ),
]
PROBLEMS = [(re.compile(pattern), zh) for pattern, zh in _PROBLEMS]


def in_chinese(problem: str) -> str | None:
    """The Chinese of a service's problem, or None when it is not one the console knows."""
    for pattern, zh in PROBLEMS:
        match = pattern.search(problem)
        if match is None:
            continue
        if callable(zh):
            return zh(match)
        return _filled(zh, match.groups())
    return None


def _filled(text: str, groups: tuple[str | Any, ...]) -> str:
    return re.sub(r"\{(\d)\}", lambda g: str(groups[int(g.group(1)) - 1]), text)


def shown(lang: str, problem: str) -> str:
    """What a person reads: Chinese first with the service's words beside it; in English (or
    for a problem the console does not know) the service's words."""
    zh = in_chinese(problem)
    if lang == "en" or zh is None:
        return problem
    return f"{zh}（{problem}）"
