"""The product's storage layer alone, for attributing the gap between an RPC's
actual CPU and its floor: the same operations the RPCs make, through the
product's SQLiteStore (writer thread) or PostgresStore (asyncpg pool), with 64 calls
in flight and no gRPC. Process CPU time (the writer thread included) per
operation, in µs. Not part of any floor: it shows where the rest goes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from session_authority_server.storage import open_store
from session_authority_server.storage.base import SessionRow

NOW_MS = int(time.time() * 1000)


def _rows(count: int) -> list[SessionRow]:
    return [
        SessionRow(
            handle=str(uuid.uuid4()),
            user_id=f"bench-user-{i % 1000}",
            tenant_id="public",
            refresh_hash=hashlib.sha256(str(i).encode()).digest(),
            prev_refresh_hash=None,
            rotated_at_ms=None,
            access_token_payload='{"role":"user"}',
            session_data='{"ip":"127.0.0.1"}',
            created_ms=NOW_MS,
            expires_ms=NOW_MS + 8_640_000_000,
            absolute_expires_ms=None,
        )
        for i in range(count)
    ]


def _rotate(row: SessionRow | None) -> tuple[SessionRow | None, None]:
    """What a refresh decides for the current token: rotate the hashes."""
    if row is None:
        return None, None
    successor = hashlib.sha256(row.refresh_hash).digest()
    rotated = dataclasses.replace(
        row, refresh_hash=successor, prev_refresh_hash=row.refresh_hash, rotated_at_ms=NOW_MS
    )
    return rotated, None


async def _cpu_per_op(
    operation: Callable[[SessionRow], Awaitable[Any]], rows: list[SessionRow], concurrency: int
) -> float:
    pending: Iterator[SessionRow] = iter(rows)

    async def caller() -> None:
        for row in pending:
            await operation(row)

    cpu = time.process_time()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return round((time.process_time() - cpu) / len(rows) * 1e6, 1)


async def _store_costs(
    database_url: str, count: int, concurrency: int, synchronous: str
) -> dict[str, float]:
    store = open_store(database_url, sqlite_synchronous=synchronous)
    await store.open()
    try:
        rows = _rows(count)
        return {
            "insert_us": await _cpu_per_op(store.insert_session, rows, concurrency),
            "select_us": await _cpu_per_op(
                lambda r: store.get_session(r.handle, NOW_MS), rows, concurrency
            ),
            "update_us": await _cpu_per_op(
                lambda r: store.update_session(r.handle, NOW_MS, _rotate), rows, concurrency
            ),
            "delete_us": await _cpu_per_op(
                lambda r: store.delete_sessions([r.handle], NOW_MS), rows, concurrency
            ),
        }
    finally:
        await store.close()


def store_costs(
    database_url: str, count: int, concurrency: int = 64, synchronous: str = "FULL"
) -> dict[str, float]:
    return asyncio.run(_store_costs(database_url, count, concurrency, synchronous))
