"""What SQLITE_SYNCHRONOUS trades, and whether reads wait for writes: the disbursement use cases
on a throw-away SQLite file, without gRPC.

`python -m benchmarks.sqlite_writes [--reservations N] [--writers C]` reserves N awards with C
concurrent callers (each reservation one writing transaction: budget lock, row, journal, outbox
event) while a reader asks for the budget every 20 ms, once with synchronous=FULL and once with
NORMAL, and prints reservations/s and the p50/p99 of writes and of reads.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import date, datetime
from pathlib import Path

from services.common.db import Database, migrate
from services.common.unit_of_work import Transactions
from services.disbursement.commands import Reserve, SetBudget
from services.disbursement.gateway import GatewayPayment, PayeeAccount, PaymentStatus
from services.disbursement.server import MIGRATIONS
from services.disbursement.use_cases import Disbursement, event_source

PROGRAM = "SME-CLOUD"
CREDIT_CODE = "91440300MA5F000018"
READ_EVERY_S = 0.02  # a status read every 20 ms beside the writers


class Catalogue:
    async def is_published(self, program_code: str) -> bool:
        return True

    async def budget_line(self, program_code: str) -> str | None:
        return ""  # the program keeps a budget of its own


class NoGateway:
    async def pay(
        self,
        idempotency_key: str,
        payee: str,
        name: str,
        amount: int,
        account: PayeeAccount | None = None,
    ) -> str:
        raise AssertionError("nothing is paid here")

    async def find_payment(self, idempotency_key: str) -> str | None:
        return None

    async def payment_status(self, idempotency_key: str) -> PaymentStatus | None:
        return None

    async def returns(self, since: datetime) -> list[PaymentStatus]:
        return []

    async def statement(self, day: date) -> list[GatewayPayment]:
        return []

    async def close(self) -> None:
        pass


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def measure(folder: Path, synchronous: str, reservations: int, writers: int) -> str:
    url = f"sqlite:///{folder / f'{synchronous.lower()}.db'}"
    await asyncio.to_thread(migrate, url, MIGRATIONS)
    database = Database(url, sqlite_synchronous=synchronous)
    books = Disbursement(
        Transactions(database, event_source("benchmark.disbursement.v1")), NoGateway(), Catalogue()
    )
    await books.set_budget(SetBudget(PROGRAM, 10**12, "benchmark"))
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(reservations):
        queue.put_nowait(number)
    writes: list[float] = []
    reads: list[float] = []
    done = asyncio.Event()

    async def writer() -> None:
        while not queue.empty():
            number = queue.get_nowait()
            started = time.perf_counter()
            await books.reserve(
                Reserve(f"app-{number}", PROGRAM, 100_000, CREDIT_CODE, f"Enterprise {number}")
            )
            writes.append(time.perf_counter() - started)

    async def reader() -> None:
        while not done.is_set():
            started = time.perf_counter()
            await books.budget(PROGRAM)
            reads.append(time.perf_counter() - started)
            await asyncio.sleep(READ_EVERY_S)

    reading = asyncio.create_task(reader())
    started = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    elapsed = time.perf_counter() - started
    done.set()
    await reading
    database.dispose()
    ms = 1000
    return (
        f"synchronous={synchronous:<6} {reservations / elapsed:7.1f} reservations/s | "
        f"write p50 {statistics.median(writes) * ms:6.1f} ms p99 {percentile(writes, 0.99) * ms:6.1f}"
        f" ms | read p50 {statistics.median(reads) * ms:5.1f} ms "
        f"p99 {percentile(reads, 0.99) * ms:5.1f} ms ({len(reads)} reads)"
    )


async def main(reservations: int, writers: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        for synchronous in ("FULL", "NORMAL"):
            print(await measure(Path(folder), synchronous, reservations, writers), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reservations", type=int, default=1000)
    parser.add_argument("--writers", type=int, default=16)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.reservations, arguments.writers))
