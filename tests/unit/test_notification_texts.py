"""What an applicant is told of its grant's stages, in Chinese: the instalment stages of an award
paid in instalments say which instalment was paid and what releases the next."""

from __future__ import annotations

from grantflow.v1 import applications_pb2, common_pb2, events_pb2
from services.applications.notification_texts import Application, text_for
from workflows import reasons

APPLICATION = Application(
    application_id="app-1",
    credit_code="91440300MA5DC1XX1A",
    applicant_name="深圳市甲制造有限公司",
    project_title="智能工厂重大项目",
    program_code="TECH-MAJOR",
)


def told(stage: common_pb2.GrantStage.ValueType, reason: str) -> str:
    envelope = events_pb2.EventEnvelope(
        grant_stage_changed=applications_pb2.GrantStageChanged(
            application_id="app-1", stage=stage, reason=reason
        )
    )
    text = text_for(envelope, APPLICATION)
    assert text is not None, "the applicant is told"
    return f"{text.subject}\n{text.body}"


def test_a_paid_instalment_tells_what_is_paid_and_what_releases_the_next() -> None:
    reason = reasons.instalment_paid(1, 3, "acceptance", "2027-11-28", 1_000_000, 3_000_000)
    text = told(common_pb2.GRANT_STAGE_INSTALMENTS, reason)
    assert "分期资金已拨付" in text
    assert "分期支付中 1/3：第1期已拨付" in text
    assert "第2期待项目验收确认" in text and "2027-11-28" in text


def test_an_overdue_milestone_tells_the_applicant_it_can_still_be_confirmed() -> None:
    reason = reasons.milestone_overdue(2, 3, "acceptance", "2027-11-28")
    text = told(common_pb2.GRANT_STAGE_MILESTONE_OVERDUE, reason)
    assert "分期里程碑已逾期" in text
    assert "已逾期，确认后仍可拨付" in text
