"""Two real server processes (replicas A and B) on one PostgreSQL database, each
called through its own SessionClient: a session moves freely between them, the
grace-period rule and theft detection hold across them, and they share one
signing-key schedule (one first key, one successor per due rotation)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from session_authority import SessionClient
from session_authority.errors import TokenTheftDetectedError, UnauthorisedError
from session_authority.verify import parse_access_token

from .processes import ServerProcess, server_processes

pytestmark = pytest.mark.postgres

# The rotation period of the rotation test, and the publish lead keys.py derives
# from it: a successor is created this long before it starts signing.
ROTATION_S = 3600
PUBLISH_LEAD_MS = min(ROTATION_S * 1000 // 4, 3_600_000)


@dataclass
class Replica:
    process: ServerProcess
    client: SessionClient


@asynccontextmanager
async def replicas(
    database_url: str, count: int = 2, **settings: str
) -> AsyncIterator[list[Replica]]:
    """``count`` server processes on one database, started at the same moment, each
    with its own client; stopped gracefully (SIGTERM) on exit."""
    config = {"database_url": database_url, **settings}
    async with server_processes(*[config] * count) as servers, AsyncExitStack() as stack:
        for server in servers:
            stack.push_async_callback(server.stop)
        clients = [await stack.enter_async_context(server.client()) for server in servers]
        yield [Replica(s, c) for s, c in zip(servers, clients, strict=True)]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def kid_of(access_token: str) -> str:
    return parse_access_token(access_token).kid


async def dynamic_kids(client: SessionClient) -> list[str]:
    """The kids of the rotating access-token keys (d-<created_ms>) in the JWKS."""
    return [k["kid"] for k in (await client.get_jwks())["keys"] if k["kid"].startswith("d-")]


async def fetch(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database_url)
    try:
        return list(await connection.fetch(sql, *args))
    finally:
        await connection.close()


async def signing_key_rows(database_url: str) -> list[asyncpg.Record]:
    return await fetch(
        database_url,
        "SELECT kid, created_ms, signs_from_ms FROM signing_keys ORDER BY signs_from_ms",
    )


async def test_session_created_on_a_refreshes_on_b_and_is_revoked_on_a(
    postgres_url: str,
) -> None:
    async with replicas(postgres_url) as (a, b):
        created = await a.client.create_new_session("alice", {"role": "admin"}, {"cart": 1})
        handle = created.session_handle
        assert created.refresh_token is not None

        verified = await b.client.get_session(created.access_token, check_database=True)
        assert verified is not None and verified.session_handle == handle

        refreshed = await b.client.refresh_session(created.refresh_token)
        assert refreshed.session_handle == handle and refreshed.user_id == "alice"
        assert refreshed.access_token_payload["role"] == "admin"
        assert refreshed.refresh_token not in (None, created.refresh_token)
        # A sees B's rotation: the new tokens are good there too.
        on_a = await a.client.get_session(refreshed.access_token, check_database=True)
        assert on_a is not None and on_a.session_handle == handle
        info = await a.client.get_session_information(handle)
        assert info is not None and info.session_data_in_database == {"cart": 1}

        assert await a.client.revoke_session(handle) is True

        with pytest.raises(UnauthorisedError):
            await b.client.get_session(refreshed.access_token, check_database=True)
        assert refreshed.refresh_token is not None
        with pytest.raises(UnauthorisedError):
            await b.client.refresh_session(refreshed.refresh_token)
        assert await b.client.get_session_information(handle) is None


async def test_concurrent_refreshes_on_both_replicas_get_one_successor(
    postgres_url: str,
) -> None:
    async with replicas(postgres_url) as (a, b):
        created = await a.client.create_new_session("bob")
        token = created.refresh_token
        assert token is not None

        results = await asyncio.gather(
            *(client.refresh_session(token) for client in [a.client, b.client] * 10)
        )

        assert len(results) == 20
        assert {r.session_handle for r in results} == {created.session_handle}
        successors = {r.refresh_token for r in results}
        assert len(successors) == 1, "the grace-period rule must hand out one successor"
        (successor,) = successors
        assert successor is not None and successor != token
        hashes = {r.access_token_payload["refreshTokenHash1"] for r in results}
        assert len(hashes) == 1
        for result in results[:2]:  # one from each replica
            for replica in (a, b):
                assert await replica.client.get_session(result.access_token, check_database=True)

        # The successor is the session's current token: it rotates normally.
        following = await b.client.refresh_session(successor)
        assert following.refresh_token not in (None, token, successor)
        assert await a.client.get_session(following.access_token, check_database=True)


async def test_ancestor_reused_on_b_after_rotation_on_a_is_theft(postgres_url: str) -> None:
    async with replicas(postgres_url) as (a, b):
        t0 = await a.client.create_new_session("carol")
        handle = t0.session_handle
        assert t0.refresh_token is not None
        t1 = await a.client.refresh_session(t0.refresh_token)
        assert t1.refresh_token is not None
        t2 = await a.client.refresh_session(t1.refresh_token)
        assert t2.refresh_token is not None

        with pytest.raises(TokenTheftDetectedError) as caught:
            await b.client.refresh_session(t0.refresh_token)
        assert caught.value.session_handle == handle
        assert caught.value.user_id == "carol"

        for replica in (a, b):
            assert await replica.client.get_session_information(handle) is None
            assert await replica.client.get_all_session_handles_for_user("carol") == []
            with pytest.raises(UnauthorisedError):
                await replica.client.get_session(t2.access_token, check_database=True)
            with pytest.raises(UnauthorisedError):
                await replica.client.refresh_session(t2.refresh_token)


async def test_replicas_starting_at_once_on_an_empty_database_create_one_key(
    postgres_url: str,
) -> None:
    async with replicas(postgres_url) as (a, b):
        jwks_a = (await a.client.get_jwks())["keys"]
        jwks_b = (await b.client.get_jwks())["keys"]
        assert jwks_a == jwks_b
        (kid,) = await dynamic_kids(a.client)
        assert len([k for k in jwks_a if k["kid"].startswith("s-")]) == 1
        for replica in (a, b):
            session = await replica.client.create_new_session("dave")
            assert kid_of(session.access_token) == kid

    assert [row["kid"] for row in await signing_key_rows(postgres_url)] == [kid]
    assert await fetch(postgres_url, "SELECT count(*) FROM signing_keys") == [(1,)]
    assert await fetch(postgres_url, "SELECT count(*) FROM static_signing_keys") == [(1,)]


async def test_rotation_due_on_both_replicas_creates_one_key_that_both_use(
    postgres_url: str,
) -> None:
    """The replicas run on the real clock, so the database is made to look old
    instead: the first key is moved one rotation (plus 1 ms) into the past, which
    makes a rotation due the moment A and B start. The successor it creates is
    published at once but signs only after the publish lead; rather than wait for
    that, its start is then moved into the past too and both replicas restart
    (a running replica reloads its key schedule only when that schedule says so)."""
    rotation = str(ROTATION_S)
    async with replicas(postgres_url, count=1, signing_key_rotation=rotation) as (a,):
        (first_kid,) = await dynamic_kids(a.client)
    age_ms = ROTATION_S * 1000 + 1
    await fetch(
        postgres_url,
        "UPDATE signing_keys SET signs_from_ms = signs_from_ms - $1, created_ms = created_ms - $1",
        age_ms,
    )

    before_ms = now_ms()
    async with replicas(postgres_url, signing_key_rotation=rotation) as (a, b):
        after_ms = now_ms()
        rows = await signing_key_rows(postgres_url)
        assert len(rows) == 2, "exactly one successor for a rotation due on both replicas"
        assert rows[0]["kid"] == first_kid
        new_kid, created_ms, signs_from_ms = rows[1]
        assert new_kid == f"d-{created_ms}"
        assert before_ms <= created_ms <= after_ms
        assert signs_from_ms == created_ms + PUBLISH_LEAD_MS
        for replica in (a, b):
            assert await dynamic_kids(replica.client) == [first_kid, new_kid]
        # Published ahead of use: during the lead both still sign with the first key.
        early = [await r.client.create_new_session(f"early-{i}") for i, r in enumerate((a, b))]
        assert [kid_of(s.access_token) for s in early] == [first_kid, first_kid]

    await fetch(
        postgres_url,
        "UPDATE signing_keys SET signs_from_ms = signs_from_ms - $1 WHERE kid = $2",
        PUBLISH_LEAD_MS + 1,
        new_kid,
    )
    async with replicas(postgres_url, signing_key_rotation=rotation) as (a, b):
        assert [row["kid"] for row in await signing_key_rows(postgres_url)] == [
            first_kid,
            new_kid,
        ]
        late = [await r.client.create_new_session(f"late-{i}") for i, r in enumerate((a, b))]
        assert [kid_of(s.access_token) for s in late] == [new_kid, new_kid]
        for replica in (a, b):
            assert await dynamic_kids(replica.client) == [first_kid, new_kid]
            for session in early + late:  # tokens of either key verify on both
                assert await replica.client.get_session(session.access_token)
                assert await replica.client.get_session(session.access_token, check_database=True)
        for session, replica in zip(early, (b, a), strict=True):
            assert session.refresh_token is not None
            refreshed = await replica.client.refresh_session(session.refresh_token)
            assert kid_of(refreshed.access_token) == new_kid

    assert await fetch(postgres_url, "SELECT count(*) FROM signing_keys") == [(2,)]
