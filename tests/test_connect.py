"""SessionService on the HTTP listener (issue, section 2): every RPC over Connect
(JSON and binary, unary and the WatchRevocations stream) and gRPC-Web, against a
real server over real HTTP, called by connectrpc's own client (an
implementation nobody here wrote) and by raw HTTP (aiohttp, and curl for the
README's example); the same errors, API keys, loopback rule, limits, TLS and
metrics as gRPC."""

from __future__ import annotations

import asyncio
import io
import json
import re
import shutil
import subprocess
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import jwt as pyjwt
import pytest
from connectrpc.client import ConnectClient
from connectrpc.code import Code
from connectrpc.compat import google_protobuf_binary_codec, google_protobuf_json_codec
from connectrpc.errors import ConnectError
from connectrpc.method import IdempotencyLevel, MethodInfo, StreamType
from connectrpc.protocol import ProtocolType
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from prometheus_client.parser import text_string_to_metric_families
from pyqwest import Client as HttpClient
from pyqwest import HTTPTransport
from session_authority.errors import (
    ERROR_DOMAIN,
    ApiKeyInvalidError,
    InvalidArgumentError,
    InvalidClaimsError,
    SessionError,
    StorageUnavailableError,
    TokenTheftDetectedError,
    TryRefreshTokenError,
    UnauthorisedError,
    error_from_wire,
)
from session_authority.structs import struct_to_wire, value_from_wire, value_to_wire
from session_authority.v1 import session_service_pb2 as pb
from session_authority.wire import failures_from_wire
from session_authority_server.app import RunningServer
from session_authority_server.auth import CallerAuthenticator
from session_authority_server.connect import (
    DECODE_OFF_LOOP_BYTES,
    SERVICE_PATH,
    ConnectCall,
    JsonCodec,
    connect_application,
    grpc_peer,
)
from session_authority_server.http import HttpApp
from session_authority_server.rpc_gate import RpcGate
from session_authority_server.service import SessionServicer

from .conftest import ManualClock
from .test_tls import Pki, pki, tls_settings

__all__ = ["pki"]  # the fixture, from test_tls.py

Start = Callable[..., Awaitable[RunningServer]]

SERVICE = pb.DESCRIPTOR.services_by_name["SessionService"]
UNARY = sorted(m.name for m in SERVICE.methods if not m.server_streaming)
API_KEY = "connect-test-api-key-0123456789"
README = Path(__file__).resolve().parent.parent / "README.md"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
STREAM_TIMEOUT_S = 10.0
CODECS = {"json": google_protobuf_json_codec, "proto": google_protobuf_binary_codec}


def method(name: str) -> MethodInfo[Any, Any]:
    """What a Connect client needs to know of a method, from the proto's descriptor
    (the test's own: connectrpc's generated stubs would say the same)."""
    descriptor = SERVICE.methods_by_name[name]
    return MethodInfo(
        name=name,
        service_name=SERVICE.full_name,
        input=getattr(pb, descriptor.input_type.name),
        output=getattr(pb, descriptor.output_type.name),
        idempotency_level=IdempotencyLevel.UNKNOWN,
        stream_type=(StreamType.SERVER_STREAM if descriptor.server_streaming else StreamType.UNARY),
    )


class Caller:
    """connectrpc's client for one server, protocol and codec."""

    def __init__(
        self,
        server: RunningServer,
        *,
        codec: str = "json",
        protocol: ProtocolType = ProtocolType.CONNECT,
        api_key: str | None = None,
        scheme: str = "http",
        http_client: HttpClient | None = None,
    ) -> None:
        self.client = ConnectClient(
            f"{scheme}://127.0.0.1:{server.http_port}",
            codec=CODECS[codec](),
            protocol=protocol,
            timeout_ms=10_000,
            http_client=http_client,
        )
        self.headers = {"authorization": f"Bearer {api_key}"} if api_key else None

    async def __call__(self, name: str, request: Any) -> Any:
        return await self.client.execute_unary(
            request=request, method=method(name), headers=self.headers
        )

    def stream(self, name: str, request: Any) -> AsyncIterator[Any]:
        return self.client.execute_server_stream(
            request=request, method=method(name), headers=self.headers
        )


