"""No call may stall the authority: the worst input the limits allow, sent over
and over, leaves a cheap call served within 100 ms.

The authority runs as a real process, so what the latency shows is time its one
event loop spent on the heavy calls. Before claim checks were hashed, one
ValidateClaims call of this shape held that loop for about 6 seconds. JSON values
travel as google.protobuf.Struct / Value; the costliest Structs for their JSON
size are lists of empty lists (converting costs about a microsecond per value),
which the authority converts on a worker thread past CONVERT_OFF_LOOP_BYTES.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from google.protobuf.message import Message
from session_authority.json_text import MAX_JSON_DEPTH
from session_authority.structs import struct_to_wire, value_to_wire
from session_authority.v1 import session_service_pb2 as pb
from session_authority.v1 import session_service_pb2_grpc as pb_grpc
from session_authority.wire import MAX_VALIDATORS_PER_CALL
from session_authority_server.service import CONVERT_OFF_LOOP_BYTES

from .processes import ServerProcess, server_processes

CHEAP_CALL_BOUND_S = 0.1
HEAVY_ROUNDS = 6
PAYLOAD_BYTES = 16 * 1024
# The longest claim list a payload can carry: small numbers take 2 bytes of JSON but
# 11 on the wire, where the authority allows four times the JSON limit. (A few more,
# and the answer to 64 validators quoting it no longer fits a gRPC message.)
QUOTED_NUMBERS = 5_800
SESSION_DATA_BYTES = 64 * 1024
VALIDATOR_VALUES_BYTES = 16 * 1024

K = pb.ClaimValidatorKind
SERVICE = pb.DESCRIPTOR.services_by_name["SessionService"].full_name
# Past the parser's depth limit (protobuf's, about 100 messages deep) by far.
FAR_TOO_DEEP = 60_000


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    return struct_to_wire(value, "test")


def value(json_value: Any) -> struct_pb2.Value:
    return value_to_wire(json_value, "test")


def int_list(max_bytes: int, start: int = 0) -> list[int]:
    """As many distinct integers as fit a JSON array of max_bytes."""
    values: list[int] = []
    size = 2
    while size + len(str(start + len(values))) + 1 <= max_bytes:
        size += len(str(start + len(values))) + 1
        values.append(start + len(values))
    return values


def claim_payload(values: list[Any]) -> dict[str, Any]:
    return {"roles": {"v": values, "t": 1_800_000_000_000}}


def many_validators() -> list[pb.ClaimValidator]:
    """64 validators of every list kind, their values filling the per-call limit."""
    share = VALIDATOR_VALUES_BYTES // MAX_VALIDATORS_PER_CALL
    kinds = [
        K.CLAIM_VALIDATOR_KIND_INCLUDES_ALL,
        K.CLAIM_VALIDATOR_KIND_EXCLUDES_ALL,
        K.CLAIM_VALIDATOR_KIND_INCLUDES_ANY,
        K.CLAIM_VALIDATOR_KIND_HAS_VALUE,
    ]
    return [
        pb.ClaimValidator(
            id=f"v{i}",
            claim_key="roles",
            kind=kinds[i % len(kinds)],
            value=value(int_list(share, start=100_000 + 1000 * i)),
        )
        for i in range(MAX_VALIDATORS_PER_CALL)
    ]


def one_big_validator() -> list[pb.ClaimValidator]:
    """The reported shape: one EXCLUDES_ALL list against a claim list, both at the limit."""
    return [
        pb.ClaimValidator(
            id="big",
            claim_key="roles",
            kind=K.CLAIM_VALIDATOR_KIND_EXCLUDES_ALL,
            value=value(int_list(VALIDATOR_VALUES_BYTES - 100, start=10**6)),
        )
    ]


def quoting_validators() -> list[pb.ClaimValidator]:
    """64 validators that all fail, each quoting the claim list in its reason
    (actualValue), their values filling the per-call limit on the wire."""
    return [
        pb.ClaimValidator(
            id=f"q{i}",
            claim_key="roles",
            kind=K.CLAIM_VALIDATOR_KIND_INCLUDES_ALL,
            value=value([1] * 90),
        )
        for i in range(MAX_VALIDATORS_PER_CALL)
    ]


def fill(max_bytes: int, room: int = 64) -> list[Any]:
    """The costliest JSON shape to convert and write for its size: empty arrays
    (3 bytes of JSON each, 4 on the wire)."""
    return [[] for _ in range((max_bytes - room) // 3)]


def fill_on_loop() -> list[Any]:
    """The most empty arrays a Struct holds and is still converted on the event
    loop (its wire size at most CONVERT_OFF_LOOP_BYTES)."""
    values: list[Any] = [[] for _ in range((CONVERT_OFF_LOOP_BYTES - 16) // 4)]
    assert struct({"p": values}).ByteSize() <= CONVERT_OFF_LOOP_BYTES
    return values


def nested(depth: int) -> Any:
    nest: Any = []
    for _ in range(depth - 1):
        nest = [nest]
    return nest


def _varint(number: int) -> bytes:
    out = bytearray()
    while number > 0x7F:
        out.append(number & 0x7F | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def nested_lists_request(user_id: str, lists: int) -> bytes:
    """A serialized CreateNewSessionRequest whose session data is {"a": [[...]]},
    an object and lists nested lists deep in it: encoded by hand, since this
    process' protobuf cannot build a message that deep (it runs out of stack)."""
    # Inside out: the innermost Value is an empty list (field 6, length 0); each
    # level wraps the Value in a ListValue (values: field 1) and that in a Value.
    value_length = 2
    heads: list[bytes] = []
    for _ in range(lists - 1):
        list_length = 1 + len(_varint(value_length)) + value_length
        heads.append(b"\x32" + _varint(list_length) + b"\x0a" + _varint(value_length))
        value_length = 1 + len(_varint(list_length)) + list_length
    value_bytes = b"".join(reversed(heads)) + b"\x32\x00"
    assert len(value_bytes) == value_length
    entry = b"\x0a\x01a" + b"\x12" + _varint(value_length) + value_bytes
    data = b"\x0a" + _varint(len(entry)) + entry  # Struct.fields
    user = user_id.encode()
    return b"\x0a" + _varint(len(user)) + user + b"\x1a" + _varint(len(data)) + data


