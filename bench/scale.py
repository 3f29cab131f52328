"""Do the per-user queries and refresh stay index-backed as the table grows?

Seeds two fresh databases of either backend with sessions, 100 per user: 10,000
rows (100 users) and 1,000,000 rows (10,000 users). Then it times the storage
operations behind get_all_session_handles_for_user, list_sessions, refresh and
revoke_all_sessions_for_user on the two in turn, so that whatever else the machine
is doing weighs on both sizes alike. An index-backed operation costs about the
same at both sizes; a scan costs 100x. The check is p50(large)/p50(small) < 2.

Rows are SessionRow values written through SESSION_COLUMNS and session_values,
the stores' own definition of a session row, so a new column cannot leave the
seeding behind.

    python -m bench.scale --backend sqlite
    python -m bench.scale --backend postgresql --dsn postgresql://postgres@127.0.0.1/test
    python -m bench.scale --backend sqlite --rows 1000,10000   # the miniature (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from session_authority_server.storage import open_store
from session_authority_server.storage.base import (
    SESSION_COLUMNS,
    SessionRow,
    SessionStore,
    session_values,
)
from session_authority_server.validation import DEFAULT_PAGE_SIZE

from .suite import _git_commit

SESSIONS_PER_USER = 100
SAMPLES = 200
WARMUP = 50
NOW_MS = 1_800_000_000_000
RESULTS = Path(__file__).parent / "results"
COLUMN_NAMES = [name.strip() for name in SESSION_COLUMNS.split(",")]
SQLITE_INSERT = (
    f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ({', '.join('?' * len(COLUMN_NAMES))})"
)
# A browser's user agent: real rows carry client metadata, and its width.
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)

HANDLES = "get_all_session_handles_for_user"
LIST = f"list_sessions (first page of {DEFAULT_PAGE_SIZE})"
REFRESH = "refresh (locked row update)"
REVOKE = "revoke_all_sessions_for_user"
OPERATIONS = (HANDLES, LIST, REFRESH, REVOKE)


def session_row(i: int) -> SessionRow:
    """Session number i: user i // SESSIONS_PER_USER, newest first by number."""
    return SessionRow(
        handle=str(uuid.UUID(int=i + 1)),
        user_id=f"user-{i // SESSIONS_PER_USER}",
        tenant_id="public",
        refresh_hash=hashlib.sha256(i.to_bytes(8, "big")).digest(),
        prev_refresh_hash=None,
        rotated_at_ms=None,
        access_token_payload='{"role":"user"}',
        session_data="{}",
        created_ms=NOW_MS - i,
        expires_ms=NOW_MS + 86_400_000,
        absolute_expires_ms=None,
        client_ip=f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
        user_agent=USER_AGENT,
        device="desktop",
    )


def _values(rows: int) -> Iterator[tuple[Any, ...]]:
    for i in range(rows):
        yield session_values(session_row(i))


async def _seed_sqlite(path: str, rows: int) -> None:
    def work() -> None:
        db = sqlite3.connect(path, timeout=30)
        try:
            with db:
                db.executemany(SQLITE_INSERT, _values(rows))
        finally:
            db.close()

    await asyncio.to_thread(work)


