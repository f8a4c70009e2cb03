"""`python -m console`: serves the console at CONSOLE_ADDRESS until SIGTERM or Ctrl-C."""

from __future__ import annotations

import sys

import uvicorn

from console.app import create_app
from services.common import metrics
from services.common.config import DEV_CONSOLE_SECRET, SettingsRefused, get_settings
from services.common.logging import configure_logging


def main() -> None:
    try:
        settings = get_settings()
    except SettingsRefused as refused:
        sys.exit(str(refused))
    if settings.profile == "production" and (
        settings.console_identity_provider == "dev"
        or settings.console_session_secret == DEV_CONSOLE_SECRET
        or len(settings.console_session_secret) < 32
    ):
        sys.exit(
            "控制台拒绝启动 / the console refuses to start: production needs "
            "CONSOLE_SESSION_SECRET (32+ characters) and an identity provider other than dev"
        )
    configure_logging(settings.log_level, settings.log_json or settings.log_format == "json")
    metrics.set_process("console")
    metrics.serve_metrics(settings.metrics_host, settings.metrics_port)
    host, _, port = settings.console_address.rpartition(":")
    uvicorn.run(
        create_app(settings),
        host=host or "127.0.0.1",
        port=int(port),
        log_level="warning",
        access_log=False,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
