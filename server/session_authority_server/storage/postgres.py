"""PostgreSQL storage through an asyncpg pool: several replicas on one database.

Row changes lock the row (SELECT ... FOR UPDATE) inside one transaction, so two
replicas refreshing the same token at once see each other's rotation. Work that
has no row to lock yet (the first signing key, a due rotation, secrets,
migrations) takes a transaction-scoped advisory lock instead; the purge job
takes a try-lock so that only one replica does it at a time.

A statement timeout bounds every statement, and connection failures surface as
StorageUnavailable, so a stopped or stuck database never hangs an RPC.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from .base import (
    DELETE,
    SESSION_COLUMNS,
    UPDATABLE_SESSION_COLUMNS,
    Change,
    RevocationRow,
    SessionRow,
    SigningKeyRow,
    StorageUnavailable,
    session_values,
    updated_values,
)
from .migrations import migrations

T = TypeVar("T")

_UPDATE_SESSION = (
    "UPDATE sessions SET "
    + ", ".join(f"{name} = ${i + 1}" for i, name in enumerate(UPDATABLE_SESSION_COLUMNS))
    + f" WHERE handle = ${len(UPDATABLE_SESSION_COLUMNS) + 1}"
)
_SESSION_PLACEHOLDERS = ", ".join(f"${i + 1}" for i in range(SESSION_COLUMNS.count(",") + 1))
_KEY_COLUMNS = "kid, algorithm, private_key, created_ms, signs_from_ms"

# Advisory lock ids (arbitrary constants, one per kind of work).
_LOCK_MIGRATIONS = 0x5A_0001
_LOCK_SIGNING_KEYS = 0x5A_0002
_LOCK_SECRETS = 0x5A_0003
_LOCK_PURGE = 0x5A_0004
_LOCK_REVOCATION_LOG = 0x5A_0005
_LOCK_USER_SESSIONS = 0x5A_0006

# What a lost or refused connection, a restart or a timeout looks like.
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.QueryCanceledError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
)


def _consume_exception(task: asyncio.Future[Any]) -> None:
    # A task abandoned at its deadline may fail later; its error is not news.
    if not task.cancelled():
        task.exception()


def _session(row: asyncpg.Record) -> SessionRow:
    return SessionRow(*row.values())


def _key(row: asyncpg.Record) -> SigningKeyRow:
    return SigningKeyRow(row[0], row[1], bytes(row[2]), row[3], row[4])


async def _log_revocations(
    conn: asyncpg.Connection, revoked: Sequence[tuple[str, str]], now_ms: int
) -> None:
    """Append (handle, user_id) pairs to the revocation log, in this transaction.

    The advisory lock, held to commit, makes cursors commit in cursor order, so a
    watcher that has read cursor N can never later see a smaller one appear."""
    if revoked:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_REVOCATION_LOG)
        await conn.executemany(
            "INSERT INTO revocations (handle, user_id, revoked_at_ms) VALUES ($1, $2, $3)",
            [(handle, user_id, now_ms) for handle, user_id in revoked],
        )


class PostgresStore:
    def __init__(
        self,
        dsn: str,
        *,
        statement_timeout_ms: int = 5000,
        pool_size: int = 10,
    ) -> None:
        self._dsn = dsn
        self._statement_timeout_ms = statement_timeout_ms
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._deadline_s = statement_timeout_ms / 1000 + 1

    # --- lifecycle ----------------------------------------------------------------

    async def open(self) -> list[int]:
        timeout_s = self._statement_timeout_ms / 1000
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._pool_size,
                timeout=timeout_s,  # connecting
                command_timeout=timeout_s + 1,  # client side, behind the server's own
                server_settings={
                    "statement_timeout": str(self._statement_timeout_ms),
                    "idle_in_transaction_session_timeout": str(self._statement_timeout_ms * 2),
                    "application_name": "session-authority",
                },
            )
            return await self.migrate()
        except _UNAVAILABLE as exc:
            await self.close()
            raise StorageUnavailable(f"cannot reach PostgreSQL: {type(exc).__name__}") from exc

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), self._statement_timeout_ms / 1000)
            except (TimeoutError, *_UNAVAILABLE):
                pool.terminate()

    async def ping(self) -> None:
        await self._fetch("SELECT 1")

    async def migrate(self) -> list[int]:
        async def work(conn: asyncpg.Connection) -> list[int]:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_MIGRATIONS)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            applied = []
            for version, statements in migrations("postgresql"):
                if version in done:
                    continue
                for statement in statements:
                    await conn.execute(statement)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
                applied.append(version)
            return applied

        return await self._transaction(work)

    # --- plumbing -------------------------------------------------------------------

    async def _bounded(self, work: Awaitable[T]) -> T:
        """Await database work for at most the statement timeout (plus a second).

        The work runs as its own task, shielded: the caller's cancellation never
        leaves half a transaction, and a frozen server cannot hold the caller
        past the deadline either (asyncpg's own cleanup of a timed-out query
        waits on the server). Work that outlives its caller finishes, or fails,
        in the background; a refresh that commits late is then repeated safely
        under the grace-period rule."""
        task = asyncio.ensure_future(work)
        task.add_done_callback(_consume_exception)
        try:
            return await asyncio.wait_for(asyncio.shield(task), self._deadline_s)
        except _UNAVAILABLE as exc:
            raise StorageUnavailable(f"PostgreSQL: {type(exc).__name__}") from exc

    async def _transaction(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run work in one transaction, within the deadline."""
        pool = self._pool
        if pool is None:
            raise StorageUnavailable("the PostgreSQL store is closed")

        async def run() -> T:
            async with pool.acquire() as conn, conn.transaction():
                return await work(conn)

        return await self._bounded(run())

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        pool = self._pool
        if pool is None:
            raise StorageUnavailable("the PostgreSQL store is closed")
        return list(await self._bounded(pool.fetch(sql, *args)))

    # --- sessions -------------------------------------------------------------------

    async def insert_session(self, row: SessionRow, *, max_sessions_per_user: int = 0) -> list[str]:
        async def work(conn: asyncpg.Connection) -> list[str]:
            evicted: list[tuple[str, str]] = []
            if max_sessions_per_user > 0:
                # One login of a user at a time counts and evicts: row locks alone
                # would not see sessions another login inserts meanwhile.
                await conn.execute(
                    "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                    _LOCK_USER_SESSIONS,
                    row.user_id,
                )
                live = await conn.fetch(
                    "SELECT handle FROM sessions WHERE user_id = $1 AND expires_ms > $2 "
                    "ORDER BY created_ms, handle",
                    row.user_id,
                    row.created_ms,
                )
                excess = len(live) - max_sessions_per_user + 1
                evicted = [(r[0], row.user_id) for r in live[: max(excess, 0)]]
                if evicted:
                    await conn.execute(
                        "DELETE FROM sessions WHERE handle = ANY($1::text[])",
                        [handle for handle, _ in evicted],
                    )
                    await _log_revocations(conn, evicted, row.created_ms)
            await conn.execute(
                f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ({_SESSION_PLACEHOLDERS})",
                *session_values(row),
            )
            return [handle for handle, _ in evicted]

        return await self._transaction(work)

    async def get_session(self, handle: str, now_ms: int) -> SessionRow | None:
        rows = await self._fetch(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE handle = $1 AND expires_ms > $2",
            handle,
            now_ms,
        )
        return _session(rows[0]) if rows else None

    async def update_session(
        self,
        handle: str,
        now_ms: int,
        decide: Callable[[SessionRow | None], tuple[Change, T]],
    ) -> T:
        async def work(conn: asyncpg.Connection) -> T:
            row = await conn.fetchrow(
                f"SELECT {SESSION_COLUMNS} FROM sessions "
                "WHERE handle = $1 AND expires_ms > $2 FOR UPDATE",
                handle,
                now_ms,
            )
            current = _session(row) if row is not None else None
            change, result = decide(current)
            if change is DELETE and current is not None:
                await conn.execute("DELETE FROM sessions WHERE handle = $1", handle)
                await _log_revocations(conn, [(handle, current.user_id)], now_ms)
            elif isinstance(change, SessionRow):
                await conn.execute(_UPDATE_SESSION, *updated_values(change), handle)
            return result

        return await self._transaction(work)

    async def delete_sessions(self, handles: Sequence[str], now_ms: int) -> list[str]:
        unique = list(dict.fromkeys(handles))
        if not unique:
            return []

        async def work(conn: asyncpg.Connection) -> list[str]:
            rows = await conn.fetch(
                "DELETE FROM sessions WHERE handle = ANY($1::text[]) "
                "RETURNING handle, user_id, expires_ms",
                unique,
            )
            live = {row[0]: row[1] for row in rows if row[2] > now_ms}
            revoked = [(handle, live[handle]) for handle in unique if handle in live]
            await _log_revocations(conn, revoked, now_ms)
            return [handle for handle, _ in revoked]

        return await self._transaction(work)

    async def delete_sessions_for_user(self, user_id: str, now_ms: int) -> list[str]:
        async def work(conn: asyncpg.Connection) -> list[str]:
            rows = await conn.fetch(
                "DELETE FROM sessions WHERE user_id = $1 RETURNING handle, expires_ms", user_id
            )
            revoked = [(row[0], user_id) for row in rows if row[1] > now_ms]
            await _log_revocations(conn, revoked, now_ms)
            return [handle for handle, _ in revoked]

        return await self._transaction(work)

    async def delete_other_sessions(self, handle: str, now_ms: int) -> list[str]:
        async def work(conn: asyncpg.Connection) -> list[str]:
            user_id = await conn.fetchval(
                "SELECT user_id FROM sessions WHERE handle = $1 AND expires_ms > $2",
                handle,
                now_ms,
            )
            if user_id is None:
                return []
            rows = await conn.fetch(
                "DELETE FROM sessions WHERE user_id = $1 AND handle <> $2 "
                "RETURNING handle, expires_ms",
                user_id,
                handle,
            )
            revoked = [(row[0], user_id) for row in rows if row[1] > now_ms]
            await _log_revocations(conn, revoked, now_ms)
            return [h for h, _ in revoked]

        return await self._transaction(work)

    async def session_handles_for_user(self, user_id: str, now_ms: int) -> list[str]:
        rows = await self._fetch(
            "SELECT handle FROM sessions WHERE user_id = $1 AND expires_ms > $2 "
            "ORDER BY created_ms",
            user_id,
            now_ms,
        )
        return [row[0] for row in rows]

    async def list_sessions(
        self, user_id: str, now_ms: int, limit: int, before: tuple[int, str] | None
    ) -> tuple[list[SessionRow], int]:
        page = "AND (created_ms, handle) < ($4, $5) " if before is not None else ""
        rows = await self._fetch(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = $1 AND expires_ms > $2 "
            f"{page}ORDER BY created_ms DESC, handle DESC LIMIT $3",
            user_id,
            now_ms,
            limit,
            *(before or ()),
        )
        total = await self._fetch(
            "SELECT count(*) FROM sessions WHERE user_id = $1 AND expires_ms > $2",
            user_id,
            now_ms,
        )
        return [_session(row) for row in rows], int(total[0][0])

    async def revocations_after(self, cursor: int, limit: int) -> list[RevocationRow]:
        rows = await self._fetch(
            "SELECT cursor, handle, user_id, revoked_at_ms FROM revocations "
            "WHERE cursor > $1 ORDER BY cursor LIMIT $2",
            cursor,
            limit,
        )
        return [RevocationRow(*row.values()) for row in rows]

    async def latest_revocation_cursor(self) -> int:
        rows = await self._fetch("SELECT coalesce(max(cursor), 0) FROM revocations")
        return int(rows[0][0])

    async def purge_revocations(self, before_ms: int) -> int:
        async def work(conn: asyncpg.Connection) -> int:
            status = await conn.execute(
                "DELETE FROM revocations WHERE revoked_at_ms < $1", before_ms
            )
            return int(status.split()[-1])

        return await self._transaction(work)

    async def purge_expired(self, now_ms: int, batch_size: int = 1000) -> int:
        """Delete expired rows in batches; a replica that finds another one purging
        (the advisory try-lock is taken) leaves the work to it and returns 0.
        Each batch is its own statement, bounded by the statement timeout."""
        pool = self._pool
        if pool is None:
            raise StorageUnavailable("the PostgreSQL store is closed")
        try:
            async with pool.acquire(timeout=self._deadline_s) as conn:
                if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK_PURGE):
                    return 0
                try:
                    removed = 0
                    while True:
                        status = await conn.execute(
                            "DELETE FROM sessions WHERE handle IN ("
                            "SELECT handle FROM sessions WHERE expires_ms <= $1 "
                            "LIMIT $2 FOR UPDATE SKIP LOCKED)",
                            now_ms,
                            batch_size,
                        )
                        count = int(status.split()[-1])
                        removed += count
                        if count < batch_size:
                            return removed
                finally:
                    await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_PURGE)
        except _UNAVAILABLE as exc:
            raise StorageUnavailable(f"PostgreSQL: {type(exc).__name__}") from exc

    # --- keys and secrets --------------------------------------------------------------

    async def signing_keys(self) -> list[SigningKeyRow]:
        rows = await self._fetch(
            f"SELECT {_KEY_COLUMNS} FROM signing_keys ORDER BY signs_from_ms, created_ms"
        )
        return [_key(row) for row in rows]

    async def add_signing_key(
        self, decide: Callable[[list[SigningKeyRow]], SigningKeyRow | None]
    ) -> list[SigningKeyRow]:
        async def work(conn: asyncpg.Connection) -> list[SigningKeyRow]:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_SIGNING_KEYS)
            rows = await conn.fetch(
                f"SELECT {_KEY_COLUMNS} FROM signing_keys ORDER BY signs_from_ms, created_ms"
            )
            keys = [_key(row) for row in rows]
            new = decide(keys)
            if new is None:
                return keys
            await conn.execute(
                f"INSERT INTO signing_keys ({_KEY_COLUMNS}) VALUES ($1,$2,$3,$4,$5)",
                new.kid,
                new.algorithm,
                new.private_key,
                new.created_ms,
                new.signs_from_ms,
            )
            return [*keys, new]

        return await self._transaction(work)

    async def delete_signing_keys(self, kids: Sequence[str]) -> int:
        async def work(conn: asyncpg.Connection) -> int:
            status = await conn.execute(
                "DELETE FROM signing_keys WHERE kid = ANY($1::text[])", list(kids)
            )
            return int(status.split()[-1])

        return await self._transaction(work) if kids else 0

    async def static_signing_key(self, make: Callable[[], SigningKeyRow]) -> SigningKeyRow:
        async def work(conn: asyncpg.Connection) -> SigningKeyRow:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_SIGNING_KEYS)
            row = await conn.fetchrow(
                "SELECT kid, algorithm, private_key, created_ms, created_ms "
                "FROM static_signing_keys ORDER BY created_ms LIMIT 1"
            )
            if row is not None:
                return _key(row)
            key = make()
            await conn.execute(
                "INSERT INTO static_signing_keys (kid, algorithm, private_key, created_ms) "
                "VALUES ($1, $2, $3, $4)",
                key.kid,
                key.algorithm,
                key.private_key,
                key.created_ms,
            )
            return key

        return await self._transaction(work)

    async def secret(self, name: str, make: Callable[[], bytes]) -> bytes:
        async def work(conn: asyncpg.Connection) -> bytes:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_SECRETS)
            value = await conn.fetchval("SELECT value FROM secrets WHERE name = $1", name)
            if value is not None:
                return bytes(value)
            new = make()
            await conn.execute("INSERT INTO secrets (name, value) VALUES ($1, $2)", name, new)
            return new

        return await self._transaction(work)
