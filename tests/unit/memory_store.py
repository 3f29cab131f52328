"""Every storage contract (storage.base: Lifecycle, SessionRows, RevocationLog,
KeyStorage) over dicts and lists, so the recipe can be tested without a database.

Each operation is one "transaction": it runs under one asyncio.Lock and never
awaits inside it, so the read-decide-write of update_session is atomic and every
deletion of a live session appends to the revocation log in the same step. Rows
are frozen dataclasses, stored and handed out as they are. A session is expired
when expires_ms <= now. tests/test_storage_contract.py runs the contract suite
against this store as its "memory" backend.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

from session_authority_server.storage.base import (
    DELETE,
    UPDATABLE_SESSION_COLUMNS,
    Change,
    RevocationRow,
    SessionRow,
    SigningKeyRow,
    StorageUnavailable,
)

T = TypeVar("T")


def _position(row: SessionRow) -> tuple[int, str]:
    """Where a session stands in its user's order: by creation, then handle."""
    return row.created_ms, row.handle


class MemoryStore:
    """A whole SessionStore in memory. Usable at once; close() makes every
    operation raise StorageUnavailable (as a closed database store does) until
    open() is called again."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._closed = False
        self.sessions: dict[str, SessionRow] = {}
        self.revocations: list[RevocationRow] = []  # in cursor order
        self._last_cursor = 0  # cursors are never reused, even after a purge
        self.signing_key_rows: dict[str, SigningKeyRow] = {}
        self.static_key: SigningKeyRow | None = None
        self.secrets: dict[str, bytes] = {}

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        async with self._lock:
            if self._closed:
                raise StorageUnavailable("the memory store is closed")
            yield

    # --- the steps every deletion shares (called inside a transaction) -------------

    def _live_of(self, user_id: str, now_ms: int) -> list[SessionRow]:
        """The user's live sessions, oldest first."""
        rows = (r for r in self.sessions.values() if r.user_id == user_id and r.expires_ms > now_ms)
        return sorted(rows, key=_position)

    def _delete(self, rows: Iterable[SessionRow], now_ms: int) -> list[str]:
        """Delete these rows; log the live ones as revoked now and return their handles."""
        revoked = []
        for row in rows:
            del self.sessions[row.handle]
            if row.expires_ms > now_ms:
                self._last_cursor += 1
                self.revocations.append(
                    RevocationRow(self._last_cursor, row.handle, row.user_id, now_ms)
                )
                revoked.append(row.handle)
        return revoked

    # --- Lifecycle --------------------------------------------------------------------

    async def open(self) -> list[int]:
        self._closed = False
        return []  # no schema, so no migrations

    async def close(self) -> None:
        self._closed = True

    async def ping(self) -> None:
        async with self._transaction():
            pass

    async def migrate(self) -> list[int]:
        async with self._transaction():
            return []

    # --- SessionRows ------------------------------------------------------------------

    async def insert_session(self, row: SessionRow, *, max_sessions_per_user: int = 0) -> list[str]:
        async with self._transaction():
            if row.handle in self.sessions:  # checked first: nothing changes on failure
                raise ValueError(f"session handle {row.handle!r} exists already")
            evicted: list[str] = []
            if max_sessions_per_user > 0:
                live = self._live_of(row.user_id, row.created_ms)
                excess = len(live) - max_sessions_per_user + 1
                evicted = self._delete(live[: max(excess, 0)], row.created_ms)
            self.sessions[row.handle] = row
            return evicted

    async def get_session(self, handle: str, now_ms: int) -> SessionRow | None:
        async with self._transaction():
            row = self.sessions.get(handle)
            return row if row is not None and row.expires_ms > now_ms else None

    async def update_session(
        self,
        handle: str,
        now_ms: int,
        decide: Callable[[SessionRow | None], tuple[Change, T]],
    ) -> T:
        async with self._transaction():
            row = self.sessions.get(handle)
            current = row if row is not None and row.expires_ms > now_ms else None
            change, result = decide(current)  # may raise: nothing has changed yet
            if current is not None:
                if change is DELETE:
                    self._delete([current], now_ms)
                elif isinstance(change, SessionRow):
                    # Only the updatable columns: identity, owner and creation stay.
                    updates = {name: getattr(change, name) for name in UPDATABLE_SESSION_COLUMNS}
                    self.sessions[handle] = dataclasses.replace(current, **updates)
            return result

    async def delete_sessions(self, handles: Sequence[str], now_ms: int) -> list[str]:
        async with self._transaction():
            rows = [self.sessions[h] for h in dict.fromkeys(handles) if h in self.sessions]
            return self._delete(rows, now_ms)

    async def delete_sessions_for_user(self, user_id: str, now_ms: int) -> list[str]:
        async with self._transaction():
            rows = [r for r in self.sessions.values() if r.user_id == user_id]
            return self._delete(sorted(rows, key=_position), now_ms)

    async def session_handles_for_user(self, user_id: str, now_ms: int) -> list[str]:
        async with self._transaction():
            return [row.handle for row in self._live_of(user_id, now_ms)]

    async def delete_other_sessions(self, handle: str, now_ms: int) -> list[str]:
        async with self._transaction():
            me = self.sessions.get(handle)
            if me is None or me.expires_ms <= now_ms:
                return []
            rows = [r for r in self.sessions.values() if r.user_id == me.user_id and r is not me]
            return self._delete(sorted(rows, key=_position), now_ms)

    async def list_sessions(
        self, user_id: str, now_ms: int, limit: int, before: tuple[int, str] | None
    ) -> tuple[list[SessionRow], int]:
        async with self._transaction():
            live = self._live_of(user_id, now_ms)
            page = [r for r in reversed(live) if before is None or _position(r) < before]
            return page[:limit], len(live)

    async def purge_expired(self, now_ms: int, batch_size: int = 1000) -> int:
        # One step for all: batches bound a database's transactions, not a dict's.
        async with self._transaction():
            expired = [h for h, row in self.sessions.items() if row.expires_ms <= now_ms]
            for handle in expired:
                del self.sessions[handle]  # purging is not revoking: nothing is logged
            return len(expired)

    # --- RevocationLog ----------------------------------------------------------------

    async def revocations_after(self, cursor: int, limit: int) -> list[RevocationRow]:
        async with self._transaction():
            return [r for r in self.revocations if r.cursor > cursor][:limit]

    async def latest_revocation_cursor(self) -> int:
        # As both databases answer (max(cursor) of what is kept, 0 if nothing is).
        async with self._transaction():
            return self.revocations[-1].cursor if self.revocations else 0

    async def purge_revocations(self, before_ms: int) -> int:
        async with self._transaction():
            kept = [r for r in self.revocations if r.revoked_at_ms >= before_ms]
            purged = len(self.revocations) - len(kept)
            self.revocations = kept
            return purged

    # --- KeyStorage -------------------------------------------------------------------

    def _keys_in_order(self) -> list[SigningKeyRow]:
        return sorted(self.signing_key_rows.values(), key=lambda k: (k.signs_from_ms, k.created_ms))

    async def signing_keys(self) -> list[SigningKeyRow]:
        async with self._transaction():
            return self._keys_in_order()

    async def add_signing_key(
        self, decide: Callable[[list[SigningKeyRow]], SigningKeyRow | None]
    ) -> list[SigningKeyRow]:
        async with self._transaction():
            keys = self._keys_in_order()
            new = decide(list(keys))
            if new is None:
                return keys
            if new.kid in self.signing_key_rows:
                raise ValueError(f"signing key {new.kid!r} exists already")
            self.signing_key_rows[new.kid] = new
            return [*keys, new]

    async def delete_signing_keys(self, kids: Sequence[str]) -> int:
        async with self._transaction():
            gone = [kid for kid in dict.fromkeys(kids) if kid in self.signing_key_rows]
            for kid in gone:
                del self.signing_key_rows[kid]
            return len(gone)

    async def static_signing_key(self, make: Callable[[], SigningKeyRow]) -> SigningKeyRow:
        async with self._transaction():
            if self.static_key is None:
                self.static_key = make()
            return self.static_key

    async def secret(self, name: str, make: Callable[[], bytes]) -> bytes:
        async with self._transaction():
            if name not in self.secrets:
                self.secrets[name] = make()
            return self.secrets[name]
