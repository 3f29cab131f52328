"""Floors: the CPU an operation cannot do without, measured bare in this run.

- cryptography: sign and verify with key objects loaded once, no JWT library;
- SQLite: plain sqlite3 on one thread, the product's PRAGMAs (WAL, busy_timeout,
  foreign_keys, and synchronous FULL unless the product is run with NORMAL: FULL
  syncs the WAL at every commit, which costs CPU in the kernel as well as time),
  one statement per transaction;
- PostgreSQL: plain asyncpg, single-statement transactions (autocommit) through a
  pool of the product's size, 64 calls in flight.

Each storage floor is the one statement the operation needs: an INSERT for a
create, a SELECT by handle for GetSession(check_database), one compare-and-set
UPDATE ... RETURNING for a refresh, a DELETE ... RETURNING for a revocation.
All CPU figures are thread CPU time (user + system) per operation, in µs.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from session_authority_server.config import Settings
from session_authority_server.storage import open_store

ALGORITHMS = ("RS256", "ES256", "EdDSA")
_COLUMNS = (
    "handle, user_id, tenant_id, refresh_hash, prev_refresh_hash, rotated_at_ms, "
    "access_token_payload, session_data, created_ms, expires_ms, absolute_expires_ms"
)
NOW_MS = 1_800_000_000_000


def cpu_us_per_call(work: Callable[[], Any], seconds: float, batch: int = 20) -> float:
    """Thread CPU µs per call of work, over at least ``seconds`` (one warm-up call)."""
    work()
    calls = 0
    cpu = time.thread_time()
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(batch):
            work()
        calls += batch
    return (time.thread_time() - cpu) / calls * 1e6


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def signing_input(algorithm: str) -> bytes:
    """Header and payload of a typical access token (as tokens.JwtMinter lays it out)."""
    header = {"alg": algorithm, "kid": f"d-{NOW_MS}", "typ": "JWT", "version": "5"}
    payload = {
        "sub": "bench-user-1",
        "exp": NOW_MS // 1000 + 3600,
        "iat": NOW_MS // 1000,
        "sessionHandle": str(uuid.uuid4()),
        "refreshTokenHash1": hashlib.sha256(b"r").hexdigest(),
        "parentRefreshTokenHash1": None,
        "antiCsrfToken": None,
        "tId": "public",
        "rsub": "bench-user-1",
        "iss": "http://127.0.0.1:3567",
        "role": "user",
    }
    parts = [_b64(json.dumps(part, separators=(",", ":")).encode()) for part in (header, payload)]
    return b".".join(parts)


def signer_and_verifier(
    algorithm: str, message: bytes
) -> tuple[Callable[[], bytes], Callable[[], None]]:
    """Bare sign and verify of message with freshly generated key objects."""
    if algorithm == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        sig_args: tuple[Any, ...] = (padding.PKCS1v15(), hashes.SHA256())
    elif algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
        sig_args = (ec.ECDSA(hashes.SHA256()),)
    else:
        private = ed25519.Ed25519PrivateKey.generate()
        sig_args = ()
    public = private.public_key()
    signature = private.sign(message, *sig_args)
    return (
        lambda: private.sign(message, *sig_args),
        lambda: public.verify(signature, message, *sig_args),
    )


def crypto_floors(seconds: float) -> dict[str, dict[str, float]]:
    floors = {}
    for algorithm in ALGORITHMS:
        sign, verify = signer_and_verifier(algorithm, signing_input(algorithm))
        floors[algorithm] = {
            "sign_us": round(cpu_us_per_call(sign, seconds), 1),
            "verify_us": round(cpu_us_per_call(verify, seconds), 1),
        }
    return floors


async def _create_schema(database_url: str) -> None:
    """The product's schema, applied by the product's migrations (setup only)."""
    store = open_store(database_url)
    await store.open()
    await store.close()


def _rows(count: int) -> list[tuple[Any, ...]]:
    return [
        (
            str(uuid.uuid4()),
            f"bench-user-{i % 1000}",
            "public",
            hashlib.sha256(str(i).encode()).digest(),
            None,
            None,
            '{"role":"user"}',
            '{"ip":"127.0.0.1"}',
            NOW_MS,
            NOW_MS + 8_640_000_000,
            None,
        )
        for i in range(count)
    ]


def _statements(placeholder: Callable[[int], str]) -> dict[str, str]:
    p = placeholder
    return {
        "insert": f"INSERT INTO sessions ({_COLUMNS}) VALUES "
        f"({','.join(p(i) for i in range(1, 12))})",
        "select": f"SELECT {_COLUMNS} FROM sessions WHERE handle = {p(1)} AND expires_ms > {p(2)}",
        "update": f"UPDATE sessions SET refresh_hash = {p(1)}, prev_refresh_hash = refresh_hash, "
        f"rotated_at_ms = {p(2)}, expires_ms = {p(3)} "
        f"WHERE handle = {p(4)} AND refresh_hash = {p(5)} "
        "RETURNING user_id, tenant_id, access_token_payload, expires_ms",
        "delete": f"DELETE FROM sessions WHERE handle = {p(1)} RETURNING expires_ms",
    }


def _arguments(rows: list[tuple[Any, ...]]) -> dict[str, list[tuple[Any, ...]]]:
    later = NOW_MS + 1000
    return {
        "insert": rows,
        "select": [(row[0], NOW_MS) for row in rows],
        "update": [
            (hashlib.sha256(row[3]).digest(), later, later + 8_640_000_000, row[0], row[3])
            for row in rows
        ],
        "delete": [(row[0],) for row in rows],
    }


def sqlite_floors(database_url: str, synchronous: str, count: int) -> dict[str, float]:
    asyncio.run(_create_schema(database_url))
    db = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        for pragma in (
            "journal_mode=WAL",
            "busy_timeout=5000",
            f"synchronous={synchronous}",
            "foreign_keys=ON",
        ):
            db.execute(f"PRAGMA {pragma}").fetchall()
        statements = _statements(lambda i: "?")
        floors = {}
        for name, arguments in _arguments(_rows(count)).items():
            sql = statements[name]
            cpu = time.thread_time()
            for args in arguments:
                db.execute(sql, args).fetchall()
            floors[f"{name}_us"] = round((time.thread_time() - cpu) / count * 1e6, 1)
        return floors
    finally:
        db.close()


async def _postgres_floors(database_url: str, count: int, concurrency: int) -> dict[str, float]:
    import asyncpg

    await _create_schema(database_url)
    size = Settings().database_pool_size
    pool = await asyncpg.create_pool(database_url, min_size=size, max_size=size)
    try:
        statements = _statements(lambda i: f"${i}")
        floors = {}
        for name, arguments in _arguments(_rows(count)).items():
            sql = statements[name]
            pending: Iterator[tuple[Any, ...]] = iter(arguments)

            async def caller(sql: str = sql, pending: Iterator[tuple[Any, ...]] = pending) -> None:
                for args in pending:
                    await pool.fetch(sql, *args)

            cpu = time.thread_time()
            await asyncio.gather(*(caller() for _ in range(concurrency)))
            floors[f"{name}_us"] = round((time.thread_time() - cpu) / count * 1e6, 1)
        return floors
    finally:
        await pool.close()


def postgres_floors(database_url: str, count: int, concurrency: int = 64) -> dict[str, float]:
    return asyncio.run(_postgres_floors(database_url, count, concurrency))
