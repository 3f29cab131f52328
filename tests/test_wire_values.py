"""JSON values and times on the wire, through a real server and the real client.

Payloads, session data and claim values are google.protobuf.Struct / Value: JSON
numbers are doubles. The SDK gives integral numbers within +-2^53 back as ints and
keeps floats as floats; it refuses, before any RPC, an int a double would round
(beyond +-2^53) and nesting deeper than 32 levels, naming the request field. A raw
response shown as proto JSON (json_format.MessageToJson) has payloads as JSON
objects, times as RFC 3339 strings and explicit-presence booleans even when false.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, struct_pb2
from grpc_status import rpc_status
from session_authority import (
    InvalidArgumentError,
    PrimitiveClaim,
    SessionClient,
)
from session_authority.errors import ERROR_DOMAIN
from session_authority.v1 import session_service_pb2 as pb
from session_authority.v1 import session_service_pb2_grpc as pb_grpc
from session_authority.wire import error_from_rpc_error
from session_authority_server.app import RunningServer

from .conftest import ManualClock, RpcCounter, refresh_token_of

MAX_SAFE = 2**53
MAX_DEPTH = 32

INTS: dict[str, Any] = {
    "max": MAX_SAFE,
    "min": -MAX_SAFE,
    "zero": 0,
    "answer": 42,
    "list": [1, -7, 2**40, MAX_SAFE - 1],
    "object": {"n": 123_456_789_012},
}
FLOATS: dict[str, Any] = {
    "half": 0.5,
    "third": 1 / 3,
    "negative": -2.25,
    "tiny": 5e-324,
    "huge": 1e300,
    "beyond": 2.0**60,  # a float past 2^53 is still a float: only ints are refused
    "list": [0.1, 1.5],
}


def no_fetch(user_id: str, payload: dict[str, Any]) -> None:
    return None


def assert_same_json(got: Any, expected: Any, where: str = "$") -> None:
    """Equal, and of the same Python types all the way down (1 is not 1.0, True is
    not 1)."""
    assert type(got) is type(expected), f"{where}: {got!r} is not a {type(expected).__name__}"
    if isinstance(expected, dict):
        assert got.keys() == expected.keys(), where
        for key, item in expected.items():
            assert_same_json(got[key], item, f"{where}.{key}")
    elif isinstance(expected, list):
        assert len(got) == len(expected), where
        for index, item in enumerate(expected):
            assert_same_json(got[index], item, f"{where}[{index}]")
    else:
        assert got == expected, where


def nested_object(levels: int) -> dict[str, Any]:
    """A JSON object ``levels`` levels deep, counting itself."""
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"k": value}
    return value


def nested_list(levels: int) -> list[Any]:
    """A JSON array ``levels`` levels deep, counting itself."""
    value: list[Any] = [1]
    for _ in range(levels - 1):
        value = [value]
    return value


@pytest.fixture
async def stub(server: RunningServer) -> AsyncIterator[pb_grpc.SessionServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.SessionServiceStub(channel)


@pytest.fixture
async def remote(
    server: RunningServer, connect: Callable[..., SessionClient]
) -> AsyncIterator[SessionClient]:
    """A client that asks the authority in get_session (payloads come from a Struct,
    not from the token's JSON)."""
    async with connect(server, verify_locally=False) as session_client:
        yield session_client


# --- numbers ----------------------------------------------------------------------------


@pytest.mark.parametrize("values", [INTS, FLOATS], ids=["ints", "floats"])
async def test_numbers_come_back_as_the_type_they_went_in(
    values: dict[str, Any], client: SessionClient, remote: SessionClient
) -> None:
    created = await client.create_new_session("user-n", values, values)
    assert_same_json({k: created.access_token_payload[k] for k in values}, values)
    assert_same_json(created.custom_claims, values)

    for verifier in (client, remote):
        verified = await verifier.get_session(created.access_token, check_database=True)
        assert verified is not None
        assert_same_json(verified.custom_claims, values)

    refreshed = await client.refresh_session(refresh_token_of(created))
    assert_same_json(refreshed.custom_claims, values)

    info = await client.get_session_information(created.session_handle)
    assert info is not None
    assert_same_json(info.session_data_in_database, values)
    assert_same_json(info.custom_claims_in_access_token_payload, values)

    assert await client.update_session_data_in_database(created.session_handle, {"v": values})
    info = await client.get_session_information(created.session_handle)
    assert info is not None
    assert_same_json(info.session_data_in_database, {"v": values})

    claim: PrimitiveClaim[Any] = PrimitiveClaim("numbers", no_fetch)
    assert await client.set_claim_value(created.session_handle, claim, values)
    got = await client.get_claim_value(created.session_handle, claim)
    assert got.status == "OK"
    assert_same_json(got.value, values)

    regenerated = await client.regenerate_access_token(created.access_token, values)
    assert regenerated is not None
    assert_same_json({k: regenerated.access_token_payload[k] for k in values}, values)


async def test_an_integral_float_comes_back_as_an_int(client: SessionClient) -> None:
    """JSON has one number type: 2.0 and 2 are the same number on the wire."""
    created = await client.create_new_session("user-n", None, {"two": 2.0, "big": 2.0**53})
    info = await client.get_session_information(created.session_handle)
    assert info is not None
    assert_same_json(info.session_data_in_database, {"two": 2, "big": MAX_SAFE})


@pytest.mark.parametrize("big", [MAX_SAFE + 1, -(MAX_SAFE + 1), 2**64, 10**30])
async def test_an_int_beyond_2_53_is_refused_before_any_rpc(
    big: int, client: SessionClient, rpc_counter: RpcCounter
) -> None:
    session = await client.create_new_session("user-n")
    handle = session.session_handle
    claim: PrimitiveClaim[int] = PrimitiveClaim("n", no_fetch)
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "access_token_payload": lambda: client.create_new_session("user-n", {"n": big}),
        "session_data_in_database": lambda: client.create_new_session(
            "user-n", None, {"deep": [{"n": big}]}
        ),
        "new_session_data": lambda: client.update_session_data_in_database(handle, {"n": big}),
        "access_token_payload_update": lambda: client.merge_into_access_token_payload(
            handle, {"n": big}
        ),
        "new_access_token_payload": lambda: client.regenerate_access_token(
            session.access_token, {"n": big}
        ),
        "value": lambda: client.set_claim_value(handle, claim, big),
        "payload": lambda: client.create_jwt({"n": big}),
        "jwt_payload": lambda: client.validate_claims_in_jwt_payload(
            "user-n", {"n": big}, [claim.validators.has_value(1)]
        ),
        "claim_validators.value": lambda: client.validate_claims_in_jwt_payload(
            "user-n", {"n": 1}, [claim.validators.has_value(big)]
        ),
    }
    before = rpc_counter.total()
    for field, call in calls.items():
        with pytest.raises(InvalidArgumentError) as refused:
            await call()
        assert refused.value.field == field
        assert field in refused.value.message and "2^53" in refused.value.message
    assert rpc_counter.total() == before, "a refused value was sent"
    # Nothing was stored either.
    assert await client.get_all_session_handles_for_user("user-n") == [handle]


