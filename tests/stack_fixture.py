"""The embedded stack for integration and end-to-end tests: every process real (Temporal dev
server, Tansu, the three services, the worker, the intake consumer), on free ports, with its data
under the test's temporary folder and the service databases on SQLite or PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from infra.local.stack import LocalStack
from services.common.config import Settings
from tests.support import free_port, postgres_database

SERVICES = ("applications", "review", "disbursement")


@contextmanager
def running_stack(
    data_dir: Path,
    database: str = "sqlite",
    *,
    processes: Iterable[str] | None = None,
    **overrides: object,
) -> Iterator[LocalStack]:
    """The stack's processes (all, or the ones named) on free ports, until the block ends."""
    with ExitStack() as cleanup:
        urls: dict[str, str] = {}
        if database == "postgres":
            for service in (*SERVICES, "treasury"):
                urls[f"{service}_database_url"] = cleanup.enter_context(
                    postgres_database(f"gf_{service}")
                )
        values: dict[str, object] = {
            "data_dir": data_dir,
            "temporal_address": f"127.0.0.1:{free_port()}",
            "temporal_ui_port": free_port(),
            "kafka_bootstrap_servers": f"127.0.0.1:{free_port()}",
            "applications_address": f"127.0.0.1:{free_port()}",
            "review_address": f"127.0.0.1:{free_port()}",
            "disbursement_address": f"127.0.0.1:{free_port()}",
            "console_address": f"127.0.0.1:{free_port()}",
            # No metrics unless a test asks (the default ports are fixed: stacks would collide).
            "stack_metrics_port": 0,
            "notice_period_seconds": 2.0,
            "notice_batch_seconds": 1.0,  # decided awards are noticed a second later
            "supplement_period_seconds": 300.0,
            "review_period_seconds": 3600.0,
            # The stack suites' scripted applicants predate receiving accounts (收款账户) and
            # confirm none; a stack that pays only confirmed accounts asks for it.
            "payment_requires_account": False,
            **urls,
            **overrides,
        }
        settings = Settings(**values)  # type: ignore[arg-type]
        stack = LocalStack(settings)
        stack.start(processes)
        try:
            stack.wait_ready(120, names=processes)
            yield stack
        finally:
            stack.stop()
