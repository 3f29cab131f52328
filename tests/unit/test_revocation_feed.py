"""The revocation feed: a watcher gets the logged backlog first, then each live
revocation as it is made (every cause ends up in the same log)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from session_authority.errors import TokenTheftDetectedError
from session_authority_server.assembly import Authority
from session_authority_server.storage.base import RevocationRow

from ..conftest import ManualClock
from .conftest import MakeAuthority
from .memory_store import MemoryStore

Batches = AsyncIterator[tuple[list[RevocationRow], int]]
QUIET_S = 60.0  # no heartbeat during a test


@asynccontextmanager
async def watching(
    authority: Authority, after_cursor: int = 0, heartbeat_s: float = QUIET_S
) -> AsyncIterator[Batches]:
    """A watcher of the feed, closed afterwards (as a cancelled stream closes it)."""
    watch = authority.revocations.watch(after_cursor, heartbeat_s)
    try:
        yield watch
    finally:
        assert isinstance(watch, AsyncGenerator)
        await watch.aclose()


async def test_watch_yields_the_backlog_then_a_live_revocation(
    authority: Authority, clock: ManualClock
) -> None:
    first, second, third = [
        await authority.sessions.create_new_session("user-1", {}, {}) for _ in range(3)
    ]
    await authority.sessions.revoke_session(first.handle)
    async with watching(authority) as watch:
        rows, cursor = await anext(watch)
        assert [(r.handle, r.user_id, r.revoked_at_ms) for r in rows] == [
            (first.handle, "user-1", clock.now_ms())
        ]
        assert cursor == rows[-1].cursor

        pending = asyncio.ensure_future(anext(watch))
        await asyncio.sleep(0)
        assert not pending.done()  # nothing new yet: the watcher waits
        clock.advance(1)
        await authority.sessions.revoke_other_sessions(third.handle)  # revokes second
        rows, newer = await asyncio.wait_for(pending, 1)
        assert [(r.handle, r.revoked_at_ms) for r in rows] == [(second.handle, clock.now_ms())]
        assert newer > cursor


async def test_a_watcher_without_backlog_hears_at_once_and_resumes_from_its_cursor(
    authority: Authority, store: MemoryStore
) -> None:
    sessions = [await authority.sessions.create_new_session("user-1", {}, {}) for _ in range(3)]
    async with watching(authority) as watch:
        assert await anext(watch) == ([], 0)  # connected, nothing revoked yet

    await authority.sessions.revoke_session(sessions[0].handle)
    await authority.sessions.revoke_all_sessions_for_user("user-1")
    log = store.revocations
    async with watching(authority, log[0].cursor) as resumed:
        rows, cursor = await anext(resumed)
        assert sorted(r.handle for r in rows) == sorted(s.handle for s in sessions[1:])
        assert cursor == log[-1].cursor


async def next_batch_after(
    authority: Authority, action: Callable[[], Awaitable[object]]
) -> list[str]:
    """Handles in the batch a new watcher gets once action has run."""
    async with watching(authority) as watch:
        assert await anext(watch) == ([], 0)
        pending = asyncio.ensure_future(anext(watch))
        await action()
        rows, _ = await asyncio.wait_for(pending, 1)
        return [r.handle for r in rows]


async def test_theft_reaches_watchers(authority: Authority) -> None:
    created = await authority.sessions.create_new_session("user-1", {}, {})
    first = await authority.sessions.refresh_session(
        created.refresh_token.token, None, disable_anti_csrf=False
    )
    await authority.sessions.refresh_session(
        first.refresh_token.token, None, disable_anti_csrf=False
    )

    async def reuse_an_ancestor() -> None:
        with pytest.raises(TokenTheftDetectedError):
            await authority.sessions.refresh_session(
                created.refresh_token.token, None, disable_anti_csrf=False
            )

    assert await next_batch_after(authority, reuse_an_ancestor) == [created.handle]


async def test_cap_evictions_reach_watchers(
    make_authority: MakeAuthority, clock: ManualClock
) -> None:
    authority = await make_authority(max_sessions_per_user=1)
    oldest = await authority.sessions.create_new_session("user-1", {}, {})
    clock.advance(0.001)

    async def log_in_again() -> None:
        await authority.sessions.create_new_session("user-1", {}, {})

    assert await next_batch_after(authority, log_in_again) == [oldest.handle]


async def test_a_quiet_feed_sends_heartbeats(authority: Authority) -> None:
    async with watching(authority, heartbeat_s=0.001) as watch:
        assert await anext(watch) == ([], 0)
        assert await asyncio.wait_for(anext(watch), 1) == ([], 0)