# --- nesting ----------------------------------------------------------------------------


async def test_32_levels_of_nesting_travel_and_33_are_refused(
    client: SessionClient, remote: SessionClient, rpc_counter: RpcCounter
) -> None:
    deepest_object = nested_object(MAX_DEPTH)
    deepest_list = {"l": nested_list(MAX_DEPTH - 1)}  # the payload object is level 1
    for payload in (deepest_object, deepest_list):
        created = await client.create_new_session("user-d", payload, payload)
        assert_same_json(created.custom_claims, payload)
        verified = await remote.get_session(created.access_token, check_database=True)
        assert verified is not None
        assert_same_json(verified.custom_claims, payload)
        info = await client.get_session_information(created.session_handle)
        assert info is not None
        assert_same_json(info.session_data_in_database, payload)
        assert_same_json(info.custom_claims_in_access_token_payload, payload)
        refreshed = await client.refresh_session(refresh_token_of(created))
        assert_same_json(refreshed.custom_claims, payload)

    before = rpc_counter.total()
    for too_deep in (nested_object(MAX_DEPTH + 1), {"l": nested_list(MAX_DEPTH)}):
        with pytest.raises(InvalidArgumentError) as refused:
            await client.create_new_session("user-d", too_deep)
        assert refused.value.field == "access_token_payload"
        with pytest.raises(InvalidArgumentError) as refused:
            await client.create_new_session("user-d", None, too_deep)
        assert refused.value.field == "session_data_in_database"
    assert rpc_counter.total() == before, "a refused value was sent"