def session_error(error: ConnectError) -> SessionError:
    """The SessionError a Connect error carries, from its details alone (as
    wire.error_from_rpc_error does for gRPC): ErrorInfo by the error table, and
    the InvalidClaims detail."""
    details = {detail.type_name: detail.message_bytes for detail in error.details}
    info = error_details_pb2.ErrorInfo.FromString(details["google.rpc.ErrorInfo"])
    assert info.domain == ERROR_DOMAIN
    if info.reason == InvalidClaimsError.reason:
        claims = pb.InvalidClaims.FromString(details["session_authority.v1.InvalidClaims"])
        return InvalidClaimsError(
            error.message, invalid_claims=failures_from_wire(claims.invalid_claims)
        )
    return error_from_wire(info.reason, error.message, dict(info.metadata))


def claims_of(jwt: str) -> dict[str, Any]:
    payload: dict[str, Any] = pyjwt.decode(jwt, options={"verify_signature": False})
    return payload


def kid_of(jwt: str) -> str:
    return str(pyjwt.get_unverified_header(jwt)["kid"])


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    return struct_to_wire(value, "test")


async def http_post(
    server: RunningServer,
    name: str,
    body: bytes,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    url = f"http://127.0.0.1:{server.http_port}{SERVICE_PATH}/{name}"
    sent = {"content-type": content_type, **(headers or {})}
    async with (
        aiohttp.ClientSession() as http,
        # (aiohttp wants a large body as a stream, not bytes)
        http.post(url, data=io.BytesIO(body), headers=sent) as response,
    ):
        received = {key.lower(): value for key, value in response.headers.items()}
        return response.status, received, await response.read()


def samples(server: RunningServer) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(server.metrics.exposition().decode()):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def sample(server: RunningServer, name: str, **labels: str) -> float:
    return samples(server).get((name, frozenset(labels.items())), 0.0)


# --- (a) every unary RPC, Connect JSON and binary -------------------------------------------


@pytest.mark.parametrize("codec", ["json", "proto"])
async def test_every_unary_rpc_over_connect(start: Start, codec: str) -> None:
    server = await start()
    call = Caller(server, codec=codec)
    called: set[str] = set()

    async def rpc(name: str, request: Any) -> Any:
        called.add(name)
        return await call(name, request)

    # The five with full checks.
    created = await rpc(
        "CreateNewSession",
        pb.CreateNewSessionRequest(
            user_id="user-1",
            access_token_payload=struct({"role": "admin", "n": 3}),
            session_data_in_database=struct({"cart": ["tea"]}),
            client_metadata=pb.ClientMetadata(ip="192.0.2.7", user_agent="curl/8", device="cli"),
        ),
    )
    assert isinstance(created, pb.CreateNewSessionResponse)
    assert created.session.user_id == "user-1"
    assert created.session.tenant_id == "public"
    assert created.session.access_token_payload["role"] == "admin"
    claims = claims_of(created.access_token.token)
    assert claims["sub"] == "user-1" and claims["role"] == "admin" and claims["n"] == 3
    assert claims["iss"] == server.issuer
    assert created.access_token.create_time.ToMilliseconds() == ManualClock().ms
    assert created.access_token.expire_time.ToSeconds() == claims["exp"]
    assert created.refresh_token.token and not created.HasField("anti_csrf_token")
    handle = created.session.session_handle

    verified = await rpc(
        "GetSession", pb.GetSessionRequest(access_token=created.access_token.token)
    )
    assert verified.session.session_handle == handle
    assert verified.session.user_id == "user-1"
    assert verified.session.access_token_payload["n"] == 3
    checked = await rpc(
        "GetSession",
        pb.GetSessionRequest(access_token=created.access_token.token, check_database=True),
    )
    assert checked.session.session_handle == handle

    refreshed = await rpc(
        "RefreshSession", pb.RefreshSessionRequest(refresh_token=created.refresh_token.token)
    )
    assert refreshed.session.session_handle == handle
    assert refreshed.refresh_token.token != created.refresh_token.token
    assert refreshed.access_token.token != created.access_token.token
    assert refreshed.session.access_token_payload["role"] == "admin"
    again = await rpc(  # within the grace period: the same successor
        "RefreshSession", pb.RefreshSessionRequest(refresh_token=created.refresh_token.token)
    )
    assert again.refresh_token.token == refreshed.refresh_token.token

    jwks = await rpc("GetJwks", pb.GetJwksRequest())
    assert jwks.keys and jwks.max_age.seconds > 0
    kid = kid_of(created.access_token.token)
    assert kid in {key.kid for key in jwks.keys}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{server.http_port}/.well-known/jwks.json") as response,
    ):
        over_http = json.loads(await response.read())
    assert {key.kid for key in jwks.keys} == {key["kid"] for key in over_http["keys"]}

    # The rest, once each.
    info = await rpc(
        "GetSessionInformation", pb.GetSessionInformationRequest(session_handle=handle)
    )
    assert info.session_information.session_data_in_database["cart"][0] == "tea"
    assert info.session_information.user_id == "user-1"
    updated = await rpc(
        "UpdateSessionDataInDatabase",
        pb.UpdateSessionDataInDatabaseRequest(
            session_handle=handle, new_session_data=struct({"cart": []})
        ),
    )
    assert updated.updated is True
    merged = await rpc(
        "MergeIntoAccessTokenPayload",
        pb.MergeIntoAccessTokenPayloadRequest(
            session_handle=handle, access_token_payload_update=struct({"plan": "pro"})
        ),
    )
    assert merged.updated is True
    regenerated = await rpc(
        "RegenerateAccessToken",
        pb.RegenerateAccessTokenRequest(access_token=refreshed.access_token.token),
    )
    assert regenerated.session_exists is True
    assert regenerated.session.access_token_payload["plan"] == "pro"
    set_claim = await rpc(
        "SetClaimValue",
        pb.SetClaimValueRequest(
            session_handle=handle, claim_key="st-role", value=value_to_wire(["admin"], "v")
        ),
    )
    assert set_claim.updated is True
    got = await rpc(
        "GetClaimValue", pb.GetClaimValueRequest(session_handle=handle, claim_key="st-role")
    )
    assert got.session_exists is True and value_from_wire(got.value, "v") == ["admin"]
    removed = await rpc(
        "RemoveClaim", pb.RemoveClaimRequest(session_handle=handle, claim_key="st-role")
    )
    assert removed.updated is True
    includes_owner = pb.ClaimValidator(
        claim_key="st-role",
        kind=pb.CLAIM_VALIDATOR_KIND_INCLUDES,
        value=value_to_wire("owner", "v"),
    )
    validated = await rpc(
        "ValidateClaims",
        pb.ValidateClaimsRequest(
            access_token_payload=struct({"st-role": {"v": ["admin"], "t": 1}}),
            claim_validators=[includes_owner],
        ),
    )
    assert [failure.id for failure in validated.invalid_claims] == ["st-role"]
    in_jwt = await rpc(
        "ValidateClaimsInJwtPayload",
        pb.ValidateClaimsInJwtPayloadRequest(
            jwt_payload=struct({"st-role": {"v": ["owner"], "t": 1}}),
            claim_validators=[includes_owner],
        ),
    )
    assert list(in_jwt.invalid_claims) == []
    validators = await rpc("GetGlobalClaimValidators", pb.GetGlobalClaimValidatorsRequest())
    assert list(validators.claim_validators) == []
    jwt = await rpc("CreateJwt", pb.CreateJwtRequest(payload=struct({"aud": "billing"})))
    assert claims_of(jwt.jwt)["aud"] == "billing"
    discovery = await rpc(
        "GetOpenIdDiscoveryConfiguration", pb.GetOpenIdDiscoveryConfigurationRequest()
    )
    assert discovery.issuer == server.issuer
    assert discovery.jwks_uri == f"{server.issuer}/.well-known/jwks.json"
    others = [
        (
            await rpc("CreateNewSession", pb.CreateNewSessionRequest(user_id="user-1"))
        ).session.session_handle
        for _ in range(3)
    ]
    handles = await rpc(
        "GetAllSessionHandlesForUser", pb.GetAllSessionHandlesForUserRequest(user_id="user-1")
    )
    assert set(handles.session_handles) == {handle, *others}
    listed = await rpc("ListSessions", pb.ListSessionsRequest(user_id="user-1", page_size=2))
    assert len(listed.sessions) == 2 and listed.next_page_token and listed.total_size == 4
    assert listed.sessions[0].create_time.ToMilliseconds() == ManualClock().ms
    assert await rpc("RevokeSession", pb.RevokeSessionRequest(session_handle=others[0])) == (
        pb.RevokeSessionResponse(revoked=True)
    )
    assert (
        await rpc("RevokeSession", pb.RevokeSessionRequest(session_handle=others[0]))
    ).revoked is False
    multiple = await rpc(
        "RevokeMultipleSessions", pb.RevokeMultipleSessionsRequest(session_handles=[others[1]])
    )
    assert list(multiple.revoked_session_handles) == [others[1]]
    other = await rpc("RevokeOtherSessions", pb.RevokeOtherSessionsRequest(session_handle=handle))
    assert list(other.revoked_session_handles) == [others[2]]
    everything = await rpc(
        "RevokeAllSessionsForUser", pb.RevokeAllSessionsForUserRequest(user_id="user-1")
    )
    assert list(everything.revoked_session_handles) == [handle]
    with pytest.raises(ConnectError) as caught:  # revoked: the database says so
        await rpc(
            "GetSession",
            pb.GetSessionRequest(access_token=created.access_token.token, check_database=True),
        )
    assert caught.value.code == Code.UNAUTHENTICATED
    assert isinstance(session_error(caught.value), UnauthorisedError)

    assert called == set(UNARY), set(UNARY) - called
    transport = "session_authority_rpcs_by_transport_total"
    assert sample(server, transport, method="CreateNewSession", transport="connect") == 4
    assert sample(server, transport, method="CreateNewSession", transport="grpc") == 0
    assert sample(server, "session_authority_rpcs_total", method="GetSession", code="OK") == 2
    assert (
        sample(server, "session_authority_rpcs_total", method="GetSession", code="UNAUTHENTICATED")
        == 1
    )
    jwks_fetches = "session_authority_jwks_fetches_total"
    assert sample(server, jwks_fetches, transport="connect") == 1


