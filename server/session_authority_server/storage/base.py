"""The storage protocol: what the recipe logic needs from a database, nothing more.

Every state change is one transaction. ``update_session`` is the one
read-decide-write primitive: the store locks the row (SQLite: BEGIN IMMEDIATE;
PostgreSQL: SELECT ... FOR UPDATE), hands it to a pure ``decide`` function and
applies the change it returns before committing, so the logic above never sees
SQL and two writers never interleave on one session.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class StorageUnavailable(Exception):
    """The database cannot be reached or answered with a transient failure."""


@dataclass(frozen=True, slots=True)
class SessionRow:
    handle: str
    user_id: str
    tenant_id: str
    # SHA-256 of the current and previous refresh-token secrets; never the tokens.
    refresh_hash: bytes
    prev_refresh_hash: bytes | None
    rotated_at_ms: int | None
    access_token_payload: str  # JSON object text: the custom claims only
    session_data: str  # JSON object text
    created_ms: int
    expires_ms: int  # sliding: moved on every refresh
    absolute_expires_ms: int | None
    last_refreshed_ms: int | None = None
    client_ip: str = ""
    user_agent: str = ""
    device: str = ""


# The sessions table's columns, in SessionRow's field order (both dialects).
SESSION_COLUMNS = ", ".join(f.name for f in dataclasses.fields(SessionRow))


def session_values(row: SessionRow) -> tuple[Any, ...]:
    """A SessionRow as statement parameters, in SESSION_COLUMNS order."""
    return tuple(getattr(row, f.name) for f in dataclasses.fields(SessionRow))


# What update_session may change; identity, owner, creation and metadata never change.
UPDATABLE_SESSION_COLUMNS = (
    "refresh_hash",
    "prev_refresh_hash",
    "rotated_at_ms",
    "access_token_payload",
    "session_data",
    "expires_ms",
    "last_refreshed_ms",
)


def updated_values(row: SessionRow) -> tuple[Any, ...]:
    """The UPDATABLE_SESSION_COLUMNS of a row, in that order."""
    return tuple(getattr(row, name) for name in UPDATABLE_SESSION_COLUMNS)


@dataclass(frozen=True, slots=True)
class RevocationRow:
    cursor: int
    handle: str
    user_id: str
    revoked_at_ms: int


@dataclass(frozen=True, slots=True)
class SigningKeyRow:
    kid: str
    algorithm: str
    private_key: bytes  # PKCS#8 PEM
    created_ms: int
    signs_from_ms: int


class Delete:
    """A decision of ``update_session``: delete the row."""


DELETE = Delete()
# A decision is the new row, DELETE, or None (leave the row as it is).
Change = SessionRow | Delete | None


class Lifecycle(Protocol):
    async def open(self) -> list[int]:
        """Connect and apply pending migrations; return the versions applied."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StorageUnavailable unless the database answers a trivial query."""

    async def migrate(self) -> list[int]:
        """Apply pending migrations; return the versions applied."""


class SessionRows(Protocol):
    """The sessions table. Every deletion of a live session (revocation, theft, the
    per-user cap) also appends to the revocation log in the same transaction."""

    async def insert_session(self, row: SessionRow, *, max_sessions_per_user: int = 0) -> list[str]:
        """Insert a session. With a cap, first revoke the user's oldest live sessions
        so that the new one makes at most ``max_sessions_per_user``; return those."""

    async def get_session(self, handle: str, now_ms: int) -> SessionRow | None:
        """The live session with this handle; None if missing or expired."""

    async def update_session(
        self,
        handle: str,
        now_ms: int,
        decide: Callable[[SessionRow | None], tuple[Change, T]],
    ) -> T:
        """Lock the live row (None if missing/expired), apply decide's change, commit."""

    async def delete_sessions(self, handles: Sequence[str], now_ms: int) -> list[str]:
        """Delete these sessions; return the handles of those that were live."""

    async def delete_sessions_for_user(self, user_id: str, now_ms: int) -> list[str]:
        """Delete every session of a user; return the handles that were live."""

    async def session_handles_for_user(self, user_id: str, now_ms: int) -> list[str]: ...

    async def delete_other_sessions(self, handle: str, now_ms: int) -> list[str]:
        """Delete every live session of this session's user but this one."""

    async def list_sessions(
        self, user_id: str, now_ms: int, limit: int, before: tuple[int, str] | None
    ) -> tuple[list[SessionRow], int]:
        """A page of the user's live sessions, newest first, strictly older than
        ``before`` (created_ms, handle); and how many live sessions there are."""

    async def purge_expired(self, now_ms: int, batch_size: int = 1000) -> int:
        """Delete expired rows in bounded batches; return how many went."""


class RevocationLog(Protocol):
    async def revocations_after(self, cursor: int, limit: int) -> list[RevocationRow]:
        """Logged revocations with a cursor above this one, in cursor order."""

    async def latest_revocation_cursor(self) -> int: ...

    async def purge_revocations(self, before_ms: int) -> int:
        """Forget revocations made before this time."""


class KeyStorage(Protocol):
    """Signing keys and named secrets, shared by every replica."""

    async def signing_keys(self) -> list[SigningKeyRow]: ...

    async def add_signing_key(
        self, decide: Callable[[list[SigningKeyRow]], SigningKeyRow | None]
    ) -> list[SigningKeyRow]:
        """In one locked transaction: read all keys, add the one decide returns (if
        any), and return the resulting key list. Replicas racing to rotate agree."""

    async def delete_signing_keys(self, kids: Sequence[str]) -> int:
        """Delete retired dynamic keys; return how many went."""

    async def static_signing_key(self, make: Callable[[], SigningKeyRow]) -> SigningKeyRow:
        """The static signing key, created with ``make`` by the first caller to ask."""

    async def secret(self, name: str, make: Callable[[], bytes]) -> bytes:
        """The named secret, created with ``make`` by the first caller to ask."""


class SessionStore(Lifecycle, SessionRows, RevocationLog, KeyStorage, Protocol):
    """A whole backend (SQLite or PostgreSQL); each part of the authority is given
    only the contract it needs."""
