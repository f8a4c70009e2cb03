"""structlog set-up shared by every process: key-value lines on a terminal, JSON when asked."""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(level: str = "INFO", json: bool = False) -> None:
    """Key-value lines, or JSON objects when json (LOG_FORMAT=json). Lines carry what the
    context binds (application_id, workflow_id, ...) and, when tracing, trace_id and span_id."""
    from services.common.tracing import log_trace_ids

    logging.basicConfig(stream=sys.stderr, level=level.upper(), format="%(message)s")
    for noisy in ("temporalio.activity", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # kafka-python logs every refused connection while a broker restarts as an error; failures
    # reach the Kafka adapter as exceptions, and it logs what it does about them (relay
    # reconnecting, consumer restarting).
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    renderer = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            log_trace_ids,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