# --- (b), (c) WatchRevocations over Connect and gRPC-Web, and gRPC-Web unary ------------------


async def watch_sees_a_revocation(call: Caller) -> None:
    created = await call("CreateNewSession", pb.CreateNewSessionRequest(user_id="user-1"))
    handle = created.session.session_handle
    stream = call.stream("WatchRevocations", pb.WatchRevocationsRequest(after_cursor=0))
    async with asyncio.timeout(STREAM_TIMEOUT_S):
        first = await anext(aiter(stream))  # connected: the (empty) backlog
        assert isinstance(first, pb.WatchRevocationsResponse)
        assert list(first.revocations) == []
        revoked = await call("RevokeSession", pb.RevokeSessionRequest(session_handle=handle))
        assert revoked.revoked is True
        async for batch in stream:
            if batch.revocations:
                break
    [revocation] = batch.revocations
    assert revocation.session_handle == handle and revocation.user_id == "user-1"
    assert batch.cursor == revocation.cursor > first.cursor
    assert revocation.revoke_time.ToMilliseconds() == ManualClock().ms
    assert (
        revocation.access_tokens_expire_time.ToSeconds()
        >= created.access_token.expire_time.ToSeconds()
    )
    await stream.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize("codec", ["json", "proto"])
async def test_watch_revocations_over_a_connect_stream(start: Start, codec: str) -> None:
    server = await start()
    await watch_sees_a_revocation(Caller(server, codec=codec))
    assert (
        sample(
            server,
            "session_authority_rpcs_by_transport_total",
            method="WatchRevocations",
            transport="connect",
        )
        == 1
    )


