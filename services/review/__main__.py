"""`python -m services.review`: the review service."""

from __future__ import annotations

import asyncio

from services.common.config import get_settings
from services.common.logging import configure_logging
from services.common.process import run_and_exit
from services.review.server import run


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    asyncio.run(run(settings))


if __name__ == "__main__":
    run_and_exit(main)
