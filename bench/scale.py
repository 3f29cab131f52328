"""Do the per-user queries and refresh stay index-backed as the table grows?

Seeds sessions (100 per user, as 1,000,000 sessions of 10,000 users) into a fresh
database of either backend, and measures the storage operations behind
get_all_session_handles_for_user, revoke_all_sessions_for_user and refresh at
10,000 rows and again at 1,000,000 rows. An index-backed operation costs about
the same at both sizes; a scan costs 100x. The check is p50(large)/p50(small) < 2.

    python -m bench.scale --backend sqlite
    python -m bench.scale --backend postgresql --dsn postgresql://postgres@127.0.0.1/test
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import os
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from session_authority_server.storage import open_store
from session_authority_server.storage.base import SessionRow, SessionStore

SESSIONS_PER_USER = 100
SAMPLES = 200
NOW_MS = 1_800_000_000_000
RESULTS = Path(__file__).parent / "results"


def _rows(first: int, count: int) -> list[tuple[Any, ...]]:
    rows = []
    for i in range(first, first + count):
        secret = hashlib.sha256(i.to_bytes(8, "big")).digest()
        rows.append(
            (
                str(uuid.UUID(int=i + 1)),
                f"user-{i // SESSIONS_PER_USER}",
                "public",
                secret,
                None,
                None,
                '{"role":"user"}',
                "{}",
                NOW_MS - i,
                NOW_MS + 86_400_000,
                None,
            )
        )
    return rows


async def _seed_sqlite(path: str, first: int, count: int) -> None:
    def work() -> None:
        db = sqlite3.connect(path)
        with db:
            db.executemany(
                "INSERT INTO sessions VALUES (?,?,?,?,?,?,?,?,?,?,?)", _rows(first, count)
            )
        db.close()

    await asyncio.to_thread(work)


async def _seed_postgres(dsn: str, first: int, count: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        step = 100_000
        for start in range(first, first + count, step):
            await conn.copy_records_to_table(
                "sessions", records=_rows(start, min(step, first + count - start))
            )
        await conn.execute("ANALYZE sessions")
    finally:
        await conn.close()


async def _time(operation: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await operation()
    return (time.perf_counter() - started) * 1e6


async def _measure(store: SessionStore, rows: int) -> dict[str, float]:
    users = rows // SESSIONS_PER_USER
    rng = random.Random(rows)
    handles_us, refresh_us, revoke_us = [], [], []
    revoked_users = rng.sample(range(users), min(SAMPLES // 4, users))
    for _ in range(SAMPLES):
        user = f"user-{rng.randrange(users)}"
        handles_us.append(await _time(lambda u=user: store.session_handles_for_user(u, NOW_MS)))
        handle = str(uuid.UUID(int=rng.randrange(rows) + 1))

        def rotate(row: SessionRow | None) -> tuple[Any, None]:
            if row is None:
                return None, None
            return dataclasses.replace(row, prev_refresh_hash=row.refresh_hash), None

        refresh_us.append(await _time(lambda h=handle: store.update_session(h, NOW_MS, rotate)))
    for index in revoked_users:
        user = f"user-{index}"
        revoke_us.append(await _time(lambda u=user: store.delete_sessions_for_user(u, NOW_MS)))
    return {
        "get_all_session_handles_for_user": statistics.median(handles_us),
        "refresh (locked row update)": statistics.median(refresh_us),
        "revoke_all_sessions_for_user": statistics.median(revoke_us),
    }


async def run(backend: str, dsn: str | None, small: int, large: int) -> dict[str, Any]:
    if backend == "sqlite":
        folder = tempfile.mkdtemp(prefix="sa-scale-")
        path = os.path.join(folder, "sessions.db")
        url = f"sqlite:///{path}"

        async def seed(first: int, count: int) -> None:
            await _seed_sqlite(path, first, count)

        cleanup: Callable[[], Awaitable[None]] | None = None
    else:
        import asyncpg

        if dsn is None:
            raise SystemExit("--dsn is required for postgresql")
        name = f"sa_scale_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(dsn)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        url = f"{dsn.rpartition('/')[0]}/{name}"

        async def seed(first: int, count: int) -> None:
            await _seed_postgres(url, first, count)

        async def cleanup() -> None:
            admin = await asyncpg.connect(dsn)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()

    store = open_store(url, sqlite_synchronous="NORMAL")
    await store.open()
    try:
        started = time.perf_counter()
        await seed(0, small)
        at_small = await _measure(store, small)
        await seed(small, large - small)
        seeded_s = time.perf_counter() - started
        at_large = await _measure(store, large)
    finally:
        await store.close()
        if cleanup is not None:
            await cleanup()
    ratios = {op: at_large[op] / at_small[op] for op in at_small}
    return {
        "backend": backend,
        "rows": [small, large],
        "seed_seconds": round(seeded_s, 1),
        "p50_us_small": at_small,
        "p50_us_large": at_large,
        "ratio": ratios,
        "pass": all(r < 2 for r in ratios.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--dsn", default=os.environ.get("SESSION_AUTHORITY_TEST_POSTGRES_DSN"))
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    args = parser.parse_args()
    result = asyncio.run(run(args.backend, args.dsn, args.small, args.large))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"scale-{args.backend}.json").write_text(json.dumps(result, indent=2))
    print(f"\n{args.backend}: {args.small:,} rows vs {args.large:,} rows (p50, µs)\n")
    print("| operation | small | large | ratio | |")
    print("|---|---:|---:|---:|---|")
    for op, ratio in result["ratio"].items():
        verdict = "PASS" if ratio < 2 else "FAIL"
        print(
            f"| {op} | {result['p50_us_small'][op]:.0f} | {result['p50_us_large'][op]:.0f} "
            f"| {ratio:.2f} | {verdict} |"
        )


if __name__ == "__main__":
    main()
