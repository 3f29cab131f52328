"""Signing keys: the header and JWKS, the rotation schedule on the injected clock,
the other algorithms, an algorithm change on an existing database, and key
creation shared between servers on one database."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from session_authority import SessionClient
from session_authority.errors import TryRefreshTokenError
from session_authority_server.app import RunningServer
from session_authority_server.storage import open_store

from .conftest import ManualClock, RpcCounter, refresh_token_of

Start = Callable[..., Awaitable[RunningServer]]
Connect = Callable[..., SessionClient]

HOUR = 3600
ROTATION = 4 * HOUR
LEAD = min(ROTATION // 4, HOUR)  # the successor is published this long before it signs
SKEW = 60  # seconds a retired key stays published beyond the last token it signed


def _segment(token: str, index: int) -> dict[str, Any]:
    segment = token.split(".")[index]
    decoded = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    assert isinstance(decoded, dict)
    return decoded


def header(token: str) -> dict[str, Any]:
    return _segment(token, 0)


def kid_of(token: str) -> str:
    kid = header(token)["kid"]
    assert isinstance(kid, str)
    return kid


async def dynamic_jwks(client: SessionClient) -> list[dict[str, Any]]:
    """The JWKS entries of the rotating access-token keys (d-<created_ms>), in order;
    the static CreateJWT key (s-<uuid>) is left out."""
    return [key for key in (await client.get_jwks())["keys"] if key["kid"].startswith("d-")]


async def jwks_kids(client: SessionClient) -> list[str]:
    return [key["kid"] for key in await dynamic_jwks(client)]


async def assert_verifies(local: SessionClient, remote: SessionClient, token: str) -> None:
    """The token verifies locally (JWKS cache) and on the server (with and without
    the database check)."""
    assert await local.get_session(token) is not None
    assert await remote.get_session(token) is not None
    assert await remote.get_session(token, check_database=True) is not None


async def assert_rejected(local: SessionClient, remote: SessionClient, token: str) -> None:
    with pytest.raises(TryRefreshTokenError):
        await local.get_session(token)
    with pytest.raises(TryRefreshTokenError):
        await remote.get_session(token)


# --- header and JWKS --------------------------------------------------------------------------


async def test_access_token_header_and_jwks(
    server: RunningServer, client: SessionClient, clock: ManualClock
) -> None:
    created = await client.create_new_session("user-1")

    head = header(created.access_token)
    assert re.fullmatch(r"d-\d+", head["kid"])
    assert head["kid"] == f"d-{clock.now_ms()}"  # d-<created_ms>: created at server start
    assert head["alg"] == "RS256"
    assert head["version"] == "5"

    assert await jwks_kids(client) == [head["kid"]]
    (jwk,) = await dynamic_jwks(client)
    assert jwk["kty"] == "RSA"
    assert jwk["alg"] == "RS256"
    assert jwk["use"] == "sig"
    assert jwk["n"] and jwk["e"]
    assert not {"d", "p", "q", "dp", "dq", "qi"} & jwk.keys()


# --- rotation ---------------------------------------------------------------------------------


async def test_rotation_schedule(start: Start, connect: Connect, clock: ManualClock) -> None:
    server = await start(signing_key_rotation=ROTATION, access_token_validity=HOUR)
    t0 = clock.now_ms()
    async with (
        connect(server) as early,  # caches the JWKS before the rotation
        connect(server, verify_locally=False) as remote,
    ):
        session = await early.create_new_session("user-1")
        k1 = kid_of(session.access_token)
        assert k1 == f"d-{t0}"
        assert await early.get_session(session.access_token) is not None  # fills the cache
        assert await jwks_kids(early) == [k1]

        # Just before the publish point nothing changes.
        clock.advance(ROTATION - LEAD - 1)
        assert kid_of((await early.create_new_session("u")).access_token) == k1
        assert await jwks_kids(early) == [k1]

        # Past it: the successor is created and published, but does not sign yet.
        clock.advance(2)
        published_ms = clock.now_ms()
        assert kid_of((await early.create_new_session("u")).access_token) == k1
        k2 = f"d-{published_ms}"
        assert await jwks_kids(early) == [k1, k2]

        # One second before the switch: still the old key, both published.
        clock.advance(LEAD - 1)
        last_old = await early.create_new_session("user-2")
        assert kid_of(last_old.access_token) == k1
        assert await jwks_kids(early) == [k1, k2]

        # The switch: created and refreshed tokens use the new key.
        clock.advance(1)
        switch_ms = clock.now_ms()
        assert switch_ms == published_ms + LEAD * 1000
        fresh = await early.create_new_session("user-3")
        assert kid_of(fresh.access_token) == k2
        refreshed = await early.refresh_session(refresh_token_of(session))
        assert kid_of(refreshed.access_token) == k2
        assert await jwks_kids(early) == [k1, k2]

        async with connect(server) as late:  # a cache fetched after the switch
            await assert_verifies(late, remote, fresh.access_token)
            await assert_verifies(late, remote, refreshed.access_token)
            # The old key's last token verifies until it expires, from either cache.
            await assert_verifies(early, remote, last_old.access_token)
            await assert_verifies(late, remote, last_old.access_token)

            clock.advance(HOUR - 2)  # 1 s before last_old expires
            await assert_verifies(early, remote, last_old.access_token)
            await assert_verifies(late, remote, last_old.access_token)
            assert await jwks_kids(early) == [k1, k2]

            clock.advance(1)  # last_old has expired
            await assert_rejected(late, remote, last_old.access_token)

        # The old key stays published for the token validity plus the skew after
        # the switch, then leaves the JWKS; the new one stays.
        clock.advance((switch_ms + (HOUR + SKEW) * 1000 - clock.now_ms()) / 1000 - 1)
        assert await jwks_kids(early) == [k1, k2]
        clock.advance(1)
        assert await jwks_kids(early) == [k2]
        # Tokens of the new key are unaffected.
        latest = await early.refresh_session(refresh_token_of(refreshed))
        assert kid_of(latest.access_token) == k2
        async with connect(server) as after:
            await assert_verifies(after, remote, latest.access_token)


async def test_successor_is_created_once_and_then_rotates_again(
    start: Start, connect: Connect, clock: ManualClock
) -> None:
    server = await start(signing_key_rotation=ROTATION, access_token_validity=HOUR)
    async with connect(server) as client:
        await client.create_new_session("u")
        k1 = (await jwks_kids(client))[0]
        clock.advance(ROTATION - LEAD)
        for _ in range(3):  # several mints in the publish window: one successor
            await client.create_new_session("u")
        kids = await jwks_kids(client)
        assert len(kids) == 2 and kids[0] == k1
        k2 = kids[1]

        # The next rotation is due one rotation after k2 started signing.
        clock.advance(ROTATION)
        token = (await client.create_new_session("u")).access_token
        assert kid_of(token) == k2
        kids = await jwks_kids(client)
        assert len(kids) == 2 and kids[0] == k2  # k1 retired long ago, k3 published
        k3 = kids[1]
        clock.advance(LEAD)
        assert kid_of((await client.create_new_session("u")).access_token) == k3


async def test_client_with_cached_jwks_refetches_once_for_a_new_kid(
    start: Start, connect: Connect, clock: ManualClock, rpc_counter: RpcCounter
) -> None:
    server = await start(signing_key_rotation=ROTATION, access_token_validity=HOUR)
    async with connect(server) as cached, connect(server) as minter:
        before = await minter.create_new_session("user-1")
        assert await cached.get_session(before.access_token) is not None
        assert rpc_counter.calls["GetJwks"] == 1
        assert await cached.get_session(before.access_token) is not None
        assert rpc_counter.calls["GetJwks"] == 1  # served from the cache

        clock.advance(ROTATION - LEAD)
        await minter.create_new_session("user-1")  # publishes the successor
        clock.advance(LEAD)
        after = await minter.create_new_session("user-1")
        assert kid_of(after.access_token) != kid_of(before.access_token)
        assert rpc_counter.calls["GetJwks"] == 1

        verified = await cached.get_session(after.access_token)
        assert verified is not None
        assert verified.session_handle == after.session_handle
        assert rpc_counter.calls["GetJwks"] == 2
        # Known now: further tokens of the new key need no fetch.
        another = await minter.create_new_session("user-2")
        assert await cached.get_session(another.access_token) is not None
        assert await cached.get_session(after.access_token) is not None
        assert rpc_counter.calls["GetJwks"] == 2


# --- algorithms -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "kty", "crv"), [("ES256", "EC", "P-256"), ("EdDSA", "OKP", "Ed25519")]
)
async def test_other_algorithms(
    start: Start, connect: Connect, algorithm: str, kty: str, crv: str
) -> None:
    server = await start(signing_algorithm=algorithm)
    async with connect(server) as local, connect(server, verify_locally=False) as remote:
        created = await local.create_new_session("user-1", {"k": 1})
        head = header(created.access_token)
        assert head["alg"] == algorithm
        assert re.fullmatch(r"d-\d+", head["kid"])

        (jwk,) = await dynamic_jwks(local)
        assert jwk["kid"] == head["kid"]
        assert jwk["kty"] == kty
        assert jwk["crv"] == crv
        assert jwk["alg"] == algorithm
        assert "x" in jwk and "d" not in jwk

        await assert_verifies(local, remote, created.access_token)
        refreshed = await local.refresh_session(refresh_token_of(created))
        assert header(refreshed.access_token)["alg"] == algorithm
        await assert_verifies(local, remote, refreshed.access_token)

        h, p, s = created.access_token.split(".")
        tampered = f"{h}.{p}.{s[:-4]}{'AAAA' if s[-4:] != 'AAAA' else 'BBBB'}"
        await assert_rejected(local, remote, tampered)


async def test_changing_the_algorithm_on_an_existing_database(
    start: Start, connect: Connect, clock: ManualClock
) -> None:
    first = await start()
    async with connect(first) as client:
        old = await client.create_new_session("user-1", {"k": "v"})
    old_kid = kid_of(old.access_token)
    assert header(old.access_token)["alg"] == "RS256"
    await first.stop(None)

    clock.advance(10)
    second = await start(signing_algorithm="ES256")
    async with connect(second) as local, connect(second, verify_locally=False) as remote:
        new = await local.create_new_session("user-2")
        head = header(new.access_token)
        assert head["alg"] == "ES256"
        assert head["kid"] != old_kid
        assert head["kid"] == f"d-{clock.now_ms()}"

        keys = {key["kid"]: key for key in await dynamic_jwks(local)}
        assert set(keys) == {old_kid, head["kid"]}
        assert keys[old_kid]["kty"] == "RSA"
        assert keys[head["kid"]]["kty"] == "EC"

        await assert_verifies(local, remote, old.access_token)
        await assert_verifies(local, remote, new.access_token)
        # The RS256 session refreshes into an ES256 token.
        refreshed = await remote.refresh_session(refresh_token_of(old))
        assert header(refreshed.access_token) == head
        assert refreshed.custom_claims == {"k": "v"}
        await assert_verifies(local, remote, refreshed.access_token)


# --- key objects and creation -----------------------------------------------------------------


async def test_keys_are_parsed_once(start: Start, clock: ManualClock) -> None:
    server = await start(signing_key_rotation=ROTATION, access_token_validity=HOUR)
    ring = server.authority.keys
    first = await ring.signer()
    assert await ring.signer() is first
    assert await ring.signer() is first

    # Publishing a successor reloads the ring from the database; the signing key
    # object survives the reload.
    clock.advance(ROTATION - LEAD)
    assert await ring.signer() is first
    clock.advance(LEAD)
    successor = await ring.signer()
    assert successor is not first
    assert await ring.signer() is successor


async def test_two_servers_on_an_empty_database_create_one_key(
    start: Start, connect: Connect
) -> None:
    first, second = await asyncio.gather(start(), start())
    await check_one_shared_key(first, second, connect)


async def test_servers_racing_to_initialise_fresh_databases(
    start: Start, connect: Connect, tmp_path: Path
) -> None:
    # Two replicas (or `serve --workers 2`) starting together on a new SQLite file
    # race on its first initialisation; several fresh files make a lost race show
    # up reliably. ES256 keeps key generation cheap.
    for attempt in range(8):
        url = f"sqlite:///{tmp_path}/fresh-{attempt}.db"
        first, second = await asyncio.gather(
            start(database_url=url, signing_algorithm="ES256"),
            start(database_url=url, signing_algorithm="ES256"),
        )
        await check_one_shared_key(first, second, connect)


async def check_one_shared_key(
    first: RunningServer, second: RunningServer, connect: Connect
) -> None:
    async with connect(first) as a, connect(second) as b:
        kids_a = await jwks_kids(a)
        assert len(kids_a) == 1
        assert await jwks_kids(b) == kids_a
        assert await b.get_jwks() == await a.get_jwks()  # one static key too

        on_a = await a.create_new_session("user-1")
        on_b = await b.create_new_session("user-1")
        assert kid_of(on_a.access_token) == kid_of(on_b.access_token) == kids_a[0]
        # The replicas share the key and the refresh-token secret.
        assert await b.get_session(on_a.access_token, check_database=True) is not None
        refreshed = await b.refresh_session(refresh_token_of(on_a))
        assert await a.get_session(refreshed.access_token, check_database=True) is not None


async def test_two_servers_racing_on_a_migrated_keyless_database_create_one_key(
    start: Start, connect: Connect, database_url: str
) -> None:
    # Schema in place but no key yet: both servers race only in key creation.
    store = open_store(database_url)
    await store.open()
    assert await store.signing_keys() == []
    await store.close()

    first, second = await asyncio.gather(start(), start())
    async with connect(first) as a, connect(second) as b:
        kids = await jwks_kids(a)
        assert len(kids) == 1
        assert await jwks_kids(b) == kids
        assert await b.get_jwks() == await a.get_jwks()  # one static key too
        assert kid_of((await b.create_new_session("u")).access_token) == kids[0]


async def test_two_servers_started_one_after_the_other_share_the_key(
    start: Start, connect: Connect
) -> None:
    first = await start()
    second = await start()
    async with connect(first) as a, connect(second) as b:
        assert len(await jwks_kids(a)) == 1
        assert await b.get_jwks() == await a.get_jwks()
        on_a = await a.create_new_session("user-1")
        refreshed = await b.refresh_session(refresh_token_of(on_a))
        assert kid_of(refreshed.access_token) == kid_of(on_a.access_token)