async def test_the_authority_refuses_33_levels_sent_by_a_raw_caller(
    stub: pb_grpc.SessionServiceStub,
) -> None:
    """Another SDK (or none) may not check: the authority holds the same rule."""
    too_deep = json_format.ParseDict(nested_object(MAX_DEPTH + 1), struct_pb2.Struct())
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateNewSession(
            pb.CreateNewSessionRequest(user_id="user-d", access_token_payload=too_deep)
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    error = error_from_rpc_error(raised.value)
    assert isinstance(error, InvalidArgumentError)
    assert error.field == "access_token_payload"

    deepest = json_format.ParseDict(nested_object(MAX_DEPTH), struct_pb2.Struct())
    response = await stub.CreateNewSession(
        pb.CreateNewSessionRequest(user_id="user-d", session_data_in_database=deepest)
    )
    assert response.session.session_handle


# --- proto JSON -------------------------------------------------------------------------

RFC_3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def ms_of(rfc_3339: str) -> int:
    assert RFC_3339_UTC.match(rfc_3339), rfc_3339
    return round(datetime.fromisoformat(rfc_3339).timestamp() * 1000)


def proto_json(message: Any) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(json_format.MessageToJson(message))
    return shown


async def test_proto_json_shows_json_objects_rfc_3339_times_and_false(
    stub: pb_grpc.SessionServiceStub, clock: ManualClock
) -> None:
    payload = {"role": "admin", "level": 3, "tags": ["a", "b"], "ok": True, "none": None}
    created = await stub.CreateNewSession(
        pb.CreateNewSessionRequest(
            user_id="user-j",
            access_token_payload=json_format.ParseDict(payload, struct_pb2.Struct()),
            session_data_in_database=json_format.ParseDict({"cart": [1]}, struct_pb2.Struct()),
        )
    )
    shown = proto_json(created)
    session = shown["session"]
    assert {k: session["accessTokenPayload"][k] for k in payload} == payload
    assert session["accessTokenPayload"]["sub"] == "user-j"
    assert ms_of(shown["accessToken"]["createTime"]) == clock.ms
    assert ms_of(shown["accessToken"]["expireTime"]) == clock.ms + 3600 * 1000
    assert ms_of(shown["refreshToken"]["expireTime"]) == clock.ms + 8_640_000_000
    assert "antiCsrfToken" not in shown  # not issued: absent, not ""

    handle = created.session.session_handle
    info = proto_json(
        await stub.GetSessionInformation(pb.GetSessionInformationRequest(session_handle=handle))
    )["sessionInformation"]
    assert info["sessionDataInDatabase"] == {"cart": [1]}
    assert info["customClaimsInAccessTokenPayload"] == payload
    assert ms_of(info["createTime"]) == clock.ms
    assert ms_of(info["expireTime"]) == clock.ms + 8_640_000_000

    listed = proto_json(await stub.ListSessions(pb.ListSessionsRequest(user_id="user-j")))
    assert listed["totalSize"] == 1
    [summary] = listed["sessions"]
    assert ms_of(summary["lastRefreshTime"]) == clock.ms
    assert proto_json(await stub.ListSessions(pb.ListSessionsRequest(user_id="nobody"))) == {
        "totalSize": 0
    }

    jwks = proto_json(await stub.GetJwks(pb.GetJwksRequest()))
    assert re.fullmatch(r"\d+s", jwks["maxAge"]), jwks["maxAge"]

    # Explicit presence: false is shown, where a plain bool would be left out.
    assert proto_json(
        await stub.RevokeSession(pb.RevokeSessionRequest(session_handle="no-such-handle"))
    ) == {"revoked": False}
    assert proto_json(
        await stub.GetClaimValue(pb.GetClaimValueRequest(session_handle="nope", claim_key="x"))
    ) == {"sessionExists": False}
    assert proto_json(
        await stub.RemoveClaim(pb.RemoveClaimRequest(session_handle="nope", claim_key="x"))
    ) == {"updated": False}
    assert proto_json(await stub.RevokeSession(pb.RevokeSessionRequest(session_handle=handle))) == {
        "revoked": True
    }
    assert proto_json(
        await stub.UpdateSessionDataInDatabase(
            pb.UpdateSessionDataInDatabaseRequest(session_handle=handle)
        )
    ) == {"updated": False}

    # Errors too are JSON: the ErrorInfo domain shows in the status details.
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateNewSession(pb.CreateNewSessionRequest(user_id=""))
    status = rpc_status.from_call(raised.value)
    assert status is not None
    details = proto_json(status)["details"]
    assert details[0]["domain"] == ERROR_DOMAIN and details[0]["metadata"] == {"field": "user_id"}
    assert details[1]["fieldViolations"][0]["field"] == "user_id"
