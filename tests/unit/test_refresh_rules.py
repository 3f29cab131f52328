"""The refresh rules: the current token rotates; the token just replaced, within
the grace period, gets the same successor without a second rotation; any other
authentic token of the session is theft and revokes it. Forged tokens touch
nothing."""

from __future__ import annotations

import asyncio
import os

import pytest
from session_authority.errors import TokenTheftDetectedError, UnauthorisedError
from session_authority_server.assembly import Authority
from session_authority_server.sessions import SessionTokens
from session_authority_server.tokens import RefreshTokenCodec

from ..conftest import ManualClock
from .conftest import MakeAuthority
from .memory_store import MemoryStore
from .support import RecordingObserver, sha256_hex

GRACE_MS = 30_000  # the default refresh_grace_period


async def refresh(authority: Authority, tokens: SessionTokens) -> SessionTokens:
    return await authority.sessions.refresh_session(
        tokens.refresh_token.token, None, disable_anti_csrf=False
    )


async def test_the_current_token_rotates(
    authority: Authority, store: MemoryStore, clock: ManualClock, observer: RecordingObserver
) -> None:
    created = await authority.sessions.create_new_session("user-1", {"role": "admin"}, {"d": 1})
    before = store.sessions[created.handle]
    clock.advance(10)

    refreshed = await refresh(authority, created)

    assert refreshed.handle == created.handle
    assert refreshed.refresh_token.token != created.refresh_token.token
    assert refreshed.access_token.token != created.access_token.token
    payload = refreshed.access_token_payload
    assert payload["role"] == "admin"
    assert payload["refreshTokenHash1"] == sha256_hex(refreshed.refresh_token.token)
    assert payload["parentRefreshTokenHash1"] is None
    assert payload["iat"] == clock.now_ms() // 1000

    after = store.sessions[created.handle]
    assert after.prev_refresh_hash == before.refresh_hash
    assert after.refresh_hash != before.refresh_hash
    assert after.rotated_at_ms == after.last_refreshed_ms == clock.now_ms()
    assert after.session_data == before.session_data  # a refresh leaves the data alone
    assert observer.events == ["created", "refreshed"]


async def test_the_previous_token_within_the_grace_period_gets_the_same_successor(
    authority: Authority, store: MemoryStore, clock: ManualClock, observer: RecordingObserver
) -> None:
    created = await authority.sessions.create_new_session("user-1", {}, {})
    first = await refresh(authority, created)
    rotated = store.sessions[created.handle]
    clock.advance(10)

    again = await refresh(authority, created)  # a second tab, or a retry

    assert again.refresh_token.token == first.refresh_token.token
    assert again.access_token_payload["iat"] == clock.now_ms() // 1000  # a fresh access token
    assert store.sessions[created.handle] == rotated  # no second rotation
    # Neither tab is logged out: the successor rotates as usual.
    newer = await refresh(authority, first)
    assert newer.refresh_token.token != first.refresh_token.token
    assert observer.events == ["created", "refreshed", "refreshed", "refreshed"]


async def test_concurrent_refreshes_of_one_token_agree_on_one_successor(
    authority: Authority, store: MemoryStore, observer: RecordingObserver
) -> None:
    created = await authority.sessions.create_new_session("user-1", {}, {})
    results = await asyncio.gather(*(refresh(authority, created) for _ in range(5)))
    assert len({r.refresh_token.token for r in results}) == 1
    assert store.sessions[created.handle].prev_refresh_hash is not None
    assert observer.events == ["created"] + ["refreshed"] * 5


