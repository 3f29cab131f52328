"""Storage backends behind one protocol (base.SessionStore), chosen by URL."""

from __future__ import annotations

from .base import SessionStore, StorageUnavailable


def open_store(database_url: str, *, synchronous: str = "FULL") -> SessionStore:
    """The store for a database URL; call ``await store.open()`` before use."""
    if database_url.startswith("sqlite:///"):
        from .sqlite import SQLiteStore

        return SQLiteStore(database_url.removeprefix("sqlite:///"), synchronous=synchronous)
    raise ValueError("unsupported database URL scheme")


__all__ = ["SessionStore", "StorageUnavailable", "open_store"]
