"""Operating the authority (issue 5): the HTTP side (JWKS, discovery, probes,
metrics), gRPC health and reflection, caller authentication with API keys,
signing keys sealed at rest under a master key, and undecodable requests."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from session_authority import SessionClient
from session_authority.errors import (
    ApiKeyInvalidError,
    InvalidArgumentError,
    TokenTheftDetectedError,
    UnauthorisedError,
)
from session_authority.v1 import session_service_pb2 as pb
from session_authority.v1 import session_service_pb2_grpc as pb_grpc
from session_authority.verify import parse_access_token
from session_authority.wire import error_from_rpc_error, error_info
from session_authority_server.app import SERVICE_NAME, RunningServer, report_readiness
from session_authority_server.auth import CallerAuthenticator, is_loopback
from session_authority_server.config import ConfigError, load_settings
from session_authority_server.storage import open_store

from .conftest import ManualClock

Start = Callable[..., Awaitable[RunningServer]]
Connect = Callable[..., SessionClient]

KEY_1 = "k" * 20 + "1"
KEY_2 = "k" * 20 + "2"
REFLECTION_SERVICE = "grpc.reflection.v1alpha.ServerReflection"
HEALTH_SERVICE = "grpc.health.v1.Health"
SEALED_PREFIX = b"sealed:v1:"
KEY_TABLES = ("signing_keys", "static_signing_keys", "secrets")
POLL_TIMEOUT_S = 5.0


# --- helpers ---------------------------------------------------------------------------


async def http_get(server: RunningServer, path: str) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of GET path on the HTTP side."""
    assert server.http_port is not None
    url = f"http://127.0.0.1:{server.http_port}{path}"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        headers = {name.lower(): value for name, value in response.headers.items()}
        return response.status, headers, await response.read()


def max_age(cache_control: str) -> int:
    match = re.search(r"(?:^|[,\s])max-age=(\d+)(?:$|[,\s])", cache_control)
    assert match, f"no max-age in Cache-Control: {cache_control!r}"
    return int(match.group(1))


