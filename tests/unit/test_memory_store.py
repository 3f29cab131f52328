"""What the contract suite (tests/test_storage_contract.py, "memory" backend)
cannot ask of the in-memory store, because its versions of these tests open a
second store on the same database by URL: the same properties on one store."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable

import pytest
from session_authority_server.storage.base import (
    Change,
    SessionRow,
    SessionStore,
    SigningKeyRow,
    StorageUnavailable,
)

from .memory_store import MemoryStore

NOW = 1_800_000_000_000
HOUR = 3_600_000


def row(handle: str, user_id: str = "alice", **fields: object) -> SessionRow:
    values: dict[str, object] = {
        "handle": handle,
        "user_id": user_id,
        "tenant_id": "public",
        "refresh_hash": handle.encode(),
        "prev_refresh_hash": None,
        "rotated_at_ms": None,
        "access_token_payload": "{}",
        "session_data": "{}",
        "created_ms": NOW,
        "expires_ms": NOW + HOUR,
        "absolute_expires_ms": None,
    }
    values.update(fields)
    return SessionRow(**values)  # type: ignore[arg-type]


def test_it_is_a_session_store() -> None:
    store: SessionStore = MemoryStore()  # mypy checks the protocol; this keeps it honest
    assert isinstance(store, MemoryStore)


async def test_a_closed_store_is_unavailable_until_opened_again() -> None:
    store = MemoryStore()
    assert await store.open() == []
    await store.insert_session(row("h-1"))
    await store.ping()
    await store.close()
    with pytest.raises(StorageUnavailable):
        await store.ping()
    with pytest.raises(StorageUnavailable):
        await store.get_session("h-1", NOW)
    with pytest.raises(StorageUnavailable):
        await store.update_session("h-1", NOW, lambda current: (None, None))
    with pytest.raises(StorageUnavailable):
        await store.secret("name", lambda: b"x")
    await store.open()
    assert await store.get_session("h-1", NOW) == row("h-1")


async def test_an_exception_in_decide_changes_nothing_and_releases_the_lock() -> None:
    store = MemoryStore()
    await store.insert_session(row("h-1", session_data='{"n": 0}'))

    def boom(current: SessionRow | None) -> tuple[Change, None]:
        raise RuntimeError("decide failed")

    for _ in range(3):
        with pytest.raises(RuntimeError):
            await store.update_session("h-1", NOW, boom)
    assert await store.get_session("h-1", NOW) == row("h-1", session_data='{"n": 0}')
    bumped = row("h-1", session_data='{"n": 1}')
    assert await asyncio.wait_for(store.update_session("h-1", NOW, lambda c: (bumped, "ok")), 1)
    assert await store.get_session("h-1", NOW) == bumped


async def test_a_duplicate_handle_is_refused_before_any_eviction() -> None:
    store = MemoryStore()
    await store.insert_session(row("h-1", created_ms=NOW - 1))
    await store.insert_session(row("h-2"))
    with pytest.raises(ValueError, match="exists"):
        await store.insert_session(row("h-2", created_ms=NOW + 1), max_sessions_per_user=1)
    assert await store.session_handles_for_user("alice", NOW) == ["h-1", "h-2"]
    assert store.revocations == []


async def test_concurrent_read_modify_writes_serialise() -> None:
    store = MemoryStore()
    await store.insert_session(row("h-counter", session_data='{"counter": 0}'))

    def increment(current: SessionRow | None) -> tuple[Change, int]:
        assert current is not None
        data = json.loads(current.session_data)
        data["counter"] += 1
        return dataclasses.replace(current, session_data=json.dumps(data)), data["counter"]

    results = await asyncio.gather(
        *(store.update_session("h-counter", NOW, increment) for _ in range(20))
    )
    assert sorted(results) == list(range(1, 21))
    final = await store.get_session("h-counter", NOW)
    assert final is not None and json.loads(final.session_data) == {"counter": 20}


async def test_concurrent_revocations_are_each_logged_once() -> None:
    store = MemoryStore()
    handles = [f"h-{i:02d}" for i in range(20)]
    for i, handle in enumerate(handles):
        await store.insert_session(row(handle, f"user-{i % 4}", created_ms=NOW - 100 + i))
    results = await asyncio.gather(
        *(store.delete_sessions([h], NOW) for h in handles),
        *(store.delete_sessions(handles[::3], NOW) for _ in range(2)),
        store.delete_sessions_for_user("user-1", NOW),
    )
    revoked = [h for result in results for h in result]
    assert sorted(revoked) == handles
    log = await store.revocations_after(0, 100)
    assert sorted(r.handle for r in log) == handles
    assert [r.cursor for r in log] == list(range(1, 21))


async def test_racing_first_keys_and_secrets_are_made_once() -> None:
    store = MemoryStore()
    made: list[str] = []

    def key(kid: str) -> SigningKeyRow:
        made.append(kid)
        return SigningKeyRow(kid, "ES256", b"pem", NOW, NOW)

    def first_key(i: int) -> Callable[[list[SigningKeyRow]], SigningKeyRow | None]:
        return lambda keys: None if keys else key(f"d-{i}")

    def static_key(i: int) -> Callable[[], SigningKeyRow]:
        return lambda: key(f"s-{i}")

    def secret(i: int) -> Callable[[], bytes]:
        def make() -> bytes:
            made.append(f"m-{i}")
            return f"m-{i}".encode()

        return make

    dynamic = await asyncio.gather(*(store.add_signing_key(first_key(i)) for i in range(5)))
    static = await asyncio.gather(*(store.static_signing_key(static_key(i)) for i in range(5)))
    secrets = await asyncio.gather(*(store.secret("mac", secret(i)) for i in range(5)))

    assert made == ["d-0", "s-0", "m-0"]
    assert [[k.kid for k in keys] for keys in dynamic] == [["d-0"]] * 5
    assert [k.kid for k in static] == ["s-0"] * 5
    assert secrets == [b"m-0"] * 5