async def test_grpc_web_unary_and_stream(start: Start) -> None:
    server = await start()
    call = Caller(server, codec="proto", protocol=ProtocolType.GRPC_WEB)
    created = await call(
        "CreateNewSession",
        pb.CreateNewSessionRequest(user_id="user-9", access_token_payload=struct({"a": 1})),
    )
    verified = await call(
        "GetSession", pb.GetSessionRequest(access_token=created.access_token.token)
    )
    assert verified.session.session_handle == created.session.session_handle
    assert verified.session.access_token_payload["a"] == 1
    await watch_sees_a_revocation(call)
    with pytest.raises(ConnectError) as caught:
        await call("GetSession", pb.GetSessionRequest(access_token="not-a-token"))
    assert caught.value.code == Code.UNAUTHENTICATED
    assert isinstance(session_error(caught.value), UnauthorisedError)
    transport = "session_authority_rpcs_by_transport_total"
    assert sample(server, transport, method="GetSession", transport="grpc-web") == 2
    assert sample(server, transport, method="WatchRevocations", transport="grpc-web") == 1


@pytest.mark.parametrize("protocol", [ProtocolType.CONNECT, ProtocolType.GRPC_WEB])
async def test_the_stream_ends_unavailable_when_storage_goes_away(
    start: Start, protocol: ProtocolType
) -> None:
    server = await start()
    call = Caller(server, codec="proto", protocol=protocol)
    stream = call.stream("WatchRevocations", pb.WatchRevocationsRequest())
    with pytest.raises(ConnectError) as caught:
        async with asyncio.timeout(STREAM_TIMEOUT_S):
            await anext(aiter(stream))  # connected
            await server.store.close()
            await server.authority.revocations.notify()  # the watcher reads the log now
            async for _ in stream:  # a heartbeat at most, then the failure
                pass
    assert caught.value.code == Code.UNAVAILABLE
    error = session_error(caught.value)
    assert isinstance(error, StorageUnavailableError)
    retry = {d.type_name: d.message_bytes for d in caught.value.details}["google.rpc.RetryInfo"]
    assert error_details_pb2.RetryInfo.FromString(retry).retry_delay.seconds >= 1
    assert (
        sample(
            server, "session_authority_rpcs_total", method="WatchRevocations", code="UNAVAILABLE"
        )
        == 1
    )


