"""`python -m services.applications`: runs the applications service until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio

from services.applications.server import run
from services.common.config import get_settings
from services.common.logging import configure_logging
from services.common.process import run_and_exit


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    run_and_exit(lambda: asyncio.run(run(settings)))


if __name__ == "__main__":
    main()