async def test_an_ancestor_token_is_theft_and_revokes_the_session(
    authority: Authority, store: MemoryStore, clock: ManualClock, observer: RecordingObserver
) -> None:
    created = await authority.sessions.create_new_session("user-1", {}, {})
    first = await refresh(authority, created)
    second = await refresh(authority, first)
    observer.take()

    with pytest.raises(TokenTheftDetectedError) as theft:
        await refresh(authority, created)  # two rotations old

    assert (theft.value.session_handle, theft.value.user_id) == (created.handle, "user-1")
    assert observer.events == ["theft", "revoked 1 theft"]
    assert created.handle not in store.sessions
    assert [(r.handle, r.revoked_at_ms) for r in store.revocations] == [
        (created.handle, clock.now_ms())
    ]
    # The thief's and the owner's tokens are all dead now, without another theft.
    for tokens in (second, first, created):
        with pytest.raises(UnauthorisedError):
            await refresh(authority, tokens)
    assert observer.events == ["theft", "revoked 1 theft"]


async def test_the_grace_period_ends_after_exactly_its_length(
    authority: Authority, clock: ManualClock, observer: RecordingObserver
) -> None:
    created = await authority.sessions.create_new_session("user-1", {}, {})
    first = await refresh(authority, created)
    rotated_at = clock.now_ms()

    clock.ms = rotated_at + GRACE_MS  # the last millisecond of the grace period
    assert (await refresh(authority, created)).refresh_token.token == first.refresh_token.token
    clock.ms = rotated_at + GRACE_MS + 1
    with pytest.raises(TokenTheftDetectedError):
        await refresh(authority, created)
    assert observer.events[-2:] == ["theft", "revoked 1 theft"]


async def test_the_previous_token_is_theft_after_a_newer_rotation(authority: Authority) -> None:
    created = await authority.sessions.create_new_session("user-1", {}, {})
    first = await refresh(authority, created)
    second = await refresh(authority, first)
    # first is now the previous token: within the grace period it gets second's token.
    assert (await refresh(authority, first)).refresh_token.token == second.refresh_token.token
    # created is no longer the previous token, even within the grace period.
    with pytest.raises(TokenTheftDetectedError):
        await refresh(authority, created)


async def test_with_no_grace_period_a_later_reuse_is_theft(
    make_authority: MakeAuthority, clock: ManualClock
) -> None:
    authority = await make_authority(refresh_grace_period=0)
    created = await authority.sessions.create_new_session("user-1", {}, {})
    await refresh(authority, created)
    clock.advance(0.001)
    with pytest.raises(TokenTheftDetectedError):
        await refresh(authority, created)


async def test_a_forged_or_mangled_refresh_token_touches_nothing(
    authority: Authority, store: MemoryStore, observer: RecordingObserver
) -> None:
    created = await authority.sessions.create_new_session("user-1", {}, {})
    row = store.sessions[created.handle]
    token = created.refresh_token.token
    flipped = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    # Whoever knows a session handle can make a well-formed token for it, but not
    # its MAC: it must not count as a reused ancestor, or it could revoke the session.
    foreign = RefreshTokenCodec(os.urandom(32)).issue(
        created.handle, os.urandom(32), anti_csrf=False
    )

    for forged in (flipped, foreign, token[:-1], token + "A", "", "x" * len(token)):
        with pytest.raises(UnauthorisedError):
            await authority.sessions.refresh_session(forged, None, disable_anti_csrf=False)
    assert store.sessions[created.handle] == row
    assert store.revocations == []
    assert observer.events == ["created"]


async def test_refreshing_a_revoked_or_expired_session_is_unauthorised(
    make_authority: MakeAuthority, clock: ManualClock, observer: RecordingObserver
) -> None:
    authority = await make_authority(refresh_token_validity=60, access_token_validity=10)
    revoked = await authority.sessions.create_new_session("user-1", {}, {})
    expired = await authority.sessions.create_new_session("user-1", {}, {})
    await authority.sessions.revoke_session(revoked.handle)
    observer.take()

    with pytest.raises(UnauthorisedError):
        await refresh(authority, revoked)
    clock.advance(60)
    with pytest.raises(UnauthorisedError):
        await refresh(authority, expired)
    assert observer.events == []  # neither is theft
