"""CheckEligibility and the credit list over real gRPC, on SQLite and PostgreSQL: each named
check keeps its outcome and evidence with the application (GetApplication shows them), the
registry's data decides sector, size and registration, the credit list bars only within its
validity period, and duplicate funding, excluded programs and the yearly cap per enterprise
look across the enterprise's applications.

The programs are the tests' own rules (published here), so the catalogue may change freely."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from grantflow.sample import credit_code
from grantflow.v1 import applications_pb2, common_pb2
from services.common.db import to_timestamp
from services.common.vocabulary import Role
from tests.integration._applications_server import ApplicationsHarness, applications_service

YUAN = 100
MILLION = 1_000_000 * YUAN
SOFTWARE = credit_code(101)
LEASING = credit_code(102)
SHENSHAN = credit_code(103, division="441500")
MOVED = credit_code(104)  # a 4403 code whose registered address is now in Guangzhou
MAKER = credit_code(105)  # generated: a Shenzhen manufacturer
REGISTRY = {
    "enterprises": {
        SOFTWARE: {"industry_code": "I65"},
        LEASING: {"industry_code": "L71"},
        SHENSHAN: {
            "address": {
                "province": "广东省",
                "city": "深圳市",
                "district": "深汕特别合作区",
                "division_code": "441521",
                "detail": "鹅埠镇创新大道1号",
            }
        },
        MOVED: {
            "address": {
                "province": "广东省",
                "city": "广州市",
                "district": "天河区",
                "division_code": "440106",
                "detail": "天河路1号",
            }
        },
    }
}


def rule(code: str, **fields: Any) -> common_pb2.ProgramRule:
    values: dict[str, Any] = {
        "code": code,
        "version": 1,
        "name": f"测试计划 {code}",
        "owner_department": "DEPARTMENT_INDUSTRY",
        "review_departments": ["DEPARTMENT_INDUSTRY"],
        "window_opens_at": "2020-01-01T00:00:00Z",
        "window_closes_at": "2099-01-01T00:00:00Z",
        "amount_rule": {
            "basis_figure": "investment_fen",
            "rate_basis_points": 1000,
            "cap_fen": 20 * MILLION,
        },
        "required_figures": ["investment_fen", "staff_count", "annual_revenue_fen"],
        "notice_working_days": 7,
        "supplement_working_days": 5,
        "review_working_days": 10,
    }
    values.update(fields)
    return json_format.ParseDict(values, common_pb2.ProgramRule())


RULES = [
    rule("T-SME", sme_only=True),
    rule(
        "T-CAP",
        amount_rule={
            "basis_figure": "investment_fen",
            "rate_basis_points": 1000,
            "cap_fen": 10 * MILLION,
            "enterprise_year_cap_fen": 10 * MILLION,
        },
    ),
    rule("T-ONE", excluded_programs=["T-TWO"]),
    rule("T-TWO"),
    rule("T-ORG", eligible_registration_kinds=["social_organisation"]),
]
FIGURES = {"investment_fen": 50 * MILLION, "staff_count": 40, "annual_revenue_fen": 20 * MILLION}


@pytest.fixture
async def service(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ApplicationsHarness]:
    data = tmp_path / "registry.json"
    data.write_text(json.dumps(REGISTRY, ensure_ascii=False), encoding="utf-8")
    monkeypatch.setenv("REGISTRY_DATA_FILE", str(data))
    async with applications_service(database_url, tmp_path, seed=False) as harness:
        ops = harness.auth(Role.OPS)
        for program in RULES:
            await harness.stub.PublishProgramVersion(
                applications_pb2.PublishProgramVersionRequest(rule=program), metadata=ops
            )
        yield harness


class Enterprise:
    """Files applications as one enterprise; checks them as the system."""

    def __init__(self, service: ApplicationsHarness, code: str) -> None:
        self.service, self.code = service, code
        self.filed = 0

    async def file(self, program: str, **fields: Any) -> str:
        self.filed += 1
        values: dict[str, Any] = {
            "request_id": f"req-{self.code}-{self.filed:04d}",
            "program_code": program,
            "applicant_credit_code": self.code,
            "applicant_name": f"深圳市测试企业{self.code[-4:]}有限公司",
            "project_title": f"项目{self.filed}",
            "figures": FIGURES,
        }
        values.update(fields)
        answer = await self.service.stub.SubmitApplication(
            applications_pb2.SubmitApplicationRequest(**values),
            metadata=self.service.auth(Role.APPLICANT, enterprise=self.code),
        )
        return answer.application_id

    async def check(self, application_id: str) -> applications_pb2.CheckEligibilityResponse:
        return await self.service.stub.CheckEligibility(
            applications_pb2.CheckEligibilityRequest(application_id=application_id),
            metadata=self.service.auth(Role.SYSTEM),
        )

    async def award(self, application_id: str, amount_fen: int) -> None:
        """The grant reports the award noticed (as GrantWorkflow does after its decision)."""
        await self.service.stub.ReportGrantStage(
            applications_pb2.ReportGrantStageRequest(
                event_id=f"grant-{application_id}-5",
                change=applications_pb2.GrantStageChanged(
                    application_id=application_id,
                    stage=common_pb2.GRANT_STAGE_IN_NOTICE,
                    award_amount_fen=amount_fen,
                    sequence=5,
                ),
            ),
            metadata=self.service.auth(Role.SYSTEM),
        )

    async def reject(self, application_id: str) -> None:
        await self.service.stub.ReportGrantStage(
            applications_pb2.ReportGrantStageRequest(
                event_id=f"grant-{application_id}-6",
                change=applications_pb2.GrantStageChanged(
                    application_id=application_id,
                    stage=common_pb2.GRANT_STAGE_REJECTED,
                    reason="未通过",
                    sequence=6,
                ),
            ),
            metadata=self.service.auth(Role.SYSTEM),
        )


def check(answer: Any, name: str) -> applications_pb2.EligibilityCheck:
    (found,) = [c for c in answer.checks if c.name == name]
    return found  # type: ignore[no-any-return]


def evidence(answer: Any, name: str) -> dict[str, Any]:
    return json.loads(check(answer, name).evidence_json)  # type: ignore[no-any-return]


async def test_every_named_check_is_kept_with_the_application(
    service: ApplicationsHarness,
) -> None:
    maker = Enterprise(service, MAKER)
    application_id = await maker.file("T-SME", project_code="SZ-2026-0001")
    answer = await maker.check(application_id)
    assert answer.passed and answer.remaining_year_cap_fen == -1
    assert [c.name for c in answer.checks] == [
        "registry",
        "credit",
        "registration",
        "registration_kind",
        "enterprise_size",
        "duplicate_funding",
        "excluded_programs",
        "enterprise_year_cap",
    ]
    assert all(c.passed and c.reason_zh for c in answer.checks)
    registry = evidence(answer, "registry")
    assert registry["industry_code"].startswith("C") and registry["legal_representative"]
    assert registry["address"]["city"] == "深圳市"
    assert (
        "中型" in check(answer, "enterprise_size").reason_zh
        or "小型" in check(answer, "enterprise_size").reason_zh
    )

    shown = await service.stub.GetApplication(
        applications_pb2.GetApplicationRequest(application_id=application_id),
        metadata=service.auth(Role.APPLICANT, enterprise=MAKER),
    )
    assert shown.project_code == "SZ-2026-0001"
    assert shown.eligibility.passed
    assert [c.name for c in shown.eligibility.checks] == [c.name for c in answer.checks]
    # Running it again replaces the evidence (no second set of rows).
    await maker.check(application_id)
    assert service.count("eligibility_check", f"application_id = '{application_id}'") == 8
    assert service.count("eligibility_outcome") == 1
    assert service.count("audit_record", "action = 'eligibility.checked'") == 2


async def test_a_500_person_software_firm_is_large_and_refused_by_an_sme_program(
    service: ApplicationsHarness,
) -> None:
    big = {"investment_fen": 50 * MILLION, "staff_count": 500, "annual_revenue_fen": 200 * MILLION}
    software = Enterprise(service, SOFTWARE)
    answer = await software.check(await software.file("T-SME", figures=big))
    size = check(answer, "enterprise_size")
    assert not answer.passed and not size.passed
    assert "软件和信息技术服务业" in size.reason_zh and "大型" in size.reason_zh
    assert json.loads(size.evidence_json)["sector"] == "software"
    # The same figures from a manufacturer are a medium enterprise.
    maker = Enterprise(service, MAKER)
    assert check(
        await maker.check(await maker.file("T-SME", figures=big)), "enterprise_size"
    ).passed


async def test_a_leasing_firm_is_sized_by_its_total_assets(service: ApplicationsHarness) -> None:
    leasing = Enterprise(service, LEASING)
    figures = {
        "investment_fen": 50 * MILLION,
        "staff_count": 350,
        "annual_revenue_fen": 10 * MILLION,
    }
    unknown = check(
        await leasing.check(await leasing.file("T-SME", figures=figures)), "enterprise_size"
    )
    assert not unknown.passed and "total_assets_fen" in unknown.reason_zh
    large = check(
        await leasing.check(
            await leasing.file("T-SME", figures={**figures, "total_assets_fen": 1500 * MILLION})
        ),
        "enterprise_size",
    )
    assert not large.passed and "租赁和商务服务业" in large.reason_zh
    small = await leasing.check(
        await leasing.file("T-SME", figures={**figures, "total_assets_fen": 50 * MILLION})
    )
    assert check(small, "enterprise_size").passed
    assert evidence(small, "enterprise_size")["measures"]["total_assets_fen"] == 50 * MILLION


async def test_registration_in_shenzhen_follows_the_registered_address(
    service: ApplicationsHarness,
) -> None:
    shenshan = Enterprise(service, SHENSHAN)
    inside = await shenshan.check(await shenshan.file("T-TWO"))
    assert not SHENSHAN[2:6].startswith("4403")
    assert check(inside, "registration").passed
    assert "深汕特别合作区" in check(inside, "registration").reason_zh
    moved = Enterprise(service, MOVED)
    outside = await moved.check(await moved.file("T-TWO"))
    assert MOVED[2:6] == "4403" and not outside.passed
    assert not check(outside, "registration").passed
    assert "440106" in check(outside, "registration").reason_zh


async def test_the_registration_kind_must_be_one_the_program_accepts(
    service: ApplicationsHarness,
) -> None:
    maker = Enterprise(service, MAKER)
    answer = await maker.check(await maker.file("T-ORG"))
    kind = check(answer, "registration_kind")
    assert not kind.passed and "社会组织" in kind.reason_zh


async def test_duplicate_funding_of_a_project_across_programs_is_refused(
    service: ApplicationsHarness,
) -> None:
    maker = Enterprise(service, MAKER)
    first = await maker.file("T-TWO", project_code="SZ-2026-0042", project_title="智能产线改造")
    same_code = await maker.file("T-SME", project_code="sz-2026-0042", project_title="另一个名字")
    same_title = await maker.file("T-CAP", project_title=" 智能产线改造 ")
    other = await maker.file("T-CAP", project_code="SZ-2026-0043", project_title="仓储系统")
    assert check(await maker.check(first), "duplicate_funding").passed  # filed first
    for application_id in (same_code, same_title):
        answer = await maker.check(application_id)
        duplicate = check(answer, "duplicate_funding")
        assert not answer.passed and not duplicate.passed
        assert first in duplicate.reason_zh and "T-TWO" in duplicate.reason_zh
        assert [m["application_id"] for m in evidence(answer, "duplicate_funding")["matches"]] == [
            first
        ]
    assert check(await maker.check(other), "duplicate_funding").passed
    # Once the first is rejected, the project is free again.
    await maker.reject(first)
    assert check(await maker.check(same_code), "duplicate_funding").passed


async def test_a_program_the_rule_excludes_is_refused(service: ApplicationsHarness) -> None:
    maker = Enterprise(service, MAKER)
    two = await maker.file("T-TWO", project_title="数字化车间")
    one = await maker.file("T-ONE", project_title="研发中心")  # another project
    answer = await maker.check(one)
    excluded = check(answer, "excluded_programs")
    assert not answer.passed and not excluded.passed and "T-TWO" in excluded.reason_zh
    assert evidence(answer, "excluded_programs")["excluded_programs"] == ["T-TWO"]
    assert check(answer, "duplicate_funding").passed
    # T-TWO's rule excludes nothing, but T-ONE excludes it: the later T-TWO filing is refused too.
    second = Enterprise(service, SOFTWARE)
    await second.file("T-ONE", project_title="甲")
    later_two = await second.check(await second.file("T-TWO", project_title="乙"))
    assert not check(later_two, "excluded_programs").passed
    assert check(await maker.check(two), "excluded_programs").passed  # filed first, not awarded


async def test_the_yearly_cap_per_enterprise_spans_its_applications(
    service: ApplicationsHarness,
) -> None:
    maker = Enterprise(service, MAKER)
    first = await maker.file("T-CAP", project_title="一期")
    answer = await maker.check(first)
    assert answer.passed and answer.remaining_year_cap_fen == 10 * MILLION
    await maker.award(first, 7 * MILLION)

    second = await maker.file("T-CAP", project_title="二期")
    answer = await maker.check(second)
    assert answer.passed and answer.remaining_year_cap_fen == 3 * MILLION
    cap = evidence(answer, "enterprise_year_cap")
    assert cap["used_fen"] == 7 * MILLION and cap["awards"][0]["application_id"] == first
    await maker.award(second, answer.remaining_year_cap_fen)

    third = await maker.file("T-CAP", project_title="三期")
    answer = await maker.check(third)
    assert not answer.passed and answer.remaining_year_cap_fen == 0
    assert "上限" in check(answer, "enterprise_year_cap").reason_zh
    # Another enterprise's awards are its own.
    other = Enterprise(service, SOFTWARE)
    assert (await other.check(await other.file("T-CAP"))).remaining_year_cap_fen == 10 * MILLION


async def test_a_credit_list_entry_bars_only_within_its_validity_period(
    service: ApplicationsHarness,
) -> None:
    ops = service.auth(Role.OPS, subject="ops-zhao")
    now = datetime.now(UTC)

    async def listed(code: str, request_id: str, start: datetime, end: datetime | None) -> Any:
        request = applications_pb2.AddCreditListEntryRequest(
            request_id=request_id,
            credit_code=code,
            list_name="失信联合惩戒对象名单",
            reason="拒不履行法院判决",
            source="深圳市中级人民法院 (2026) 粤03执1号",
            valid_from=to_timestamp(start),
            valid_until=to_timestamp(end),  # None leaves it unset
        )
        return await service.stub.AddCreditListEntry(request, metadata=ops)

    past, current, future = credit_code(201), credit_code(202), credit_code(203)
    await listed(past, "credit-past-0001", now - timedelta(days=400), now - timedelta(days=1))
    entry = await listed(current, "credit-now-00001", now - timedelta(days=1), None)
    await listed(future, "credit-future-01", now + timedelta(days=30), now + timedelta(days=400))
    # Idempotent by request id; other content under the same id is refused.
    again = await listed(current, "credit-now-00001", now - timedelta(days=1), None)
    assert again.entry_id == entry.entry_id and entry.created_by == "ops-zhao"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await listed(future, "credit-now-00001", now, None)
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert service.count("audit_record", "action = 'credit.listed'") == 3

    for code, barred in ((past, False), (current, True), (future, False)):
        enterprise = Enterprise(service, code)
        answer = await enterprise.check(await enterprise.file("T-TWO"))
        credit = check(answer, "credit")
        assert credit.passed is not barred, code
        assert answer.passed is not barred
        if barred:
            assert "失信联合惩戒对象名单" in credit.reason_zh
            assert json.loads(credit.evidence_json)["entries"][0]["entry_id"] == entry.entry_id

    valid_now = await service.stub.ListCreditListEntries(
        applications_pb2.ListCreditListEntriesRequest(valid_at=to_timestamp(now)), metadata=ops
    )
    assert [e.credit_code for e in valid_now.entries] == [current]
    everything = await service.stub.ListCreditListEntries(
        applications_pb2.ListCreditListEntriesRequest(page_size=2), metadata=ops
    )
    assert len(everything.entries) == 2 and everything.next_page_token
    rest = await service.stub.ListCreditListEntries(
        applications_pb2.ListCreditListEntriesRequest(
            page_size=2, page_token=everything.next_page_token
        ),
        metadata=ops,
    )
    assert [e.credit_code for e in [*everything.entries, *rest.entries]] == [
        future,
        current,
        past,
    ]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"credit_code": "91440300000000000X"}, "credit_code"),
        ({"list_name": ""}, "list_name"),
        ({"reason": " "}, "reason"),
        ({"request_id": "short"}, "request_id"),
        ({"valid_until": to_timestamp(datetime(2020, 1, 1, tzinfo=UTC))}, "valid_until"),
    ],
)
async def test_bad_credit_entries_are_refused_naming_the_field(
    service: ApplicationsHarness, fields: dict[str, Any], field: str
) -> None:
    values: dict[str, Any] = {
        "request_id": "credit-bad-00001",
        "credit_code": credit_code(301),
        "list_name": "失信联合惩戒对象名单",
        "reason": "测试",
        "valid_from": to_timestamp(datetime(2026, 1, 1, tzinfo=UTC)),
    }
    values.update(fields)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await service.stub.AddCreditListEntry(
            applications_pb2.AddCreditListEntryRequest(**values), metadata=service.auth(Role.OPS)
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (refused.value.details() or "")
    assert service.count("credit_list_entry") == 0


async def test_who_may_check_and_keep_the_credit_list(service: ApplicationsHarness) -> None:
    maker = Enterprise(service, MAKER)
    application_id = await maker.file("T-TWO")
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await service.stub.CheckEligibility(
            applications_pb2.CheckEligibilityRequest(application_id=application_id),
            metadata=service.auth(Role.APPLICANT, enterprise=MAKER),
        )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await service.stub.ListCreditListEntries(
            applications_pb2.ListCreditListEntriesRequest(),
            metadata=service.auth(Role.REVIEWER, department="industry"),
        )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await maker.check("nosuchapplication")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await maker.file("T-TWO", project_code="-bad code")
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "project_code" in (bad.value.details() or "")


async def grantflow(service: ApplicationsHarness, *args: str) -> tuple[int, str]:
    """The CLI in a child process against the service (which keeps serving in this loop)."""
    import asyncio
    import os
    import sys

    env = {
        **os.environ,
        "APPLICATIONS_ADDRESS": service.settings.applications_address,
        "AUTH_SECRET": service.settings.auth_secret,
        "COLUMNS": "200",
    }
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "grantflow"),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode()


async def test_the_cli_keeps_the_credit_list_and_shows_the_checks(
    service: ApplicationsHarness,
) -> None:
    code = credit_code(401)
    status, output = await grantflow(
        service,
        "credit", "add", code, "--list", "失信联合惩戒对象名单", "--reason", "拒不履行判决",
        "--from", "2020-01-01", "--until", "2099-01-01", "--source", "(2026) 粤03执1号",
    )  # fmt: skip
    assert status == 0, output
    assert "已列入 失信联合惩戒对象名单" in output and "2099-01-01" in output
    status, output = await grantflow(service, "credit", "list", "--on", "2026-06-01")
    assert status == 0 and code in output and "共 1 条" in output
    status, output = await grantflow(service, "credit", "add", code, "--list", "x",
                                     "--reason", "y", "--from", "June")  # fmt: skip
    assert status == 2 and "YYYY-MM-DD" in output

    enterprise = Enterprise(service, code)
    application_id = await enterprise.file("T-TWO", project_code="SZ-2026-0401")
    status, output = await grantflow(service, "status", application_id)
    assert status == 0 and "资格审查：尚未进行" in output
    await enterprise.check(application_id)
    status, output = await grantflow(service, "status", application_id)
    assert status == 0, output
    assert "项目编号：SZ-2026-0401" in output and "资格审查" in output and "未通过" in output
    assert "✗ 信用记录（credit）：申请单位列入失信联合惩戒对象名单" in output
    assert "✓ 注册地（registration）" in output
