"""Purging expired sessions and retired signing keys, on both backends."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable

import pytest
from session_authority import SessionClient, TryRefreshTokenError
from session_authority_server.app import RunningServer

from .conftest import ManualClock

DAY_S = 24 * 3600


async def test_purge_removes_expired_sessions_only(
    any_database_url: str,
    start: Callable[..., Awaitable[RunningServer]],
    connect: Callable[..., SessionClient],
    clock: ManualClock,
) -> None:
    server = await start(database_url=any_database_url, refresh_token_validity=DAY_S)
    async with connect(server) as client:
        old = [await client.create_new_session(f"old-{i}") for i in range(5)]
        clock.advance(DAY_S / 2)
        fresh = await client.create_new_session("fresh")
        clock.advance(DAY_S / 2)  # the old ones are now exactly expired
        assert await client.get_session_information(old[0].session_handle) is None

        removed, _ = await server.authority.housekeeping.purge_expired(
            batch_size=2
        )  # several batches
        assert removed == 5
        assert await client.get_session_information(fresh.session_handle) is not None
        assert await server.authority.housekeeping.purge_expired() == (0, 0)


async def test_purge_removes_retired_signing_keys(
    any_database_url: str,
    start: Callable[..., Awaitable[RunningServer]],
    connect: Callable[..., SessionClient],
    clock: ManualClock,
) -> None:
    rotation_s = 4 * 3600
    server = await start(
        database_url=any_database_url,
        signing_key_rotation=rotation_s,
        access_token_validity=3600,
    )
    async with connect(server) as client:
        first = await client.create_new_session("user-1")
        first_kid = (await client.get_jwks())["keys"][0]["kid"]
        # The successor is published an hour before it signs (rotation minus lead).
        clock.advance(rotation_s - 3600)
        await client.create_new_session("user-1")
        clock.advance(3600 + 1)  # the successor has taken over
        second = await client.create_new_session("user-1")
        assert second.access_token.split(".")[0] != first.access_token.split(".")[0]
        assert await server.authority.housekeeping.purge_expired() == (
            0,
            0,
        )  # old tokens still live

        clock.advance(3600 + 61)  # every token the first key signed has expired
        assert await server.authority.housekeeping.purge_expired() == (0, 1)
        kids = {key["kid"] for key in (await client.get_jwks())["keys"]}
        assert first_kid not in kids
        assert kids & {k.kid for k in await server.store.signing_keys()}
        with pytest.raises(TryRefreshTokenError):  # expired, and its key is gone
            await client.get_session(first.access_token)


async def test_periodic_purge_runs_every_interval_and_survives_failures(
    start: Callable[..., Awaitable[RunningServer]],
    connect: Callable[..., SessionClient],
    clock: ManualClock,
) -> None:
    server = await start(refresh_token_validity=DAY_S)
    async with connect(server) as client:
        await client.create_new_session("user-1")
    clock.advance(DAY_S)
    ticks: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        ticks.append(seconds)
        if len(ticks) == 3:
            raise asyncio.CancelledError

    purged_before = await server.store.purge_expired(clock.ms)
    assert purged_before == 1  # the task below then finds nothing more to do
    with pytest.raises(asyncio.CancelledError):
        await server.authority.housekeeping.purge_periodically(123.0, sleep=fake_sleep)
    assert ticks == [123.0, 123.0, 123.0]


async def test_purge_expired_command(
    any_database_url: str,
    start: Callable[..., Awaitable[RunningServer]],
    connect: Callable[..., SessionClient],
    clock: ManualClock,
) -> None:
    # Sessions made 200 days ago (on the test clock) are expired in real time.
    clock.ms = int(time.time() * 1000) - 200 * DAY_S * 1000
    server = await start(database_url=any_database_url)
    async with connect(server) as client:
        for i in range(3):
            await client.create_new_session(f"user-{i}")
    await server.stop(None)

    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_AUTHORITY_")}
    env["SESSION_AUTHORITY_DATABASE_URL"] = any_database_url
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "session_authority_server",
        "purge-expired",
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await process.communicate()
    assert process.returncode == 0
    assert stdout.decode().strip() == "removed 3 expired sessions and 0 retired signing keys"
