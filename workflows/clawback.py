"""ClawbackWorkflow: one per clawback (追回) of a paid award (`clawback-<clawback id>`).

The disbursement service opens the clawback (receivable, journal, ClawbackOpened through its
outbox); the intake consumer starts this workflow from that event. The workflow imposes the
credit penalty: the enterprise goes on the credit list (财政资金追回失信名单) from the opening until
the bar's end the service fixed, through the applications service, which owns the credit list,
so the disbursement service never calls it. The activity is retried until the applications
service takes it and is idempotent (the clawback id is its request id); eligibility then refuses
the enterprise's new applications (the credit check) while the entry is valid.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows import contracts
    from workflows.activities import GrantActivities
    from workflows.grant import SERVICE_RETRY, SERVICE_TIMEOUT


@workflow.defn(name=contracts.CLAWBACK_WORKFLOW)
class ClawbackWorkflow:
    @workflow.run
    async def run(self, clawback: contracts.ClawbackInput) -> str:
        """The credit list entry's id."""
        return await workflow.execute_activity_method(
            GrantActivities.bar_clawed_back_enterprise,
            clawback,
            start_to_close_timeout=SERVICE_TIMEOUT,
            retry_policy=SERVICE_RETRY,
        )
