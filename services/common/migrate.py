"""`python -m services.common.migrate <service> [--wait]`: only the Alembic migrations of one
service's database, for a deployment that migrates once (a Kubernetes Job) instead of in every
replica as it starts.

Without --wait it brings the database to the newest revision. With --wait it changes nothing and
waits until the database is at the newest revision this code knows (an init container: replicas
start only once the Job has migrated, so no two replicas race to migrate).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

SERVICES = ("applications", "review", "disbursement")


def migrations_dir(service: str) -> Path:
    return Path(__file__).resolve().parents[1] / service / "migrations"


def current_and_head(url: str, migrations: Path) -> tuple[set[str], set[str]]:
    """The revisions the database is at, and the newest revisions of the code."""
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from services.common.db import make_engine

    config = Config()
    config.set_main_option("script_location", str(migrations))
    heads = set(ScriptDirectory.from_config(config).get_heads())
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
    finally:
        engine.dispose()
    return current, heads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.common.migrate",
        description="迁移一个服务的数据库 / migrate one service's database (Alembic)",
    )
    parser.add_argument("service", choices=SERVICES)
    parser.add_argument(
        "--wait",
        action="store_true",
        help="不迁移, 等到数据库为最新版本 / change nothing, wait until the database is current",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="--wait: seconds")
    args = parser.parse_args(argv)

    from services.common.config import get_settings
    from services.common.db import migrate

    settings = get_settings()
    url = settings.database_url(args.service)
    migrations = migrations_dir(args.service)
    if not args.wait:
        migrate(url, migrations)
        current, _ = current_and_head(url, migrations)
        print(f"{args.service}: 数据库已迁移到 / database migrated to {', '.join(sorted(current))}")
        return 0
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            current, heads = current_and_head(url, migrations)
        except Exception as exc:  # the database may not answer yet: wait for it too
            current, heads = set(), {f"(unreachable: {type(exc).__name__})"}
        if current == heads:
            print(
                f"{args.service}: 数据库为最新版本 / database current at {', '.join(sorted(heads))}"
            )
            return 0
        if time.monotonic() > deadline:
            print(
                f"{args.service}: 等待迁移超时 / timed out waiting for the migration: database at "
                f"{sorted(current) or 'nothing'}, code at {sorted(heads)}"
            )
            return 1
        time.sleep(2.0)


if __name__ == "__main__":
    from services.common.process import run_and_exit

    run_and_exit(main)
