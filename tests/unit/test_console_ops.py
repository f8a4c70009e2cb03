"""The ops overview's pure parts: the charts' data from a summary (stages in the order of a
grant's life, every day of the window) and the stuck threshold read from the query string."""

from __future__ import annotations

from datetime import datetime

from console.i18n import BEIJING
from console.pages.ops import CHART_DAYS, DEFAULT_STUCK_HOURS, _stuck_hours, chart_data
from grantflow.v1 import applications_pb2
from services.common.vocabulary import GrantStage


def test_chart_data_orders_stages_by_a_grants_life_and_fills_every_day() -> None:
    today = datetime.now(BEIJING).date().isoformat()
    summary = applications_pb2.ApplicationsSummary(
        by_stage=[
            applications_pb2.StageCount(
                program_code="SME-CLOUD",
                stage=GrantStage.PAID.to_proto(),
                count=2,  # type: ignore[arg-type]
            ),
            applications_pb2.StageCount(
                program_code="SME-CLOUD",
                stage=GrantStage.IN_REVIEW.to_proto(),
                count=3,  # type: ignore[arg-type]
            ),
            applications_pb2.StageCount(
                program_code="HR-TRAIN",
                stage=GrantStage.IN_REVIEW.to_proto(),
                count=1,  # type: ignore[arg-type]
            ),
        ],
        by_day=[applications_pb2.DayCount(day=today, program_code="SME-CLOUD", count=5)],
    )
    charts = chart_data(summary, lambda stage: stage.value.lower())
    assert charts["stages"]["codes"] == ["IN_REVIEW", "PAID"]
    assert charts["stages"]["datasets"] == [
        {"label": "HR-TRAIN", "data": [1, 0]},
        {"label": "SME-CLOUD", "data": [3, 2]},
    ]
    days = charts["days"]["labels"]
    assert len(days) == CHART_DAYS and days[-1] == today and days == sorted(days)
    assert charts["days"]["datasets"] == [
        {"label": "SME-CLOUD", "data": [0] * (CHART_DAYS - 1) + [5]}
    ]


def test_the_stuck_threshold_is_whole_hours_within_a_year() -> None:
    assert _stuck_hours(None) == (DEFAULT_STUCK_HOURS, "")
    assert _stuck_hours("0") == (0, "")
    assert _stuck_hours("12") == (12, "")
    assert _stuck_hours("abc")[1] and _stuck_hours("-1")[1] and _stuck_hours("99999")[1]