# --- (d) errors: the Connect code, and gRPC's details ----------------------------------------


@pytest.mark.parametrize("codec", ["json", "proto"])
async def test_errors_carry_the_connect_code_and_the_same_details(
    start: Start, clock: ManualClock, codec: str
) -> None:
    server = await start(refresh_grace_period=0)
    call = Caller(server, codec=codec)

    async def failure(name: str, request: Any) -> tuple[Code, SessionError]:
        with pytest.raises(ConnectError) as caught:
            await call(name, request)
        return caught.value.code, session_error(caught.value)

    created = await call("CreateNewSession", pb.CreateNewSessionRequest(user_id="user-1"))
    clock.advance(3600 + 1)  # the access token has expired
    code, error = await failure(
        "GetSession", pb.GetSessionRequest(access_token=created.access_token.token)
    )
    assert code == Code.UNAUTHENTICATED and isinstance(error, TryRefreshTokenError)

    refreshed = await call(
        "RefreshSession", pb.RefreshSessionRequest(refresh_token=created.refresh_token.token)
    )
    await call(
        "RefreshSession", pb.RefreshSessionRequest(refresh_token=refreshed.refresh_token.token)
    )
    code, error = await failure(  # an ancestor: theft
        "RefreshSession", pb.RefreshSessionRequest(refresh_token=created.refresh_token.token)
    )
    assert code == Code.PERMISSION_DENIED and isinstance(error, TokenTheftDetectedError)
    assert error.session_handle == created.session.session_handle and error.user_id == "user-1"

    code, error = await failure(
        "CreateNewSession",
        pb.CreateNewSessionRequest(user_id="user-1", access_token_payload=struct({"sub": "x"})),
    )
    assert code == Code.INVALID_ARGUMENT and isinstance(error, InvalidArgumentError)
    assert error.field == "access_token_payload"
    with pytest.raises(ConnectError) as caught:
        await call(
            "CreateNewSession",
            pb.CreateNewSessionRequest(user_id="user-1", access_token_payload=struct({"sub": "x"})),
        )
    details = {d.type_name: d.message_bytes for d in caught.value.details}
    bad_request = error_details_pb2.BadRequest.FromString(details["google.rpc.BadRequest"])
    [violation] = bad_request.field_violations
    assert violation.field == "access_token_payload"
    assert violation.description == caught.value.message

    fresh = await call(
        "CreateNewSession",
        pb.CreateNewSessionRequest(
            user_id="user-2", access_token_payload=struct({"st-role": {"v": ["admin"], "t": 1}})
        ),
    )
    owners_only = pb.ClaimValidatorList(
        validators=[
            pb.ClaimValidator(
                id="owners",
                claim_key="st-role",
                kind=pb.CLAIM_VALIDATOR_KIND_INCLUDES,
                value=value_to_wire("owner", "v"),
            )
        ]
    )
    code, error = await failure(
        "GetSession",
        pb.GetSessionRequest(
            access_token=fresh.access_token.token, override_global_claim_validators=owners_only
        ),
    )
    assert code == Code.PERMISSION_DENIED and isinstance(error, InvalidClaimsError)
    [claim] = error.invalid_claims
    assert claim.id == "owners"
    assert claim.reason["message"] == "wrong value"
    assert claim.reason["expectedToInclude"] == "owner"
    assert claim.reason["actualValue"] == ["admin"]


