"""The program catalogue as data: loading the seed file and checking a ProgramRule before it is
published (the basics here, the amount rule, review stages and lists in
workflows.rules.validate_program). Pure functions, no database: the servicer and the CLI share
them. docs/catalogue.md describes the nine programs of the seed file in words.
"""

from __future__ import annotations

import json
from pathlib import Path

from google.protobuf import json_format

from grantflow.v1 import common_pb2
from services.common import validation
from services.common.errors import InvalidArgument
from services.common.vocabulary import Department
from workflows.rules import MAX_WORKING_DAYS, PROGRAM_CODE, validate_program

CATALOGUE_FILE = Path(__file__).with_name("catalogue.json")


def program_code(field: str, value: str) -> str:
    value = value.strip()
    if not value:
        raise InvalidArgument(field, "is required")
    if not PROGRAM_CODE.match(value):
        raise InvalidArgument(
            field, "must be 2-32 characters: an upper-case letter, then A-Z, 0-9 or -"
        )
    return value


def involves(rule: common_pb2.ProgramRule, department: Department | None) -> bool:
    """Whether a department owns or reviews this rule version (and so may see its filings)."""
    if department is None:
        return False
    number = department.to_proto()
    return rule.owner_department == number or number in rule.review_departments


def _working_days(field: str, value: int) -> None:
    if value < 1:
        raise InvalidArgument(field, "must be at least 1 working day")
    if value > MAX_WORKING_DAYS:
        raise InvalidArgument(field, f"must be at most {MAX_WORKING_DAYS} working days")


def validate_rule(rule: common_pb2.ProgramRule, field: str = "rule") -> common_pb2.ProgramRule:
    """Checks a rule version; returns a normalised copy (trimmed text) or raises InvalidArgument
    naming the offending field, e.g. "rule.amount_rule.cap_fen"."""
    checked = common_pb2.ProgramRule()
    checked.CopyFrom(rule)
    checked.code = program_code(f"{field}.code", rule.code)
    if rule.version < 1:
        raise InvalidArgument(f"{field}.version", "must be at least 1")
    checked.name = validation.text(f"{field}.name", rule.name, max_len=200)
    validation.term(f"{field}.owner_department", Department, rule.owner_department)
    if not rule.review_departments:
        raise InvalidArgument(f"{field}.review_departments", "needs at least one department")
    seen_departments: set[int] = set()
    for index, department in enumerate(rule.review_departments):
        validation.term(f"{field}.review_departments[{index}]", Department, department)
        if department in seen_departments:
            raise InvalidArgument(f"{field}.review_departments[{index}]", "is listed twice")
        seen_departments.add(department)

    if not rule.HasField("window_opens_at"):
        raise InvalidArgument(f"{field}.window_opens_at", "is required")
    if not rule.HasField("window_closes_at"):
        raise InvalidArgument(f"{field}.window_closes_at", "is required")
    if rule.window_closes_at.ToNanoseconds() <= rule.window_opens_at.ToNanoseconds():
        raise InvalidArgument(f"{field}.window_closes_at", "must be after window_opens_at")

    if len(rule.required_figures) > 50:
        raise InvalidArgument(f"{field}.required_figures", "has more than 50 entries")
    seen_figures: set[str] = set()
    for index, name in enumerate(rule.required_figures):
        if not validation.FIGURE_NAME.match(name):
            raise InvalidArgument(f"{field}.required_figures[{index}]", "is not a figure name")
        if name in seen_figures:
            raise InvalidArgument(f"{field}.required_figures[{index}]", "is listed twice")
        seen_figures.add(name)

    if not rule.HasField("amount_rule"):
        raise InvalidArgument(f"{field}.amount_rule", "is required")

    _working_days(f"{field}.notice_working_days", rule.notice_working_days)
    _working_days(f"{field}.supplement_working_days", rule.supplement_working_days)
    _working_days(f"{field}.review_working_days", rule.review_working_days)

    # The amount kinds, policies, review stages and lists (workflows/rules.py, shared with the
    # tests of the rules): the first problem is the answer, so nothing of the version is written.
    problems = validate_program(checked)
    if problems:
        path, reason = problems[0]
        raise InvalidArgument(f"{field}.{path}", reason)
    return checked


def load_catalogue(path: Path = CATALOGUE_FILE) -> list[common_pb2.ProgramRule]:
    """The seed catalogue, each rule checked; a bad data file fails loudly, naming the entry."""
    document = json.loads(path.read_text(encoding="utf-8"))
    rules: list[common_pb2.ProgramRule] = []
    for index, entry in enumerate(document["programs"]):
        rule = json_format.ParseDict(entry, common_pb2.ProgramRule())
        try:
            rules.append(validate_rule(rule, field=f"programs[{index}]"))
        except InvalidArgument as error:
            raise ValueError(f"{path}: {error.message}") from error
    return rules
