"""Storage backends behind one protocol (base.SessionStore), chosen by URL."""

from __future__ import annotations

from .base import SessionStore, StorageUnavailable
from .urls import POSTGRES_PREFIXES, SQLITE_PREFIX


def open_store(
    database_url: str,
    *,
    sqlite_synchronous: str = "FULL",
    statement_timeout_ms: int = 5000,
    pool_size: int = 10,
) -> SessionStore:
    """The store for a database URL; call ``await store.open()`` before use."""
    if database_url.startswith(SQLITE_PREFIX):
        from .sqlite import SQLiteStore

        return SQLiteStore(database_url.removeprefix(SQLITE_PREFIX), synchronous=sqlite_synchronous)
    if database_url.startswith(POSTGRES_PREFIXES):
        from .postgres import PostgresStore

        return PostgresStore(
            database_url, statement_timeout_ms=statement_timeout_ms, pool_size=pool_size
        )
    raise ValueError("unsupported database URL scheme")


__all__ = ["POSTGRES_PREFIXES", "SQLITE_PREFIX", "SessionStore", "StorageUnavailable", "open_store"]