async def test_errors_over_plain_json_have_the_http_status_and_readable_details(
    start: Start,
) -> None:
    server = await start()
    status, headers, body = await http_post(
        server, "GetSession", json.dumps({"accessToken": "not-a-token"}).encode()
    )
    assert status == 401 and headers["content-type"] == "application/json"
    error = json.loads(body)
    assert error["code"] == "unauthenticated"
    [info] = error["details"]
    assert info["type"] == "google.rpc.ErrorInfo"
    assert info["debug"] == {
        "reason": "UNAUTHORISED",
        "domain": ERROR_DOMAIN,
        "metadata": {"clearTokens": "false"},
    }
    decoded = error_details_pb2.ErrorInfo.FromString(
        __import__("base64").b64decode(info["value"] + "==")
    )
    assert decoded.reason == "UNAUTHORISED"

    # Not proto JSON for the message: refused by the gate (after authentication),
    # naming the field, without echoing the value (which may be a token).
    status, _, body = await http_post(
        server, "GetSession", b'{"accessToken": 42, "checkDatabase": "secret-value"}'
    )
    error = json.loads(body)
    assert status == 400 and error["code"] == "invalid_argument"
    assert "secret-value" not in body.decode()
    bad_request = next(d for d in error["details"] if d["type"] == "google.rpc.BadRequest")
    assert bad_request["debug"]["fieldViolations"][0]["field"] in ("accessToken", "checkDatabase")
    status, _, body = await http_post(server, "GetSession", b"{not json")
    assert status == 400 and json.loads(body)["code"] == "invalid_argument"
    status, _, body = await http_post(
        server, "GetSession", b"\x0a\x02\xff\xfe", content_type="application/proto"
    )
    assert status == 400 and json.loads(body)["code"] == "invalid_argument"
    rpcs = "session_authority_rpcs_total"
    assert sample(server, rpcs, method="GetSession", code="INVALID_ARGUMENT") == 3


async def test_limits_and_what_is_not_connect(start: Start) -> None:
    server = await start()
    # Larger than gRPC's 4 MiB message limit.
    big = json.dumps({"userId": "u", "accessTokenPayload": {"x": "y" * (4 * 1024 * 1024)}})
    status, _, body = await http_post(server, "CreateNewSession", big.encode())
    assert status == 429 and json.loads(body)["code"] == "resource_exhausted"
    # Native gRPC belongs on the gRPC port.
    status, _, _ = await http_post(server, "GetSession", b"", content_type="application/grpc")
    assert status == 415
    status, _, _ = await http_post(server, "NoSuchMethod", b"{}")
    assert status == 404
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{server.http_port}{SERVICE_PATH}/GetSession") as response,
    ):
        assert response.status == 405  # Connect's GET is for side-effect-free RPCs only
    # The operations pages are where they were.
    for path in ("/healthz", "/readyz", "/metrics", "/.well-known/openid-configuration"):
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{server.http_port}{path}") as response,
        ):
            assert response.status == 200, path


# --- (e) API keys and the loopback rule ------------------------------------------------------


