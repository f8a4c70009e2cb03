"""How every Grantflow entry point ends its process (services, worker, consumers, CLI, tests).

Known upstream bug temporalio/sdk-python#300: a process that used a Temporal client can abort
during interpreter teardown with "PyGILState_Release ... finalizing" (about 1 run in 10 here),
turning a clean exit into a crash. So, after the program's own work is done, we flush our streams
and leave with os._exit and the real status, skipping interpreter teardown. Everything that must
be closed (servers, databases, Kafka clients, Temporal workers) is closed by the program itself
before this point; this is the only place in Grantflow that calls os._exit.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

    from services.common.config import Settings


def exit_now(status: int) -> None:
    """Flush and leave without interpreter teardown (see the module docstring)."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(status)


def run_and_exit(main: Callable[[], int | None]) -> None:
    """Runs main() and exits with its status (0 for None); exceptions exit with status 1."""
    status = 1
    try:
        result = main()
        status = 0 if result is None else int(result)
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, int | None):
            print(exc.code, file=sys.stderr)
    except KeyboardInterrupt:
        status = 130
    except BaseException:
        import traceback

        traceback.print_exc()
        status = 1
    exit_now(status)


def stop_on_signals(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set `stop`, so a long-running process drains and exits cleanly."""
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (in-process tests)
            pass


def process_name(run: Callable[..., Any]) -> str:
    """applications, review, disbursement (services/<name>/server.py), worker or intake
    (workflows/<name>.py): the process a run function is the main of."""
    module = run.__module__
    if module == "__main__":  # `python -m workflows.worker`: the module it ran as
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module = spec.name if spec is not None else module
    parts = module.split(".")
    return parts[1] if parts[0] == "services" and len(parts) > 2 else parts[-1]


def run_process(run: Callable[[Settings], Coroutine[Any, Any, None]]) -> None:
    """The whole `main` of a long-running Grantflow process: settings from the environment,
    logging, metrics and traces, run until SIGTERM/SIGINT, then leave through exit_now."""
    import asyncio

    from services.common import metrics, tracing
    from services.common.config import get_settings
    from services.common.logging import configure_logging

    def main() -> None:
        settings = get_settings()
        configure_logging(settings.log_level, settings.log_json or settings.log_format == "json")
        name = process_name(run)
        metrics.set_process(name)
        metrics.serve_metrics(settings.metrics_host, settings.metrics_port)
        tracing.configure_tracing(name)
        try:
            asyncio.run(run(settings))
        finally:
            tracing.shutdown_tracing()

    run_and_exit(main)
