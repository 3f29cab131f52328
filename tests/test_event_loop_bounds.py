"""No call may stall the authority: the worst input the limits allow, sent over
and over, leaves a cheap call served within 100 ms.

The authority runs as a real process, so what the latency shows is time its one
event loop spent on the heavy calls. Before claim checks were hashed, one
ValidateClaims call of this shape held that loop for about 6 seconds.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from session_authority.json_text import MAX_JSON_DEPTH
from session_authority.v1 import session_service_pb2 as pb
from session_authority.v1 import session_service_pb2_grpc as pb_grpc
from session_authority.wire import MAX_VALIDATORS_PER_CALL

from .processes import ServerProcess, server_processes

CHEAP_CALL_BOUND_S = 0.1
HEAVY_ROUNDS = 6
PAYLOAD_BYTES = 16 * 1024
SESSION_DATA_BYTES = 64 * 1024
VALIDATOR_VALUES_BYTES = 16 * 1024

K = pb.ClaimValidatorKind


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


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
            value_json=compact(int_list(share, start=100_000 + 1000 * i)),
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
            value_json=compact(int_list(VALIDATOR_VALUES_BYTES - 100, start=10**6)),
        )
    ]


def fill(max_bytes: int, room: int = 64) -> list[Any]:
    """The costliest JSON shape to parse and write for its size: empty arrays."""
    return [[] for _ in range((max_bytes - room) // 3)]


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


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


async def heavy_calls(stub: pb_grpc.SessionServiceStub) -> list[tuple[str, Callable[[], Any]]]:
    """(name, a call) for the worst input of each RPC whose work grows with input."""
    payload = claim_payload(int_list(PAYLOAD_BYTES - 100))
    created = await stub.CreateNewSession(
        pb.CreateNewSessionRequest(user_id="victim", access_token_payload_json=compact(payload))
    )
    access_token = created.access_token.token
    handle = created.session.session_handle
    validator_sets = {"64 validators": many_validators(), "one big list": one_big_validator()}

    def validator_calls(
        label: str, v: list[pb.ClaimValidator]
    ) -> list[tuple[str, Callable[[], Any]]]:
        return [
            (
                f"ValidateClaims, {label}",
                lambda: stub.ValidateClaims(
                    pb.ValidateClaimsRequest(
                        access_token_payload_json=compact(payload), claim_validators=v
                    )
                ),
            ),
            (
                f"ValidateClaimsInJwtPayload, {label}",
                lambda: stub.ValidateClaimsInJwtPayload(
                    pb.ValidateClaimsInJwtPayloadRequest(
                        jwt_payload_json=compact(payload), claim_validators=v
                    )
                ),
            ),
            (
                f"GetSession with override validators, {label}",
                lambda: stub.GetSession(
                    pb.GetSessionRequest(
                        access_token=access_token,
                        override_global_claim_validators=pb.ClaimValidatorList(validators=v),
                    )
                ),
            ),
        ]

    calls: list[tuple[str, Callable[[], Any]]] = []
    for label, validators in validator_sets.items():
        calls += validator_calls(label, validators)
    calls += [
        (
            "CreateNewSession, payload and data at their limits",
            lambda: stub.CreateNewSession(
                pb.CreateNewSessionRequest(
                    user_id="u" * 512,
                    access_token_payload_json=compact({"p": fill(PAYLOAD_BYTES)}),
                    session_data_in_database_json=compact({"d": fill(SESSION_DATA_BYTES)}),
                )
            ),
        ),
        (
            "UpdateSessionDataInDatabase at the limit",
            lambda: stub.UpdateSessionDataInDatabase(
                pb.UpdateSessionDataInDatabaseRequest(
                    session_handle=handle,
                    new_session_data_json=compact({"d": fill(SESSION_DATA_BYTES)}),
                )
            ),
        ),
        (
            "CreateJwt at the limit",
            lambda: stub.CreateJwt(
                pb.CreateJwtRequest(payload_json=compact({"p": fill(PAYLOAD_BYTES)}))
            ),
        ),
        (
            "JSON nested as deep as allowed, and deeper",
            lambda: asyncio.gather(
                stub.SetClaimValue(
                    pb.SetClaimValueRequest(
                        session_handle=handle,
                        claim_key="deep",
                        value_json=compact(nested(MAX_JSON_DEPTH - 2)),
                    )
                ),
                stub.CreateNewSession(
                    pb.CreateNewSessionRequest(
                        user_id="u",
                        session_data_in_database_json="[" * 60_000 + "]" * 60_000,
                    )
                ),
                return_exceptions=True,
            ),
        ),
        (
            "RevokeMultipleSessions with the most handles",
            lambda: stub.RevokeMultipleSessions(
                pb.RevokeMultipleSessionsRequest(
                    session_handles=[str(uuid.uuid4()) for _ in range(1000)]
                )
            ),
        ),
        (
            "GetSession with a huge, deeply nested token header",
            lambda: stub.GetSession(pb.GetSessionRequest(access_token="W" * 100_000 + ".e30.c2ln")),
        ),
    ]
    return calls


async def test_the_worst_inputs_leave_a_cheap_call_under_100_ms(
    authority: ServerProcess,
) -> None:
    async with grpc.aio.insecure_channel(authority.target) as channel:
        stub = pb_grpc.SessionServiceStub(channel)
        await stub.GetJwks(pb.GetJwksRequest())  # connected and warm
        for name, call in await heavy_calls(stub):
            done = asyncio.Event()
            pinger = asyncio.create_task(cheap_call_latencies(stub, done))
            started = time.perf_counter()
            for _ in range(HEAVY_ROUNDS):
                try:
                    await call()
                except grpc.aio.AioRpcError as error:
                    # Refusals are fine (deeper than allowed, say); INTERNAL is not.
                    assert error.code() in (
                        grpc.StatusCode.INVALID_ARGUMENT,
                        grpc.StatusCode.UNAUTHENTICATED,
                        grpc.StatusCode.PERMISSION_DENIED,
                    ), (name, error.code(), error.details())
            heavy_s = (time.perf_counter() - started) / HEAVY_ROUNDS
            done.set()
            latencies = await pinger
            assert latencies, name
            assert max(latencies) < CHEAP_CALL_BOUND_S, (
                f"{name}: a cheap call waited {max(latencies) * 1000:.0f} ms "
                f"(the heavy call took {heavy_s * 1000:.0f} ms)"
            )
