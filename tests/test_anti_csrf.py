"""Anti-CSRF modes: NONE, VIA_TOKEN and VIA_CUSTOM_HEADER, on the local and the
server verification paths and on refresh."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
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

Start = Callable[..., Awaitable[RunningServer]]
Connect = Callable[..., SessionClient]


def jwt_payload(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    decoded = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    assert isinstance(decoded, dict)
    return decoded


def wrong(token: str) -> str:
    return token[:-1] + ("A" if token[-1] != "A" else "B")


@pytest.fixture
async def via_token(start: Start) -> RunningServer:
    return await start(anti_csrf="VIA_TOKEN")


@pytest.fixture(params=["local", "server"])
async def verifier(
    request: pytest.FixtureRequest, via_token: RunningServer, connect: Connect
) -> AsyncIterator[SessionClient]:
    """A client of the VIA_TOKEN server that verifies locally, or asks the server."""
    async with connect(via_token, verify_locally=request.param == "local") as client:
        yield client


# --- NONE ---------------------------------------------------------------------------------


@pytest.mark.parametrize("verify_locally", [True, False])
async def test_none_mode_issues_no_token(
    start: Start, connect: Connect, verify_locally: bool
) -> None:
    server = await start(anti_csrf="NONE")
    async with connect(server, verify_locally=verify_locally) as client:
        created = await client.create_new_session("user-1")
        assert created.anti_csrf_token is None
        assert created.access_token_payload["antiCsrfToken"] is None
        assert jwt_payload(created.access_token)["antiCsrfToken"] is None

        assert await client.get_session(created.access_token) is not None
        assert await client.get_session(created.access_token, anti_csrf_check=True) is not None
        assert await client.get_session(created.access_token, "anything") is not None

        refreshed = await client.refresh_session(refresh_token_of(created))
        assert refreshed.anti_csrf_token is None
        assert jwt_payload(refreshed.access_token)["antiCsrfToken"] is None
        assert await client.get_session(refreshed.access_token, anti_csrf_check=True) is not None


async def test_default_mode_is_none(client: SessionClient) -> None:
    created = await client.create_new_session("user-1")
    assert created.anti_csrf_token is None
    assert jwt_payload(created.access_token)["antiCsrfToken"] is None


# --- VIA_TOKEN: get_session -------------------------------------------------------------------


async def test_via_token_create_issues_a_token_in_the_access_token(verifier: SessionClient) -> None:
    created = await verifier.create_new_session("user-1")
    assert created.anti_csrf_token
    assert created.access_token_payload["antiCsrfToken"] == created.anti_csrf_token
    assert jwt_payload(created.access_token)["antiCsrfToken"] == created.anti_csrf_token
    other = await verifier.create_new_session("user-1")
    assert other.anti_csrf_token != created.anti_csrf_token


async def test_via_token_get_session_requires_the_token(verifier: SessionClient) -> None:
    created = await verifier.create_new_session("user-1")
    token = created.access_token
    assert created.anti_csrf_token is not None

    with pytest.raises(TryRefreshTokenError):
        await verifier.get_session(token)
    with pytest.raises(TryRefreshTokenError):
        await verifier.get_session(token, anti_csrf_check=True)
    with pytest.raises(TryRefreshTokenError):
        await verifier.get_session(token, wrong(created.anti_csrf_token))
    with pytest.raises(TryRefreshTokenError):
        await verifier.get_session(token, "")

    ok = await verifier.get_session(token, created.anti_csrf_token)
    assert ok is not None
    assert ok.session_handle == created.session_handle
    assert await verifier.get_session(token, anti_csrf_check=False) is not None
    assert (
        await verifier.get_session(token, wrong(created.anti_csrf_token), anti_csrf_check=False)
        is not None
    )


async def test_via_token_check_database_applies_the_check_too(
    via_token: RunningServer, connect: Connect
) -> None:
    async with connect(via_token) as client:
        created = await client.create_new_session("user-1")
        with pytest.raises(TryRefreshTokenError):
            await client.get_session(created.access_token, check_database=True)
        ok = await client.get_session(
            created.access_token, created.anti_csrf_token, check_database=True
        )
        assert ok is not None


async def test_anti_csrf_token_of_another_session_is_rejected(verifier: SessionClient) -> None:
    first = await verifier.create_new_session("user-1")
    second = await verifier.create_new_session("user-1")
    with pytest.raises(TryRefreshTokenError):
        await verifier.get_session(first.access_token, second.anti_csrf_token)


# --- VIA_TOKEN: refresh ----------------------------------------------------------------------


async def test_refresh_without_or_with_wrong_token_is_unauthorised_and_keeps_session(
    via_token: RunningServer, connect: Connect, clock: ManualClock
) -> None:
    async with connect(via_token) as client:
        created = await client.create_new_session("user-1")
        assert created.anti_csrf_token is not None

        for presented in (None, wrong(created.anti_csrf_token), ""):
            with pytest.raises(UnauthorisedError) as raised:
                await client.refresh_session(refresh_token_of(created), presented)
            assert not isinstance(raised.value, TokenTheftDetectedError)

        # A failed anti-CSRF check touches nothing: not revoked, not rotated.
        assert await client.get_session_information(created.session_handle) is not None
        clock.advance(60)  # beyond the grace period: a rotation would now make this theft
        refreshed = await client.refresh_session(refresh_token_of(created), created.anti_csrf_token)
        assert refreshed.session_handle == created.session_handle


async def test_refresh_with_the_token_issues_a_new_pair_and_new_anti_csrf_token(
    verifier: SessionClient,
) -> None:
    created = await verifier.create_new_session("user-1")
    refreshed = await verifier.refresh_session(refresh_token_of(created), created.anti_csrf_token)

    assert refreshed.anti_csrf_token
    assert refreshed.anti_csrf_token != created.anti_csrf_token
    assert refreshed.access_token_payload["antiCsrfToken"] == refreshed.anti_csrf_token
    assert jwt_payload(refreshed.access_token)["antiCsrfToken"] == refreshed.anti_csrf_token

    assert await verifier.get_session(refreshed.access_token, refreshed.anti_csrf_token)
    with pytest.raises(TryRefreshTokenError):
        await verifier.get_session(refreshed.access_token, created.anti_csrf_token)
    with pytest.raises(TryRefreshTokenError):
        await verifier.get_session(refreshed.access_token)

    # The next refresh needs the new anti-CSRF token, not the old one.
    with pytest.raises(UnauthorisedError):
        await verifier.refresh_session(refresh_token_of(refreshed), created.anti_csrf_token)
    nxt = await verifier.refresh_session(refresh_token_of(refreshed), refreshed.anti_csrf_token)
    assert nxt.anti_csrf_token not in (None, created.anti_csrf_token, refreshed.anti_csrf_token)


async def test_refresh_with_disable_anti_csrf_needs_none_and_issues_none(
    verifier: SessionClient,
) -> None:
    created = await verifier.create_new_session("user-1")

    refreshed = await verifier.refresh_session(refresh_token_of(created), disable_anti_csrf=True)

    assert refreshed.anti_csrf_token is None
    assert jwt_payload(refreshed.access_token)["antiCsrfToken"] is None
    assert await verifier.get_session(refreshed.access_token) is not None
    assert await verifier.get_session(refreshed.access_token, anti_csrf_check=True) is not None


async def test_create_with_disable_anti_csrf_issues_none(verifier: SessionClient) -> None:
    created = await verifier.create_new_session("user-1", disable_anti_csrf=True)

    assert created.anti_csrf_token is None
    assert jwt_payload(created.access_token)["antiCsrfToken"] is None
    assert await verifier.get_session(created.access_token) is not None
    assert await verifier.get_session(created.access_token, anti_csrf_check=True) is not None

    # Its refresh token was issued without one, so none is needed to refresh it.
    refreshed = await verifier.refresh_session(refresh_token_of(created))
    assert refreshed.session_handle == created.session_handle


async def test_concurrent_refreshes_in_grace_period_share_the_anti_csrf_token(
    via_token: RunningServer, connect: Connect, clock: ManualClock
) -> None:
    async with connect(via_token) as a, connect(via_token) as b:
        created = await a.create_new_session("user-1")
        results = await asyncio.gather(
            *(
                (a, b)[i % 2].refresh_session(refresh_token_of(created), created.anti_csrf_token)
                for i in range(10)
            )
        )
        clock.advance(20)
        late = await b.refresh_session(refresh_token_of(created), created.anti_csrf_token)

        tokens = {r.anti_csrf_token for r in [*results, late]}
        assert len(tokens) == 1
        (shared,) = tokens
        assert shared is not None and shared != created.anti_csrf_token
        assert len({r.refresh_token for r in [*results, late]}) == 1
        for result in [*results, late]:
            assert jwt_payload(result.access_token)["antiCsrfToken"] == shared
            assert await a.get_session(result.access_token, shared) is not None


# --- VIA_CUSTOM_HEADER -----------------------------------------------------------------------


@pytest.mark.parametrize("verify_locally", [True, False])
async def test_custom_header_mode_issues_no_token(
    start: Start, connect: Connect, verify_locally: bool
) -> None:
    server = await start(anti_csrf="VIA_CUSTOM_HEADER")
    async with connect(server, verify_locally=verify_locally) as client:
        created = await client.create_new_session("user-1")
        assert created.anti_csrf_token is None
        assert jwt_payload(created.access_token)["antiCsrfToken"] is None
        assert await client.get_session(created.access_token) is not None
        assert await client.get_session(created.access_token, anti_csrf_check=True) is not None

        refreshed = await client.refresh_session(refresh_token_of(created))
        assert refreshed.anti_csrf_token is None
        assert await client.get_session(refreshed.access_token) is not None
