"""`python -m services.disbursement`: runs the disbursement service until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio

from services.common.config import get_settings
from services.common.logging import configure_logging
from services.common.process import run_and_exit
from services.disbursement.server import run


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    run_and_exit(lambda: asyncio.run(run(settings)))


if __name__ == "__main__":
    main()