@pytest.mark.parametrize("protocol", [ProtocolType.CONNECT, ProtocolType.GRPC_WEB])
async def test_the_api_key_is_required_when_configured(
    start: Start, protocol: ProtocolType
) -> None:
    server = await start(api_keys=(API_KEY,))
    request = pb.CreateNewSessionRequest(user_id="user-1")
    for key in (None, "wrong-key-0123456789abcdef"):
        with pytest.raises(ConnectError) as caught:
            await Caller(server, protocol=protocol, codec="proto", api_key=key)(
                "CreateNewSession", request
            )
        assert caught.value.code == Code.UNAUTHENTICATED
        assert isinstance(session_error(caught.value), ApiKeyInvalidError)
    created = await Caller(server, protocol=protocol, codec="proto", api_key=API_KEY)(
        "CreateNewSession", request
    )
    assert created.session.user_id == "user-1"
    # An undecodable request without the key is refused for the key first.
    status, _, body = await http_post(server, "GetSession", b"{not json")
    assert status == 401
    assert json.loads(body)["details"][0]["debug"]["reason"] == "API_KEY_INVALID"
    rpcs = "session_authority_rpcs_total"
    assert sample(server, rpcs, method="CreateNewSession", code="UNAUTHENTICATED") == 2


async def test_a_large_json_body_is_parsed_after_authentication_off_the_loop(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await start(api_keys=(API_KEY,))
    parsed_in: list[str] = []
    parse = JsonCodec._parse

    def recording(body: bytes, message_class: Any) -> Any:
        parsed_in.append(threading.current_thread().name)
        return parse(body, message_class)

    monkeypatch.setattr(JsonCodec, "_parse", staticmethod(recording))
    handles = [f"{i:036d}" for i in range(500)]  # about 20 KiB of JSON
    body = json.dumps({"sessionHandles": handles}).encode()
    assert len(body) > DECODE_OFF_LOOP_BYTES
    status, _, _ = await http_post(server, "RevokeMultipleSessions", body)
    assert status == 401 and parsed_in == []  # refused before any parsing
    key = {"authorization": f"Bearer {API_KEY}"}
    status, _, answer = await http_post(server, "RevokeMultipleSessions", body, headers=key)
    assert status == 200 and json.loads(answer) == {"revokedSessionHandles": []}
    assert len(parsed_in) == 1 and parsed_in[0] != threading.main_thread().name
    bad = json.dumps({"sessionHandles": [*handles, 7]}).encode()
    status, _, answer = await http_post(server, "RevokeMultipleSessions", bad, headers=key)
    assert status == 400 and json.loads(answer)["code"] == "invalid_argument"
    small = json.dumps({"sessionHandles": handles[:1]}).encode()
    status, _, _ = await http_post(server, "RevokeMultipleSessions", small, headers=key)
    assert status == 200 and parsed_in[-1] == threading.main_thread().name


def test_peers_are_spelt_as_grpc_spells_them() -> None:
    assert grpc_peer("127.0.0.1:5000") == "ipv4:127.0.0.1:5000"
    assert grpc_peer("::1:5000") == "ipv6:[::1]:5000"
    assert grpc_peer("::ffff:127.0.0.1:5000") == "ipv6:[::ffff:127.0.0.1]:5000"
    assert grpc_peer(None) == ""


async def test_without_keys_only_loopback_callers_are_served(
    server: RunningServer,
) -> None:
    """The Connect stack as the listener runs it (connectrpc, the gate), given the
    TCP peers no test can connect from; loopback over real HTTP is every other test."""
    servicer = SessionServicer(
        server.authority,
        RpcGate(CallerAuthenticator((), allow_remote_without_api_key=False), server.metrics),
        server.metrics,
    )
    app = HttpApp(server.authority.tokens, server.store, server.metrics, SERVICE_PATH)
    app.serve_rpcs(connect_application(servicer, max_message_bytes=1024))

    async def post_from(client: tuple[str, int]) -> tuple[int, dict[str, Any]]:
        body = json.dumps({"userId": "user-1"}).encode()
        sent: list[dict[str, Any]] = []
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "scheme": "http",
            "path": f"{SERVICE_PATH}/CreateNewSession",
            "root_path": "",
            "query_string": b"",
            "headers": [(b"content-type", b"application/json")],
            "client": client,
        }
        await app(scope, receive, send)
        return sent[0]["status"], json.loads(sent[1]["body"])

    for remote in (("192.0.2.10", 4000), ("2001:db8::1", 4000)):
        status, error = await post_from(remote)
        assert status == 401 and error["code"] == "unauthenticated"
        assert error["details"][0]["debug"]["reason"] == "API_KEY_INVALID"
    for local in (("127.0.0.1", 4000), ("::1", 4000)):
        status, created = await post_from(local)
        assert status == 200 and created["session"]["userId"] == "user-1"