def by_kid(keys: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {key["kid"]: key for key in keys}


def wire_text(error: grpc.aio.AioRpcError) -> str:
    """Everything a caller sees of a failed call, as text."""
    trailing = error.trailing_metadata() or ()
    return " ".join(
        [
            str(error.details()),
            error.debug_error_string() or "",
            *(repr(value) for _, value in trailing),
        ]
    )


def samples(exposition: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def sample(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def key_rows(database: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the tables that hold secrets, read straight from the SQLite file."""
    with sqlite3.connect(database) as db:
        return {
            "signing_keys": db.execute(
                "SELECT kid, private_key FROM signing_keys ORDER BY kid"
            ).fetchall(),
            "static_signing_keys": db.execute(
                "SELECT kid, private_key FROM static_signing_keys ORDER BY kid"
            ).fetchall(),
            "secrets": db.execute("SELECT name, value FROM secrets ORDER BY name").fetchall(),
        }


def database_path(database_url: str) -> Path:
    return Path(database_url.removeprefix("sqlite:///"))


def new_master_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


async def health_status(target: str, service: str) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
        return int(response.status)


async def reflect(
    target: str, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = stub.ServerReflectionInfo(iter([request]), timeout=5)
        responses = [response async for response in call]
    assert len(responses) == 1
    return responses[0]


class StandInContext:
    """The two things CallerAuthenticator reads from a grpc ServicerContext."""

    def __init__(self, peer: str, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self._peer = peer
        self._metadata = metadata

    def peer(self) -> str:
        return self._peer

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


# --- the HTTP side -------------------------------------------------------------------


async def test_http_jwks_matches_grpc_and_caches_no_longer_than_the_next_key(
    start: Start, connect: Connect
) -> None:
    rotation_s = 7 * 24 * 3600
    server = await start(signing_key_rotation=rotation_s)
    async with connect(server) as client:
        status, headers, body = await http_get(server, "/.well-known/jwks.json")
        assert status == 200
        assert headers["content-type"].startswith("application/json")
        document = json.loads(body)
        grpc_jwks = await client.get_jwks()
    assert by_kid(document["keys"]) == by_kid(grpc_jwks["keys"])
    assert len(document["keys"]) == 2  # the first dynamic key and the static key
    for key in document["keys"]:
        assert not {"d", "p", "q", "dp", "dq", "qi"} & key.keys(), "a private part is published"
    seconds = max_age(headers["cache-control"])
    # A fresh ring: the next key starts signing one rotation after the first.
    assert 0 < seconds <= rotation_s


async def test_jwks_cache_lifetime_never_outlives_the_published_keys(
    start: Start, connect: Connect, clock: ManualClock
) -> None:
    """At any moment, a verifier holding the JWKS for its max-age knows the key of
    every access token minted meanwhile; one second later a new key may sign."""
    rotation_s = 400
    server = await start(
        signing_key_rotation=rotation_s, access_token_validity=60, refresh_token_validity=86400
    )
    async with connect(server) as client:
        # Fetch at a rotation boundary, inside a publish window (a successor is
        # published but not yet signing), and in between.
        for step, then in enumerate((0, 1, 0, 120, 0)):
            status, headers, body = await http_get(server, "/.well-known/jwks.json")
            assert status == 200
            cached = by_kid(json.loads(body)["keys"])
            seconds = max_age(headers["cache-control"])
            assert 0 < seconds <= 2 * rotation_s, f"step {step}: max-age {seconds}"
            # Still inside the cached lifetime: the token's key is in the cached set.
            clock.advance(seconds - 1)
            session = await client.create_new_session(f"user-{step}")
            assert parse_access_token(session.access_token).kid in cached, f"step {step}"
            clock.advance(then)


async def test_jwks_max_age_counts_down_with_the_clock(start: Start, clock: ManualClock) -> None:
    rotation_s = 3600
    server = await start(signing_key_rotation=rotation_s)
    _, headers, _ = await http_get(server, "/.well-known/jwks.json")
    first = max_age(headers["cache-control"])
    clock.advance(1000)
    _, headers, _ = await http_get(server, "/.well-known/jwks.json")
    assert max_age(headers["cache-control"]) == first - 1000


async def test_openid_configuration_points_at_the_http_jwks(start: Start, connect: Connect) -> None:
    server = await start(issuer="https://auth.example.com/")
    status, headers, body = await http_get(server, "/.well-known/openid-configuration")
    assert status == 200
    assert headers["content-type"].startswith("application/json")
    document = json.loads(body)
    assert document["issuer"] == "https://auth.example.com"
    assert document["jwks_uri"] == document["issuer"] + "/.well-known/jwks.json"
    async with connect(server) as client:
        assert document == await client.get_open_id_discovery_configuration()


async def test_probes(start: Start) -> None:
    server = await start()
    assert (await http_get(server, "/healthz"))[0] == 200
    assert (await http_get(server, "/readyz"))[0] == 200
    await server.store.close()  # the database is now unreachable
    assert (await http_get(server, "/readyz"))[0] == 503
    assert (await http_get(server, "/healthz"))[0] == 200  # alive, just not ready
    assert (await http_get(server, "/no-such-page"))[0] == 404


async def test_metrics_count_rpcs_sessions_thefts_and_jwks_fetches(
    start: Start, connect: Connect
) -> None:
    server = await start(max_sessions_per_user=3)
    async with connect(server) as client:
        stolen = await client.create_new_session("user-a")
        other = await client.create_new_session("user-b")
        assert stolen.refresh_token is not None
        second = await client.refresh_session(stolen.refresh_token)
        assert second.refresh_token is not None
        third = await client.refresh_session(second.refresh_token)
        with pytest.raises(TokenTheftDetectedError):
            await client.refresh_session(stolen.refresh_token)
        assert await client.revoke_session(other.session_handle) is True
        assert await client.revoke_session("no-such-handle") is False
        with pytest.raises(UnauthorisedError):
            await client.refresh_session("not-a-refresh-token")
        # Revocations by every other cause: sign-out elsewhere, all of a user's, and
        # the per-user cap (3 sessions; the 4th login evicts the oldest).
        kept = [await client.create_new_session("user-c") for _ in range(2)]
        assert len(await client.revoke_other_sessions(kept[0].session_handle)) == 1
        assert len(await client.revoke_all_sessions_for_user("user-c")) == 1
        for _ in range(4):
            await client.create_new_session("user-d")
        await client.get_jwks()
    status, headers, _ = await http_get(server, "/.well-known/jwks.json")
    assert status == 200
    status, headers, body = await http_get(server, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    text = body.decode()
    found = samples(text)

    rpcs = "session_authority_rpcs_total"
    assert sample(found, rpcs, method="CreateNewSession", code="OK") == 8
    assert sample(found, rpcs, method="RefreshSession", code="OK") == 2
    assert sample(found, rpcs, method="RefreshSession", code="PERMISSION_DENIED") == 1
    assert sample(found, rpcs, method="RefreshSession", code="UNAUTHENTICATED") == 1
    assert sample(found, rpcs, method="RevokeSession", code="OK") == 2
    assert sample(found, rpcs, method="GetJwks", code="OK") == 1

    duration = "session_authority_rpc_duration_seconds"
    assert sample(found, f"{duration}_count", method="CreateNewSession", code="OK") == 8
    assert sample(found, f"{duration}_count", method="RefreshSession", code="OK") == 2
    assert sample(found, f"{duration}_bucket", method="CreateNewSession", code="OK", le="+Inf") == 8
    assert sample(found, f"{duration}_sum", method="CreateNewSession", code="OK") > 0

    assert sample(found, "session_authority_sessions_created_total") == 8
    assert sample(found, "session_authority_sessions_refreshed_total") == 2
    revoked = "session_authority_sessions_revoked_total"
    for cause in ("revoke", "theft", "revoke_other", "revoke_all", "cap"):
        assert sample(found, revoked, cause=cause) == 1, cause
    assert sample(found, "session_authority_token_thefts_detected_total") == 1
    assert sample(found, "session_authority_jwks_fetches_total", transport="grpc") == 1
    assert sample(found, "session_authority_jwks_fetches_total", transport="http") == 1

    for session in (stolen, other, second, third):
        assert session.access_token not in text
        assert session.refresh_token is not None and session.refresh_token not in text
        assert session.session_handle not in text
        # Not even a recognisable piece of a token.
        assert session.access_token.split(".")[2][:16] not in text
    assert "user-a" not in text and "user-b" not in text


# --- gRPC health and reflection --------------------------------------------------------


async def poll_serving(target: str, service: str) -> None:
    async with asyncio.timeout(POLL_TIMEOUT_S):
        while True:
            if await health_status(target, service) == health_pb2.HealthCheckResponse.SERVING:
                return
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("api_keys", [(), (KEY_1,)], ids=["no-api-key", "api-key"])
async def test_grpc_health_serving_without_an_api_key(
    start: Start, api_keys: tuple[str, ...]
) -> None:
    server = await start(api_keys=api_keys)
    target = f"127.0.0.1:{server.port}"
    await poll_serving(target, "")
    await poll_serving(target, SERVICE_NAME)
    assert SERVICE_NAME == "session_authority.v1.SessionService"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await health_status(target, "no.such.Service")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_grpc_health_follows_database_readiness(database_url: str) -> None:
    """report_readiness (the task the server runs) turns NOT_SERVING when the
    database stops answering; its sleep is stepped by the test."""
    store = open_store(database_url)
    await store.open()
    servicer = health.aio.HealthServicer()
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    target = f"127.0.0.1:{port}"
    rounds: asyncio.Queue[None] = asyncio.Queue()
    go_on: asyncio.Queue[None] = asyncio.Queue()

    async def stepped_sleep(_: float) -> None:
        rounds.put_nowait(None)
        await go_on.get()

    task = asyncio.create_task(report_readiness(store, servicer, sleep=stepped_sleep))
    try:
        async with asyncio.timeout(POLL_TIMEOUT_S):
            await rounds.get()
        serving = health_pb2.HealthCheckResponse.SERVING
        assert await health_status(target, "") == serving
        assert await health_status(target, SERVICE_NAME) == serving

        await store.close()
        go_on.put_nowait(None)
        async with asyncio.timeout(POLL_TIMEOUT_S):
            await rounds.get()
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        assert await health_status(target, "") == not_serving
        assert await health_status(target, SERVICE_NAME) == not_serving
    finally:
        task.cancel()
        await server.stop(None)
        await store.close()


@pytest.mark.parametrize("api_keys", [(), (KEY_1,)], ids=["no-api-key", "api-key"])
async def test_reflection_lists_and_describes_the_service_without_an_api_key(
    start: Start, api_keys: tuple[str, ...]
) -> None:
    server = await start(api_keys=api_keys)
    target = f"127.0.0.1:{server.port}"

    listed = await reflect(target, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {service.name for service in listed.list_services_response.service}
    assert {SERVICE_NAME, HEALTH_SERVICE, REFLECTION_SERVICE} <= names

    described = await reflect(
        target, reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE_NAME)
    )
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in described.file_descriptor_response.file_descriptor_proto
    ]
    ours = [f for f in files if f.package == "session_authority.v1"]
    assert ours, f"no session_authority.v1 file among {[f.name for f in files]}"
    services = {service.name: service for f in ours for service in f.service}
    assert "SessionService" in services
    methods = {method.name for method in services["SessionService"].method}
    expected = {m.name for m in pb.DESCRIPTOR.services_by_name["SessionService"].methods}
    assert methods == expected
    assert {"CreateNewSession", "RefreshSession", "GetJwks"} <= methods


# --- caller authentication -------------------------------------------------------------


async def test_either_configured_api_key_is_served(start: Start, connect: Connect) -> None:
    server = await start(api_keys=(KEY_1, KEY_2))
    async with connect(server, api_key=KEY_1) as first, connect(server, api_key=KEY_2) as second:
        session = await first.create_new_session("user-1", {"role": "admin"})
        # Local verification fetches the JWKS over gRPC: that needs the key too.
        verified = await second.get_session(session.access_token)
        assert verified is not None and verified.access_token_payload["role"] == "admin"
        checked = await second.get_session(session.access_token, check_database=True)
        assert checked is not None and checked.session_handle == session.session_handle
        assert session.refresh_token is not None
        refreshed = await second.refresh_session(session.refresh_token)
        assert await first.revoke_session(refreshed.session_handle) is True


@pytest.mark.parametrize(
    "api_key",
    [None, "wrong-key-wrong-key-wrong", KEY_1[:-1], KEY_1 + "x", KEY_1.upper()],
    ids=["missing", "wrong", "prefix", "longer", "other-case"],
)
async def test_a_missing_or_wrong_api_key_is_refused(
    start: Start, connect: Connect, api_key: str | None
) -> None:
    server = await start(api_keys=(KEY_1, KEY_2))
    async with connect(server, api_key=api_key) as client:
        with pytest.raises(ApiKeyInvalidError) as caught:
            await client.create_new_session("user-1")
        with pytest.raises(ApiKeyInvalidError):
            await client.get_jwks()
        with pytest.raises(ApiKeyInvalidError):
            await client.revoke_all_sessions_for_user("user-1")
    shown = f"{caught.value} {caught.value.message!r}"
    for secret in (KEY_1, KEY_2, api_key or KEY_1):
        assert secret not in shown
    # Nothing was done on the caller's behalf.
    async with connect(server, api_key=KEY_1) as admin:
        assert await admin.get_all_session_handles_for_user("user-1") == []


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        (("authorization", "Bearer wrong-key-wrong-key-wrong"),),
        (("authorization", f"Basic {KEY_1}"),),
        (("authorization", KEY_1),),
        (("x-api-key", KEY_1),),
    ],
    ids=["missing", "wrong", "basic-scheme", "no-scheme", "other-header"],
)
async def test_refusal_on_the_wire(start: Start, metadata: tuple[tuple[str, str], ...]) -> None:
    server = await start(api_keys=(KEY_1, KEY_2))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.SessionServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateNewSession(
                pb.CreateNewSessionRequest(user_id="user-1"), metadata=metadata, timeout=5
            )
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        info = error_info(caught.value)  # ours: domain session-authority
        assert info is not None and info.reason == "API_KEY_INVALID"
        text = wire_text(caught.value)
        assert KEY_1 not in text and KEY_2 not in text
        assert "wrong-key-wrong-key-wrong" not in text
        # The scheme is case-insensitive; the key is not.
        ok = await stub.CreateNewSession(
            pb.CreateNewSessionRequest(user_id="user-1"),
            metadata=(("authorization", f"bearer {KEY_2}"),),
            timeout=5,
        )
        assert ok.session.user_id == "user-1"
    found = samples(server.metrics.exposition().decode())
    refused = sample(
        found, "session_authority_rpcs_total", method="CreateNewSession", code="UNAUTHENTICATED"
    )
    assert refused == 1
    assert sample(found, "session_authority_sessions_created_total") == 1


async def test_http_side_stays_open_with_api_keys(start: Start, connect: Connect) -> None:
    server = await start(api_keys=(KEY_1,))
    async with connect(server, api_key=KEY_1) as client:
        grpc_jwks = await client.get_jwks()
    status, _, body = await http_get(server, "/.well-known/jwks.json")
    assert status == 200
    assert by_kid(json.loads(body)["keys"]) == by_kid(grpc_jwks["keys"])
    for path in ("/.well-known/openid-configuration", "/healthz", "/readyz", "/metrics"):
        status, _, body = await http_get(server, path)
        assert status == 200, path
        assert KEY_1.encode() not in body, path


@pytest.mark.parametrize(
    "value",
    ["short-key", f"{KEY_1},tiny", f"{KEY_1},with space in it xx", "tab\there-tab-tab-tab"],
    ids=["too-short", "one-too-short", "space", "unprintable"],
)
def test_bad_api_keys_fail_at_load_without_echoing_them(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {"SESSION_AUTHORITY_API_KEYS": value})
    message = str(caught.value)
    assert "SESSION_AUTHORITY_API_KEYS" in message
    for part in value.split(","):
        assert part not in message


def test_api_keys_are_comma_separated_for_rotation() -> None:
    settings = load_settings(None, {"SESSION_AUTHORITY_API_KEYS": f" {KEY_1} , {KEY_2} ,"})
    assert settings.api_keys == (KEY_1, KEY_2)


async def test_without_api_keys_loopback_callers_are_served_with_one_warning(
    start: Start, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    server = await start()
    warnings = [r for r in caplog.records if "SESSION_AUTHORITY_API_KEYS" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "loopback" in warnings[0].getMessage()
    async with connect(server) as client:
        session = await client.create_new_session("user-1")
        assert await client.get_session(session.access_token) is not None


async def test_with_api_keys_there_is_no_missing_key_warning(
    start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    await start(api_keys=(KEY_1,))
    assert not [r for r in caplog.records if "SESSION_AUTHORITY_API_KEYS" in r.getMessage()]


async def test_ipv6_loopback_callers_are_served_without_api_keys(
    start: Start, clock: ManualClock
) -> None:
    """grpc names an IPv6 peer 'ipv6:%5B::1%5D:<port>' (URI-encoded brackets)."""
    try:
        server = await start(listen="[::1]:0")
    except ConfigError:
        pytest.skip("no IPv6 loopback here")
    async with SessionClient(f"[::1]:{server.port}", clock=clock.time) as client:
        session = await client.create_new_session("user-1")
        assert session.user_id == "user-1"


REMOTE_PEER = "ipv4:203.0.113.5:1234"


def test_no_api_key_refuses_remote_callers() -> None:
    authenticator = CallerAuthenticator((), allow_remote_without_api_key=False)
    with pytest.raises(ApiKeyInvalidError):
        authenticator.check(StandInContext(REMOTE_PEER))
    with pytest.raises(ApiKeyInvalidError):
        authenticator.check(StandInContext("ipv6:%5B2001:db8::1%5D:1234"))
    with pytest.raises(ApiKeyInvalidError):  # a key sent anyway does not help
        authenticator.check(StandInContext(REMOTE_PEER, (("authorization", f"Bearer {KEY_1}"),)))
    authenticator.check(StandInContext("ipv4:127.0.0.1:1234"))


def test_remote_callers_without_api_key_when_explicitly_allowed() -> None:
    authenticator = CallerAuthenticator((), allow_remote_without_api_key=True)
    authenticator.check(StandInContext(REMOTE_PEER))
    authenticator.check(StandInContext("ipv6:%5B2001:db8::1%5D:1234"))


def test_allow_remote_setting_is_parsed() -> None:
    environ = {"SESSION_AUTHORITY_ALLOW_REMOTE_WITHOUT_API_KEY": "true"}
    assert load_settings(None, environ).allow_remote_without_api_key is True
    assert load_settings(None, {}).allow_remote_without_api_key is False
    with pytest.raises(ConfigError, match="SESSION_AUTHORITY_ALLOW_REMOTE_WITHOUT_API_KEY"):
        load_settings(None, {"SESSION_AUTHORITY_ALLOW_REMOTE_WITHOUT_API_KEY": "perhaps"})


def test_with_api_keys_every_caller_needs_one_even_on_loopback() -> None:
    authenticator = CallerAuthenticator((KEY_1, KEY_2), allow_remote_without_api_key=False)
    with pytest.raises(ApiKeyInvalidError):
        authenticator.check(StandInContext("ipv4:127.0.0.1:1234"))
    with pytest.raises(ApiKeyInvalidError):
        authenticator.check(StandInContext("unix:"))
    authenticator.check(StandInContext(REMOTE_PEER, (("authorization", f"Bearer {KEY_2}"),)))
    authenticator.check(
        StandInContext(REMOTE_PEER, (("user-agent", "x"), ("authorization", f"Bearer {KEY_1}")))
    )


@pytest.mark.parametrize(
    ("peer", "loopback"),
    [
        ("ipv4:127.0.0.1:5000", True),
        ("ipv4:127.8.9.10:5000", True),
        ("ipv6:[::1]:5000", True),
        ("ipv6:%5B::1%5D:5000", True),  # how grpc actually spells it
        ("ipv6:%5B::ffff:127.0.0.1%5D:5000", True),
        ("unix:/run/session-authority.sock", True),
        ("unix:", True),
        ("ipv4:203.0.113.5:1234", False),
        ("ipv4:128.0.0.1:1234", False),
        ("ipv4:10.127.0.1:1234", False),
        ("ipv6:[2001:db8::1]:1234", False),
        ("ipv6:%5B2001:db8::1%5D:1234", False),
        ("ipv6:%5B::10%5D:1234", False),
        ("", False),
    ],
)
def test_is_loopback(peer: str, loopback: bool) -> None:
    assert is_loopback(peer) is loopback


# --- keys at rest ----------------------------------------------------------------------


async def test_keys_are_sealed_at_rest_and_restart_needs_the_master_key(
    start: Start, connect: Connect, database_url: str
) -> None:
    master_key = new_master_key()
    server = await start(master_key=master_key)
    async with connect(server) as client:
        session = await client.create_new_session("user-1", {"n": 1}, {"d": 1})
        assert await client.get_session(session.access_token) is not None
        await client.create_jwt({"sub": "x"})  # the static key is in use too
        jwks = await client.get_jwks()
    await server.stop(None)

    database = database_path(database_url)
    rows = key_rows(database)
    for table in KEY_TABLES:
        assert rows[table], f"{table} is empty"
        for name, value in rows[table]:
            assert bytes(value).startswith(SEALED_PREFIX), f"{table} {name} is not sealed"
            assert b"PRIVATE KEY" not in bytes(value)
    assert b"PRIVATE KEY" not in database.read_bytes()

    # (a) No master key: refused, naming the setting; nothing changed.
    with pytest.raises(ConfigError, match="SESSION_AUTHORITY_MASTER_KEY") as caught:
        await start()
    assert master_key not in str(caught.value)
    assert key_rows(database) == rows

    # (b) Another master key: refused; nothing changed.
    other_key = new_master_key()
    with pytest.raises(ConfigError, match="SESSION_AUTHORITY_MASTER_KEY") as caught:
        await start(master_key=other_key)
    assert master_key not in str(caught.value) and other_key not in str(caught.value)
    assert key_rows(database) == rows

    # (c) The right key: the same keys, old tokens verify, refresh works.
    server = await start(master_key=master_key)
    async with connect(server) as client:
        assert await client.get_jwks() == jwks
        verified = await client.get_session(session.access_token, check_database=True)
        assert verified is not None and verified.access_token_payload["n"] == 1
        assert await client.get_session(session.access_token) is not None
        assert session.refresh_token is not None
        refreshed = await client.refresh_session(session.refresh_token)
        assert await client.get_session(refreshed.access_token) is not None
        info = await client.get_session_information(session.session_handle)
        assert info is not None and info.session_data_in_database == {"d": 1}
    assert key_rows(database) == rows


@pytest.mark.parametrize("given", ["missing", "wrong"])
async def test_a_refused_restart_after_a_long_downtime_changes_nothing(
    start: Start, connect: Connect, database_url: str, clock: ManualClock, given: str
) -> None:
    """The authority was down longer than a rotation, so a new signing key is due
    at the next start. A start refused for a missing or wrong master key must not
    store one (in the clear, or sealed under the wrong key), and the right key
    must still start it afterwards."""
    rotation_s = 3600
    master_key = new_master_key()
    server = await start(master_key=master_key, signing_key_rotation=rotation_s)
    async with connect(server) as client:
        session = await client.create_new_session("user-1")
    await server.stop(None)
    database = database_path(database_url)
    rows = key_rows(database)

    clock.advance(2 * rotation_s)
    refused = {"missing": {}, "wrong": {"master_key": new_master_key()}}[given]
    with pytest.raises(ConfigError, match="SESSION_AUTHORITY_MASTER_KEY"):
        await start(signing_key_rotation=rotation_s, **refused)
    after = key_rows(database)
    for _, value in after["signing_keys"]:
        assert b"PRIVATE KEY" not in bytes(value), "a private key was stored in the clear"
    assert after == rows

    server = await start(master_key=master_key, signing_key_rotation=rotation_s)
    async with connect(server) as client:
        assert session.refresh_token is not None
        refreshed = await client.refresh_session(session.refresh_token)
        assert await client.get_session(refreshed.access_token) is not None


async def test_master_key_from_a_file_and_in_hex(
    start: Start, connect: Connect, database_url: str, tmp_path: Path
) -> None:
    raw = os.urandom(32)
    key_file = tmp_path / "master.key"
    key_file.write_text(base64.b64encode(raw).decode() + "\n")
    server = await start(master_key_file=str(key_file))
    async with connect(server) as client:
        session = await client.create_new_session("user-1")
    await server.stop(None)
    database = database_path(database_url)
    rows = key_rows(database)
    for table in KEY_TABLES:
        for _, value in rows[table]:
            assert bytes(value).startswith(SEALED_PREFIX)

    with pytest.raises(ConfigError, match="SESSION_AUTHORITY_MASTER_KEY"):
        await start()
    assert key_rows(database) == rows

    # The same 32 bytes given directly, as hex, open them too.
    server = await start(master_key=raw.hex())
    async with connect(server) as client:
        assert await client.get_session(session.access_token, check_database=True) is not None
    await server.stop(None)

    server = await start(master_key_file=str(key_file))
    async with connect(server) as client:
        assert session.refresh_token is not None
        refreshed = await client.refresh_session(session.refresh_token)
        assert await client.get_session(refreshed.access_token) is not None
    assert key_rows(database) == rows


async def test_keys_stored_in_the_clear_stay_readable_under_a_master_key(
    start: Start, connect: Connect, database_url: str
) -> None:
    server = await start()
    async with connect(server) as client:
        session = await client.create_new_session("user-1")
    await server.stop(None)
    database = database_path(database_url)
    rows = key_rows(database)
    assert any(b"PRIVATE KEY" in bytes(value) for _, value in rows["signing_keys"])

    server = await start(master_key=new_master_key())
    async with connect(server) as client:
        assert await client.get_session(session.access_token, check_database=True) is not None
        assert session.refresh_token is not None
        await client.refresh_session(session.refresh_token)
    assert key_rows(database) == rows  # never rewritten


@pytest.mark.parametrize(
    "value",
    ["not-a-master-key", base64.b64encode(b"x" * 16).decode(), "ab" * 31, "zz" * 32],
    ids=["garbage", "16-bytes", "31-bytes-hex", "not-hex"],
)
def test_bad_master_key_format_fails_at_load(value: str) -> None:
    with pytest.raises(ConfigError, match="SESSION_AUTHORITY_MASTER_KEY") as caught:
        load_settings(None, {"SESSION_AUTHORITY_MASTER_KEY": value})
    assert value not in str(caught.value)


async def test_bad_master_key_format_refuses_to_start(
    start: Start, database_url: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="SESSION_AUTHORITY_MASTER_KEY") as caught:
        await start(master_key="not-a-master-key")
    assert "not-a-master-key" not in str(caught.value)
    key_file = tmp_path / "master.key"
    key_file.write_text("not-a-master-key-either\n")
    with pytest.raises(ConfigError, match="SESSION_AUTHORITY_MASTER_KEY_FILE") as caught:
        await start(master_key_file=str(key_file))
    assert "not-a-master-key-either" not in str(caught.value)
    # Neither start left a key behind.
    database = database_path(database_url)
    if database.exists():
        assert key_rows(database) == {table: [] for table in KEY_TABLES}


def test_master_key_and_key_file_are_exclusive(tmp_path: Path) -> None:
    key_file = tmp_path / "master.key"
    key_file.write_text(new_master_key())
    with pytest.raises(ConfigError, match="SESSION_AUTHORITY_MASTER_KEY"):
        load_settings(None, {}, master_key=new_master_key(), master_key_file=str(key_file))
    with pytest.raises(ConfigError, match="SESSION_AUTHORITY_MASTER_KEY_FILE"):
        load_settings(None, {}, master_key_file=str(tmp_path / "missing.key"))


async def test_process_refuses_a_bad_master_key_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_AUTHORITY_")}
    env.update(
        SESSION_AUTHORITY_DATABASE_URL=f"sqlite:///{tmp_path}/sessions.db",
        SESSION_AUTHORITY_LISTEN="127.0.0.1:0",
        SESSION_AUTHORITY_HTTP_LISTEN="127.0.0.1:0",
        SESSION_AUTHORITY_MASTER_KEY="not-a-master-key",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "session_authority_server",
        "serve",
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        _, stderr = await process.communicate()
    assert process.returncode == 2
    lines = [line for line in stderr.decode().splitlines() if "configuration error" in line]
    assert len(lines) == 1, stderr.decode()
    assert "SESSION_AUTHORITY_MASTER_KEY" in lines[0]
    assert "not-a-master-key" not in stderr.decode()


# --- undecodable requests -----------------------------------------------------------


CREATE_METHOD = "/session_authority.v1.SessionService/CreateNewSession"


@pytest.mark.parametrize(
    ("method", "raw"),
    [
        (CREATE_METHOD, b"\x0a\x02\xff\xfe"),  # user_id
        # access_token_payload {fields {key: "k", value {string_value: b"\xff"}}}
        (CREATE_METHOD, b"\x0a\x01u\x12\x0a\x0a\x08\x0a\x01k\x12\x03\x1a\x01\xff"),
        ("/session_authority.v1.SessionService/GetSession", b"\x0a\x02\xc3\x28"),
        ("/session_authority.v1.SessionService/RefreshSession", b"\x0a\x01\x80"),
        ("/session_authority.v1.SessionService/RevokeSession", b"\x0a\x03\xed\xa0\x80"),
    ],
    ids=["user_id", "payload", "access_token", "refresh_token", "surrogate-handle"],
)
async def test_invalid_utf8_is_invalid_argument_not_internal(
    start: Start, connect: Connect, method: str, raw: bytes
) -> None:
    server = await start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = channel.unary_unary(
            method, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(raw, timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    error = error_from_rpc_error(caught.value)
    assert isinstance(error, InvalidArgumentError) and error.field == "request"
    async with connect(server) as client:  # and it still serves
        session = await client.create_new_session("user-1")
        assert await client.get_session(session.access_token, check_database=True) is not None
    found = samples(server.metrics.exposition().decode())
    name = method.rsplit("/", 1)[1]
    rpcs = "session_authority_rpcs_total"
    assert sample(found, rpcs, method=name, code="INVALID_ARGUMENT") == 1
    assert sample(found, rpcs, method=name, code="INTERNAL") == 0


async def test_undecodable_request_without_the_api_key_is_refused_first(start: Start) -> None:
    server = await start(api_keys=(KEY_1,))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = channel.unary_unary(
            CREATE_METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(b"\x0a\x02\xff\xfe", timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert isinstance(error_from_rpc_error(caught.value), ApiKeyInvalidError)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(
                b"\x0a\x02\xff\xfe", timeout=5, metadata=(("authorization", f"Bearer {KEY_1}"),)
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
