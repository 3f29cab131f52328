"""Throwaway databases: a SQLite file in a temporary folder, or a PostgreSQL
database created for the run on the server of a DSN and dropped afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def sqlite_database(prefix: str = "sa-bench-") -> Iterator[str]:
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield f"sqlite:///{folder}/sessions.db"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _database_url(dsn: str, name: str) -> str:
    base, _, _ = dsn.rpartition("/")
    return f"{base}/{name}"


async def _admin(dsn: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.contextmanager
def postgres_database(dsn: str) -> Iterator[str]:
    name = f"sa_bench_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(dsn, f'CREATE DATABASE "{name}"'))
    try:
        yield _database_url(dsn, name)
    finally:
        asyncio.run(_admin(dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def postgres_reachable(dsn: str) -> str | None:
    """None if the server answers, else why not."""
    try:
        asyncio.run(_admin(dsn, "SELECT 1"))
    except Exception as error:  # any failure means: skip PostgreSQL, saying why
        return f"{type(error).__name__}: {error}"
    return None
