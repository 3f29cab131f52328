"""The refresh matrix: rotation, concurrent refresh, the grace period, theft
detection and expiry, against a real server, a real client and a SQLite file."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from session_authority import SessionClient
from session_authority.errors import (
    TokenTheftDetectedError,
    TryRefreshTokenError,
    UnauthorisedError,
)
from session_authority_server.app import RunningServer

from .conftest import ManualClock, refresh_token_of

DEFAULT_REFRESH_VALIDITY_MS = 8_640_000 * 1000
BIG = 2**53  # the largest integer the API carries exactly (JSON numbers are doubles)

Start = Callable[..., Awaitable[RunningServer]]
Connect = Callable[..., SessionClient]


def jwt_payload(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    decoded = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    assert isinstance(decoded, dict)
    return decoded


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def assert_revoked(client: SessionClient, handle: str, user_id: str) -> None:
    assert await client.get_session_information(handle) is None
    assert handle not in await client.get_all_session_handles_for_user(user_id)


# --- rotation ---------------------------------------------------------------------------


async def test_refresh_rotates_both_tokens_and_keeps_custom_claims(
    client: SessionClient, clock: ManualClock
) -> None:
    created = await client.create_new_session("user-1", {"role": "admin", "big": BIG}, {"d": 1})
    clock.advance(10)

    refreshed = await client.refresh_session(refresh_token_of(created))

    assert refreshed.session_handle == created.session_handle
    assert refreshed.user_id == "user-1"
    assert refreshed.refresh_token and refreshed.refresh_token != created.refresh_token
    assert refreshed.access_token != created.access_token
    assert refreshed.custom_claims == {"role": "admin", "big": BIG}

    old_payload = jwt_payload(created.access_token)
    new_payload = jwt_payload(refreshed.access_token)
    assert old_payload["refreshTokenHash1"] == sha256_hex(refresh_token_of(created))
    assert new_payload["refreshTokenHash1"] == sha256_hex(refreshed.refresh_token)
    assert new_payload["refreshTokenHash1"] != old_payload["refreshTokenHash1"]
    assert new_payload["parentRefreshTokenHash1"] is None
    assert new_payload["iat"] == clock.now_ms() // 1000
    assert new_payload["big"] == BIG

    local = await client.get_session(refreshed.access_token)
    assert local is not None
    assert local.session_handle == created.session_handle
    assert local.custom_claims == {"role": "admin", "big": BIG}
    checked = await client.get_session(refreshed.access_token, check_database=True)
    assert checked is not None
    assert checked.session_handle == created.session_handle
    assert checked.access_token_payload["refreshTokenHash1"] == sha256_hex(refreshed.refresh_token)

    # The session data in the database is untouched by a refresh.
    info = await client.get_session_information(created.session_handle)
    assert info is not None
    assert info.session_data_in_database == {"d": 1}


async def test_refresh_slides_the_session_expiry(client: SessionClient, clock: ManualClock) -> None:
    created = await client.create_new_session("user-1")
    info = await client.get_session_information(created.session_handle)
    assert info is not None
    assert info.expiry == clock.now_ms() + DEFAULT_REFRESH_VALIDITY_MS
    assert created.refresh_token_expiry == info.expiry

    clock.advance(5000)
    refreshed = await client.refresh_session(refresh_token_of(created))

    info = await client.get_session_information(created.session_handle)
    assert info is not None
    assert info.expiry == clock.now_ms() + DEFAULT_REFRESH_VALIDITY_MS
    assert refreshed.refresh_token_expiry == info.expiry
    assert info.time_created == clock.now_ms() - 5_000_000


async def test_a_chain_of_refreshes_keeps_the_session_alive_past_its_first_expiry(
    start: Start, connect: Connect, clock: ManualClock
) -> None:
    server = await start(refresh_token_validity=7200, access_token_validity=60)
    async with connect(server) as client:
        session = await client.create_new_session("user-1")
        for _ in range(4):
            clock.advance(3600)
            session = await client.refresh_session(refresh_token_of(session))
        # 14,400 s after creation: long past the original 7,200 s expiry.
        assert await client.get_session_information(session.session_handle) is not None
        assert await client.get_session(session.access_token, check_database=True) is not None


# --- concurrent refresh and the grace period -----------------------------------------------


async def test_concurrent_refresh_on_one_client_returns_one_successor(
    client: SessionClient, clock: ManualClock
) -> None:
    created = await client.create_new_session("user-1", {"k": "v"})
    clock.advance(1)

    results = await asyncio.gather(
        *(client.refresh_session(refresh_token_of(created)) for _ in range(20))
    )

    successors = {refresh_token_of(r) for r in results}
    assert len(successors) == 1
    (successor,) = successors
    assert successor != created.refresh_token
    for result in results:
        assert result.session_handle == created.session_handle
        assert jwt_payload(result.access_token)["refreshTokenHash1"] == sha256_hex(successor)
        assert result.custom_claims == {"k": "v"}
        assert await client.get_session(result.access_token) is not None
    assert await client.get_session_information(created.session_handle) is not None

    nxt = await client.refresh_session(successor)
    assert nxt.refresh_token not in (successor, created.refresh_token)
    assert await client.get_session(nxt.access_token, check_database=True) is not None


async def test_concurrent_refresh_over_several_clients_returns_one_successor(
    server: RunningServer, connect: Connect, clock: ManualClock
) -> None:
    async with connect(server) as a, connect(server) as b, connect(server) as c:
        created = await a.create_new_session("user-1")
        clock.advance(1)
        clients = [a, b, c]

        results = await asyncio.gather(
            *(clients[i % 3].refresh_session(refresh_token_of(created)) for i in range(20))
        )

        successors = {refresh_token_of(r) for r in results}
        assert len(successors) == 1
        (successor,) = successors
        assert successor != created.refresh_token
        assert await b.get_session_information(created.session_handle) is not None
        nxt = await c.refresh_session(successor)
        assert nxt.refresh_token != successor
        assert await a.get_session(nxt.access_token, check_database=True) is not None


async def test_concurrent_refresh_over_two_replicas_on_one_database(
    start: Start, connect: Connect, clock: ManualClock
) -> None:
    first = await start()
    second = await start()
    async with connect(first) as a, connect(second) as b:
        created = await a.create_new_session("user-1")
        clock.advance(1)

        results = await asyncio.gather(
            *((a, b)[i % 2].refresh_session(refresh_token_of(created)) for i in range(20))
        )

        assert len({r.refresh_token for r in results}) == 1
        assert await b.get_session_information(created.session_handle) is not None
        nxt = await b.refresh_session(refresh_token_of(results[0]))
        assert await a.get_session(nxt.access_token, check_database=True) is not None


async def test_previous_token_within_grace_period_returns_same_successor(
    client: SessionClient, clock: ManualClock
) -> None:
    created = await client.create_new_session("user-1")
    first = await client.refresh_session(refresh_token_of(created))

    clock.advance(30)  # exactly the default grace period: still a retry
    again = await client.refresh_session(refresh_token_of(created))

    assert again.refresh_token == first.refresh_token
    # A fresh access token for the same successor.
    assert jwt_payload(again.access_token)["iat"] == clock.now_ms() // 1000
    assert jwt_payload(again.access_token)["refreshTokenHash1"] == sha256_hex(
        refresh_token_of(first)
    )
    # No second rotation: the successor is still the current token.
    nxt = await client.refresh_session(refresh_token_of(first))
    assert nxt.refresh_token != first.refresh_token
    assert await client.get_session_information(created.session_handle) is not None


async def test_configured_grace_period_is_honoured(
    start: Start, connect: Connect, clock: ManualClock
) -> None:
    server = await start(refresh_grace_period=5)
    async with connect(server) as client:
        created = await client.create_new_session("user-1")
        first = await client.refresh_session(refresh_token_of(created))
        clock.advance(5)
        assert (await client.refresh_session(refresh_token_of(created))).refresh_token == (
            first.refresh_token
        )
        clock.advance(1)
        with pytest.raises(TokenTheftDetectedError):
            await client.refresh_session(refresh_token_of(created))
        await assert_revoked(client, created.session_handle, "user-1")


# --- theft detection ------------------------------------------------------------------------


async def test_replay_after_grace_period_is_theft_and_revokes(
    client: SessionClient, clock: ManualClock
) -> None:
    created = await client.create_new_session("user-7")
    latest = await client.refresh_session(refresh_token_of(created))

    clock.advance(31)
    with pytest.raises(TokenTheftDetectedError) as raised:
        await client.refresh_session(refresh_token_of(created))

    assert raised.value.session_handle == created.session_handle
    assert raised.value.user_id == "user-7"
    await assert_revoked(client, created.session_handle, "user-7")
    with pytest.raises(UnauthorisedError):
        await client.refresh_session(refresh_token_of(latest))
    with pytest.raises(UnauthorisedError):
        await client.get_session(latest.access_token, check_database=True)


async def test_ancestor_reuse_within_grace_period_is_theft(
    client: SessionClient, clock: ManualClock
) -> None:
    t0 = await client.create_new_session("user-1")
    t1 = await client.refresh_session(refresh_token_of(t0))
    t2 = await client.refresh_session(refresh_token_of(t1))
    # T1 is T2's predecessor: within the grace period it still gets T2 back.
    assert (await client.refresh_session(refresh_token_of(t1))).refresh_token == t2.refresh_token

    with pytest.raises(TokenTheftDetectedError) as raised:
        await client.refresh_session(refresh_token_of(t0))

    assert raised.value.session_handle == t0.session_handle
    assert raised.value.user_id == "user-1"
    await assert_revoked(client, t0.session_handle, "user-1")
    for token in (refresh_token_of(t1), refresh_token_of(t2)):
        with pytest.raises(UnauthorisedError):
            await client.refresh_session(token)


async def test_mangled_refresh_token_is_unauthorised_and_never_theft(
    client: SessionClient, clock: ManualClock
) -> None:
    created = await client.create_new_session("user-1")
    latest = await client.refresh_session(refresh_token_of(created))
    clock.advance(60)
    old = refresh_token_of(created)
    mangled = old[:10] + ("A" if old[10] != "A" else "B") + old[11:]

    for forged in (mangled, old[:-1], old + "A", "", "not-a-token"):
        with pytest.raises(UnauthorisedError):
            await client.refresh_session(forged)

    assert await client.get_session_information(created.session_handle) is not None
    assert (await client.refresh_session(refresh_token_of(latest))).refresh_token


async def test_theft_on_one_session_leaves_other_sessions_of_the_user(
    client: SessionClient, clock: ManualClock
) -> None:
    stolen = await client.create_new_session("user-1")
    other = await client.create_new_session("user-1")
    await client.refresh_session(refresh_token_of(stolen))
    other_latest = await client.refresh_session(refresh_token_of(other))
    clock.advance(31)

    with pytest.raises(TokenTheftDetectedError) as raised:
        await client.refresh_session(refresh_token_of(stolen))

    assert raised.value.session_handle == stolen.session_handle
    assert await client.get_all_session_handles_for_user("user-1") == [other.session_handle]
    assert await client.get_session_information(other.session_handle) is not None
    assert await client.get_session(other_latest.access_token, check_database=True) is not None
    # The other session's latest token still rotates normally.
    nxt = await client.refresh_session(refresh_token_of(other_latest))
    assert nxt.session_handle == other.session_handle


# --- revoked and expired sessions -------------------------------------------------------------


async def test_refresh_after_revoke_is_unauthorised(client: SessionClient) -> None:
    created = await client.create_new_session("user-1")
    assert await client.revoke_session(created.session_handle) is True

    with pytest.raises(UnauthorisedError) as raised:
        await client.refresh_session(refresh_token_of(created))
    assert not isinstance(raised.value, TokenTheftDetectedError)
    assert raised.value.clear_tokens is True


async def test_refresh_after_expiry_is_unauthorised_and_session_is_gone(
    start: Start, connect: Connect, clock: ManualClock
) -> None:
    server = await start(refresh_token_validity=7200, access_token_validity=60)
    async with connect(server) as client:
        created = await client.create_new_session("user-1")
        clock.advance(7199)
        assert await client.get_session_information(created.session_handle) is not None
        clock.advance(2)

        with pytest.raises(UnauthorisedError):
            await client.refresh_session(refresh_token_of(created))
        assert await client.get_session_information(created.session_handle) is None
        assert await client.get_all_session_handles_for_user("user-1") == []
        assert await client.revoke_session(created.session_handle) is False
        assert await client.revoke_all_sessions_for_user("user-1") == []
        assert await client.update_session_data_in_database(created.session_handle, {}) is False
        # The access token itself has long expired: the verifier asks for a refresh.
        with pytest.raises(TryRefreshTokenError):
            await client.get_session(created.access_token, check_database=True)


async def test_expired_session_is_gone_while_an_access_token_is_still_valid(
    start: Start, connect: Connect, clock: ManualClock
) -> None:
    # A grace period as long as the session lets the previous refresh token mint a
    # fresh access token (no rotation, no slide) shortly before the session expires,
    # so the access token outlives the session and check_database must catch it.
    server = await start(
        refresh_token_validity=7200, access_token_validity=60, refresh_grace_period=7200
    )
    async with connect(server) as client:
        created = await client.create_new_session("user-1")
        await client.refresh_session(refresh_token_of(created))  # slides expiry to now + 7200
        clock.advance(7180)
        late = await client.refresh_session(refresh_token_of(created))  # grace: no slide
        clock.advance(21)  # the session expired 1 s ago; `late` is valid for 39 s more

        assert await client.get_session(late.access_token) is not None  # local: no database
        with pytest.raises(UnauthorisedError):
            await client.get_session(late.access_token, check_database=True)
        assert await client.get_session_information(created.session_handle) is None
        assert await client.get_all_session_handles_for_user("user-1") == []
        assert await client.revoke_session(created.session_handle) is False
        with pytest.raises(UnauthorisedError):
            await client.refresh_session(refresh_token_of(late))