async def _seed_postgres(dsn: str, rows: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table("sessions", records=_values(rows), columns=COLUMN_NAMES)
        await conn.execute("ANALYZE sessions")
    finally:
        await conn.close()


async def _time(operation: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await operation()
    return (time.perf_counter() - started) * 1e6


def _rotate(row: SessionRow | None) -> tuple[Any, None]:
    if row is None:
        raise RuntimeError("a seeded session is missing")
    return dataclasses.replace(row, prev_refresh_hash=row.refresh_hash), None


@dataclasses.dataclass
class _Table:
    """One database of `rows` sessions, and its timings."""

    store: SessionStore
    rows: int
    us: dict[str, list[float]] = dataclasses.field(
        default_factory=lambda: {op: [] for op in OPERATIONS}
    )

    @property
    def users(self) -> int:
        return self.rows // SESSIONS_PER_USER

    async def sample(self, rng: random.Random, *, timed: bool) -> None:
        """One of each per-user read and one refresh, for a random user and session."""
        store, user = self.store, f"user-{rng.randrange(self.users)}"
        handle = str(uuid.UUID(int=rng.randrange(self.rows) + 1))
        for op, call in (
            (HANDLES, lambda: store.session_handles_for_user(user, NOW_MS)),
            (LIST, lambda: store.list_sessions(user, NOW_MS, DEFAULT_PAGE_SIZE, None)),
            (REFRESH, lambda: store.update_session(handle, NOW_MS, _rotate)),
        ):
            elapsed = await _time(call)
            if timed:
                self.us[op].append(elapsed)

    async def revoke(self, index: int) -> None:
        user = f"user-{index}"
        self.us[REVOKE].append(
            await _time(lambda: self.store.delete_sessions_for_user(user, NOW_MS))
        )

    def p50(self) -> dict[str, float]:
        return {op: statistics.median(values) for op, values in self.us.items()}


async def _measure(tables: list[_Table]) -> None:
    """Sample the tables in turn, so that whatever else the machine does at the
    time weighs on every size alike; revocations last (they empty users)."""
    for table in tables:
        warm = random.Random(-table.rows)
        for _ in range(WARMUP):  # untimed: connections, statement caches, code paths
            await table.sample(warm, timed=False)
    rngs = [random.Random(table.rows) for table in tables]
    for _ in range(SAMPLES):
        for table, rng in zip(tables, rngs, strict=True):
            await table.sample(rng, timed=True)
    revoked = [
        rng.sample(range(table.users), min(SAMPLES // 4, table.users))
        for table, rng in zip(tables, rngs, strict=True)
    ]
    for turn in range(max(len(users) for users in revoked)):
        for table, users in zip(tables, revoked, strict=True):
            if turn < len(users):
                await table.revoke(users[turn])


async def run(backend: str, dsn: str | None, small: int, large: int) -> dict[str, Any]:
    """One database per size, seeded, then measured side by side."""
    sizes = (small, large)
    if backend == "sqlite":
        folder = tempfile.mkdtemp(prefix="sa-scale-")
        urls = [f"sqlite:///{folder}/sessions-{rows}.db" for rows in sizes]

        async def seed(url: str, rows: int) -> None:
            await _seed_sqlite(url.removeprefix("sqlite:///"), rows)

        async def cleanup() -> None:
            shutil.rmtree(folder, ignore_errors=True)

        database_version = f"SQLite {sqlite3.sqlite_version}"
    else:
        import asyncpg

        if dsn is None:
            raise SystemExit("--dsn (or SESSION_AUTHORITY_TEST_POSTGRES_DSN) is required")
        prefix = f"sa_scale_{uuid.uuid4().hex[:12]}"
        names = [f"{prefix}_{rows}" for rows in sizes]
        admin = await asyncpg.connect(dsn)
        try:
            for name in names:
                await admin.execute(f'CREATE DATABASE "{name}"')
            database_version = "PostgreSQL " + await admin.fetchval("SHOW server_version")
        finally:
            await admin.close()
        urls = [f"{dsn.rpartition('/')[0]}/{name}" for name in names]

        async def seed(url: str, rows: int) -> None:
            await _seed_postgres(url, rows)

        async def cleanup() -> None:
            admin = await asyncpg.connect(dsn)
            try:
                for name in names:
                    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()

    stores = [open_store(url, sqlite_synchronous="NORMAL") for url in urls]
    tables = [_Table(store, rows) for store, rows in zip(stores, sizes, strict=True)]
    started_at = time.strftime("%Y-%m-%d %H:%M:%S %z")
    load_before = os.getloadavg()
    try:
        started = time.perf_counter()
        for store, url, rows in zip(stores, urls, sizes, strict=True):
            await store.open()
            await seed(url, rows)
        seeded_s = time.perf_counter() - started
        await _measure(tables)
    finally:
        for store in stores:
            await store.close()
        await cleanup()
    at_small, at_large = (table.p50() for table in tables)
    ratios = {op: at_large[op] / at_small[op] for op in OPERATIONS}
    return {
        "backend": backend,
        "started": started_at,
        "commit": _git_commit(),
        "database": database_version,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "rows": [small, large],
        "sessions_per_user": SESSIONS_PER_USER,
        "samples": SAMPLES,
        "warmup": WARMUP,
        "seed_seconds": round(seeded_s, 1),
        "p50_us_small": at_small,
        "p50_us_large": at_large,
        "ratio": ratios,
        "pass": all(r < 2 for r in ratios.values()),
    }


def _loadavg(values: Any) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def _rows(text: str) -> tuple[int, int]:
    try:
        small, large = (int(part.replace("_", "")) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("expected SMALL,LARGE, e.g. 10000,1000000") from None
    if not SESSIONS_PER_USER <= small < large:
        raise argparse.ArgumentTypeError(f"expected {SESSIONS_PER_USER} <= SMALL < LARGE")
    return small, large


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--dsn", default=os.environ.get("SESSION_AUTHORITY_TEST_POSTGRES_DSN"))
    parser.add_argument(
        "--rows",
        type=_rows,
        default=(10_000, 1_000_000),
        metavar="SMALL,LARGE",
        help="table sizes compared (default 10000,1000000)",
    )
    parser.add_argument(
        "--output", type=Path, help="default bench/results/scale-BACKEND-SMALL-LARGE.json"
    )
    args = parser.parse_args()
    small, large = args.rows
    result = asyncio.run(run(args.backend, args.dsn, small, large))
    output = args.output or RESULTS / f"scale-{args.backend}-{small}-{large}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"\n{args.backend} ({result['database']}): {small:,} rows vs {large:,} rows (p50, µs); "
        f"{result['started']}, commit {result['commit']}, seeded in {result['seed_seconds']} s, "
        f"load average before/after {_loadavg(result['loadavg_before'])} / "
        f"{_loadavg(result['loadavg_after'])}\n"
    )
    print("| operation | small | large | ratio | |")
    print("|---|---:|---:|---:|---|")
    for op, ratio in result["ratio"].items():
        verdict = "PASS" if ratio < 2 else "FAIL"
        print(
            f"| {op} | {result['p50_us_small'][op]:.0f} | {result['p50_us_large'][op]:.0f} "
            f"| {ratio:.2f} | {verdict} |"
        )
    print(f"\nresults: {output}")


if __name__ == "__main__":
    main()