async def test_the_connect_call_reads_the_headers_in_lower_case(server: RunningServer) -> None:
    from connectrpc.request import Headers, RequestContext

    context: RequestContext[Any, Any] = RequestContext(
        method=method("GetSession"),
        http_method="POST",
        request_headers=Headers(
            [("Authorization", "Bearer k"), ("Content-Type", "application/grpc-web+proto")]
        ),
        client_address="127.0.0.1:1",
    )
    call = ConnectCall(context)
    assert ("authorization", "Bearer k") in call.invocation_metadata()
    assert call.transport == "grpc-web" and call.peer() == "ipv4:127.0.0.1:1"


# --- TLS: the HTTP listener follows the gRPC port ----------------------------------------------


async def test_with_tls_and_no_http_tls_rpcs_over_plain_http_are_refused(
    start: Start, pki: Pki
) -> None:
    server = await start(**tls_settings(pki, mtls=True))
    status, _, body = await http_post(server, "CreateNewSession", b'{"userId": "u"}')
    assert status == 401 and "HTTP_TLS" in json.loads(body)["message"]
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{server.http_port}/.well-known/jwks.json") as response,
    ):
        assert response.status == 200


async def test_http_tls_serves_https_with_the_same_certificate_and_client_ca(
    start: Start, pki: Pki
) -> None:
    server = await start(**tls_settings(pki, mtls=True), http_tls=True)
    assert server.issuer.startswith("https://127.0.0.1:")
    with_cert = HttpClient(
        HTTPTransport(tls_ca_cert=pki.ca_pem, tls_cert=pki.client_cert, tls_key=pki.client_key)
    )
    call = Caller(server, scheme="https", http_client=with_cert)
    created = await call("CreateNewSession", pb.CreateNewSessionRequest(user_id="user-1"))
    assert claims_of(created.access_token.token)["iss"] == server.issuer
    for transport in (
        HTTPTransport(tls_ca_cert=pki.ca_pem),  # no client certificate
        HTTPTransport(  # one the client CA did not sign
            tls_ca_cert=pki.ca_pem, tls_cert=pki.other_client_cert, tls_key=pki.other_client_key
        ),
    ):
        with pytest.raises(ConnectError):
            await Caller(server, scheme="https", http_client=HttpClient(transport))(
                "CreateNewSession", pb.CreateNewSessionRequest(user_id="user-1")
            )
    with pytest.raises(ConnectError):  # plain HTTP on the HTTPS port
        await Caller(server)("CreateNewSession", pb.CreateNewSessionRequest(user_id="user-1"))


# --- (f) the README's curl example, as written ------------------------------------------------


def readme_curl_lines() -> list[str]:
    return [
        line.strip() for line in README.read_text().splitlines() if line.strip().startswith("curl ")
    ]


async def test_the_readme_curl_example_runs_as_written(start: Start) -> None:
    curl = shutil.which("curl")
    assert curl is not None, "curl is needed (apt-get install curl)"
    lines = readme_curl_lines()
    assert lines, "the README shows no curl example"
    server = await start()
    for line in lines:
        assert "http://127.0.0.1:3567/" in line
        command = line.replace("127.0.0.1:3567", f"127.0.0.1:{server.http_port}")
        process = await asyncio.create_subprocess_exec(
            "sh",
            "-c",
            f"{command} --silent --show-error --fail-with-body",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, stderr.decode() + stdout.decode()
        answer = json.loads(stdout)
        if "CreateNewSession" in line:
            session = answer["session"]
            assert session["userId"] == "u1"
            payload = session["accessTokenPayload"]
            assert isinstance(payload, dict) and payload["role"] == "admin"
            assert isinstance(payload["exp"], int)  # whole numbers stay whole
            for token in ("accessToken", "refreshToken"):
                for time in ("expireTime", "createTime"):
                    assert RFC3339.match(answer[token][time]), answer[token][time]
            expires = datetime.fromisoformat(answer["accessToken"]["expireTime"])
            assert int(expires.timestamp()) == payload["exp"]