@pytest.fixture
async def authority(any_database_url: str) -> AsyncIterator[ServerProcess]:
    async with server_processes({"database_url": any_database_url}) as [server]:
        yield server


async def cheap_call_latencies(
    stub: pb_grpc.SessionServiceStub, until: asyncio.Event
) -> list[float]:
    latencies = []
    while not until.is_set():
        started = time.perf_counter()
        await stub.GetJwks(pb.GetJwksRequest())
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(0.005)
    return latencies


# One heavy call: requests sent together, each as (method, serialized request).
Heavy = list[tuple[str, bytes]]


async def heavy_calls(stub: pb_grpc.SessionServiceStub) -> list[tuple[str, Heavy]]:
    """(name, requests) for the worst input of each RPC whose work grows with input.
    Every request is built and serialized here, once: building big Structs takes
    this process' event loop tens of milliseconds, which the pings would count."""
    payload = claim_payload(int_list(PAYLOAD_BYTES - 100))
    created = await stub.CreateNewSession(
        pb.CreateNewSessionRequest(user_id="victim", access_token_payload=struct(payload))
    )
    access_token = created.access_token.token
    handle = created.session.session_handle
    quoted = claim_payload([0] * QUOTED_NUMBERS)
    assert struct(quoted).ByteSize() <= 4 * PAYLOAD_BYTES
    quoted_session = await stub.CreateNewSession(
        pb.CreateNewSessionRequest(user_id="quoted", access_token_payload=struct(quoted))
    )
    # label: (payload, an access token carrying it, validators)
    validator_sets = {
        "64 validators": (payload, access_token, many_validators()),
        "one big list": (payload, access_token, one_big_validator()),
        "64 failures quoting the longest claim list": (
            quoted,
            quoted_session.access_token.token,
            quoting_validators(),
        ),
    }

    def one(method: str, request: Message) -> Heavy:
        return [(method, request.SerializeToString())]

    calls: list[tuple[str, Heavy]] = []
    for label, (claims, token, validators) in validator_sets.items():
        calls += [
            (
                f"ValidateClaims, {label}",
                one(
                    "ValidateClaims",
                    pb.ValidateClaimsRequest(
                        access_token_payload=struct(claims), claim_validators=validators
                    ),
                ),
            ),
            (
                f"ValidateClaimsInJwtPayload, {label}",
                one(
                    "ValidateClaimsInJwtPayload",
                    pb.ValidateClaimsInJwtPayloadRequest(
                        jwt_payload=struct(claims), claim_validators=validators
                    ),
                ),
            ),
            (
                f"GetSession with override validators, {label}",
                one(
                    "GetSession",
                    pb.GetSessionRequest(
                        access_token=token,
                        override_global_claim_validators=pb.ClaimValidatorList(
                            validators=validators
                        ),
                    ),
                ),
            ),
        ]
    at_the_limit = struct({"d": fill(SESSION_DATA_BYTES)})
    assert at_the_limit.ByteSize() > CONVERT_OFF_LOOP_BYTES  # converted on a worker thread
    calls += [
        (
            "CreateNewSession, payload and data at their limits",
            one(
                "CreateNewSession",
                pb.CreateNewSessionRequest(
                    user_id="u" * 512,
                    access_token_payload=struct({"p": fill(PAYLOAD_BYTES)}),
                    session_data_in_database=at_the_limit,
                ),
            ),
        ),
        (
            "CreateNewSession, payload and data just small enough to convert on the loop",
            one(
                "CreateNewSession",
                pb.CreateNewSessionRequest(
                    user_id="u" * 512,
                    access_token_payload=struct({"p": fill_on_loop()}),
                    session_data_in_database=struct({"p": fill_on_loop()}),
                ),
            ),
        ),
        (
            "UpdateSessionDataInDatabase at the limit",
            one(
                "UpdateSessionDataInDatabase",
                pb.UpdateSessionDataInDatabaseRequest(
                    session_handle=handle, new_session_data=at_the_limit
                ),
            ),
        ),
        (
            "CreateJwt at the limit",
            one("CreateJwt", pb.CreateJwtRequest(payload=struct({"p": fill(PAYLOAD_BYTES)}))),
        ),
        (
            "JSON nested as deep as allowed, and deeper",
            [
                # Stored as {"deep": {"v": value, "t": ...}}: two levels more.
                *one(
                    "SetClaimValue",
                    pb.SetClaimValueRequest(
                        session_handle=handle,
                        claim_key="deep",
                        value=value(nested(MAX_JSON_DEPTH - 2)),
                    ),
                ),
                *one(
                    "CreateNewSession",
                    pb.CreateNewSessionRequest(
                        user_id="u",
                        session_data_in_database=struct({"a": nested(MAX_JSON_DEPTH - 1)}),
                    ),
                ),
                # One level too deep (refused by the authority), and far too deep
                # (refused by the protobuf parser).
                ("CreateNewSession", nested_lists_request("u", MAX_JSON_DEPTH)),
                ("CreateNewSession", nested_lists_request("u", FAR_TOO_DEEP)),
            ],
        ),
        (
            "RevokeMultipleSessions with the most handles",
            one(
                "RevokeMultipleSessions",
                pb.RevokeMultipleSessionsRequest(
                    session_handles=[str(uuid.uuid4()) for _ in range(1000)]
                ),
            ),
        ),
        (
            "GetSession with a huge, deeply nested token header",
            one("GetSession", pb.GetSessionRequest(access_token="W" * 100_000 + ".e30.c2ln")),
        ),
    ]
    return calls


