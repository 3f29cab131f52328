"""Local verification in the client: no RPC per get_session, one JWKS fetch."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from session_authority import SessionClient, TryRefreshTokenError
from session_authority_server.app import RunningServer

from .conftest import ManualClock, RpcCounter


async def test_local_verification_makes_no_rpc(
    server: RunningServer, connect: Callable[..., SessionClient], rpc_counter: RpcCounter
) -> None:
    async with connect(server) as client:
        created = await client.create_new_session("user-1", {"role": "reader"})
        await client.get_session(created.access_token)  # first use fetches the JWKS
        assert rpc_counter.calls["GetJwks"] == 1
        before = rpc_counter.total()
        for _ in range(200):
            verified = await client.get_session(created.access_token)
            assert verified is not None and verified.access_token_payload["role"] == "reader"
        assert rpc_counter.total() == before

        # check_database always asks the authority.
        await client.get_session(created.access_token, check_database=True)
        assert rpc_counter.calls["GetSession"] == 1


async def test_remote_verification_makes_one_rpc_per_call(
    server: RunningServer, connect: Callable[..., SessionClient], rpc_counter: RpcCounter
) -> None:
    async with connect(server, verify_locally=False) as client:
        created = await client.create_new_session("user-1")
        for _ in range(5):
            await client.get_session(created.access_token)
        assert rpc_counter.calls["GetSession"] == 5
        assert rpc_counter.calls["GetJwks"] == 0


async def test_local_and_remote_agree_on_expiry(
    server: RunningServer, connect: Callable[..., SessionClient], clock: ManualClock
) -> None:
    async with (
        connect(server) as local,
        connect(server, verify_locally=False) as remote,
    ):
        created = await local.create_new_session("user-1")
        clock.advance(3599)
        assert await local.get_session(created.access_token) is not None
        assert await remote.get_session(created.access_token) is not None
        clock.advance(1)
        for client in (local, remote):
            with pytest.raises(TryRefreshTokenError):
                await client.get_session(created.access_token)


async def test_jwks_cache_expires_and_refetches(
    server: RunningServer,
    connect: Callable[..., SessionClient],
    rpc_counter: RpcCounter,
) -> None:
    async with connect(server) as client:
        created = await client.create_new_session("user-1")
        await client.get_session(created.access_token)
        assert rpc_counter.calls["GetJwks"] == 1
        # The cache's own clock is monotonic time; force staleness through it.
        client.jwks._expires_at = 0.0
        await client.get_session(created.access_token)
        assert rpc_counter.calls["GetJwks"] == 2
