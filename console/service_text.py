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