async def send(channel: grpc.aio.Channel, name: str, requests: Heavy) -> None:
    """The requests at once, bytes in and bytes out (nothing parsed here)."""
    outcomes = await asyncio.gather(
        *(channel.unary_unary(f"/{SERVICE}/{method}")(data) for method, data in requests),
        return_exceptions=True,
    )
    for outcome in outcomes:
        if isinstance(outcome, grpc.aio.AioRpcError):
            # Refusals are fine (deeper than allowed, say); INTERNAL is not.
            assert outcome.code() in (
                grpc.StatusCode.INVALID_ARGUMENT,
                grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.PERMISSION_DENIED,
            ), (name, outcome.code(), outcome.details())
        elif isinstance(outcome, BaseException):
            raise outcome


async def test_the_worst_inputs_leave_a_cheap_call_under_100_ms(
    authority: ServerProcess,
) -> None:
    async with grpc.aio.insecure_channel(authority.target) as channel:
        stub = pb_grpc.SessionServiceStub(channel)
        await stub.GetJwks(pb.GetJwksRequest())  # connected and warm
        too_slow = []  # every heavy call over the bound, not only the first
        for name, requests in await heavy_calls(stub):
            done = asyncio.Event()
            pinger = asyncio.create_task(cheap_call_latencies(stub, done))
            started = time.perf_counter()
            for _ in range(HEAVY_ROUNDS):
                await send(channel, name, requests)
            heavy_s = (time.perf_counter() - started) / HEAVY_ROUNDS
            done.set()
            latencies = await pinger
            assert latencies, name
            if max(latencies) >= CHEAP_CALL_BOUND_S:
                too_slow.append(
                    f"{name}: a cheap call waited {max(latencies) * 1000:.0f} ms "
                    f"(the heavy call took {heavy_s * 1000:.0f} ms)"
                )
        assert not too_slow, "\n".join(too_slow)
