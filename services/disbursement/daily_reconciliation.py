"""The daily reconciliation: the disbursement service reconciles the previous Beijing day by
itself once the day's statement is complete (after settings.reconciliation_daily_hour, Beijing
time), when settings.reconciliation_daily is on.

It runs beside the gRPC server (a background task of serve_service) and checks every
`check_s` seconds: a day already reconciled (by finance, or by another replica) is left alone,
and ReconcileDay is idempotent per day anyway, so several replicas need no coordination.
A failure (the gateway unavailable) is logged and tried again at the next check. Before it
reconciles, it records the payments the gateway returned (退汇) over the last two days, so a
return of a payment settled on an earlier day reaches the ledger too (SyncGatewayReturns).
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta

import structlog

from services.common.errors import NotFound, ServiceError
from services.disbursement.commands import ReconcileDay, SyncReturns
from services.disbursement.gateway import BEIJING
from services.disbursement.use_cases import Disbursement

log = structlog.get_logger(__name__)

DAILY_ACTOR = "grantflow-daily-reconciliation"
RETURNS_WINDOW = timedelta(days=2)


class DailyReconciliation:
    def __init__(self, disbursement: Disbursement, *, hour: int, check_s: float = 600.0) -> None:
        self.disbursement = disbursement
        self.hour = hour
        self.check_s = check_s

    async def once(self, now: datetime | None = None) -> date | None:
        """Reconciles yesterday if it is time and nobody did; the day reconciled, or None."""
        moment = (now or datetime.now(BEIJING)).astimezone(BEIJING)
        if moment.hour < self.hour:
            return None
        day = moment.date() - timedelta(days=1)
        try:
            await self.disbursement.reconciliation(day)
            return None  # already reconciled
        except NotFound:
            pass
        returned, _ = await self.disbursement.sync_returns(
            SyncReturns(since=moment - RETURNS_WINDOW, run_by=DAILY_ACTOR)
        )
        if returned:
            log.info("returned payments recorded", count=len(returned))
        view = await self.disbursement.reconcile_day(ReconcileDay(day=day, run_by=DAILY_ACTOR))
        log.info(
            "daily reconciliation",
            day=day.isoformat(),
            matched=view.run.matched_count,
            exceptions=view.run.exception_count,
            open=view.open_count,
        )
        return day

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.once()
            except ServiceError as error:
                log.warning("daily reconciliation failed; trying again later", error=str(error))
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.check_s)
            except TimeoutError:
                pass
