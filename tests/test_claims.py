"""Session claims against a real server, a real client and a real SQLite file.

The built-in validators are checked for every kind and every state a value can be
in (missing, expired, wrong, right), in the client and on the authority, which must
give the same reasons. Then: refetching in get_session when a max age passes,
global validators (the authority's and the client's) and their override,
INVALID_CLAIMS with every failure, the claim functions on live and revoked
sessions, the SessionContainer methods, validate_claims with custom validators,
and protected keys. Time only moves through the shared manual clock.
"""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, struct_pb2
from session_authority import (
    BooleanClaim,
    ClaimValidationError,
    ClaimValidator,
    InvalidArgumentError,
    InvalidClaimsError,
    PrimitiveArrayClaim,
    PrimitiveClaim,
    SessionClaim,
    SessionClient,
    SessionContainer,
    UnauthorisedError,
)
from session_authority.v1 import session_service_pb2 as pb
from session_authority.v1 import session_service_pb2_grpc as pb_grpc
from session_authority.wire import error_from_rpc_error
from session_authority_server.app import RunningServer
from session_authority_server.config import ConfigError, Settings

from .conftest import ManualClock, RpcCounter

Start = Callable[..., Awaitable[RunningServer]]
Connect = Callable[..., SessionClient]

PROTECTED = (
    "sub",
    "exp",
    "iat",
    "iss",
    "sessionHandle",
    "refreshTokenHash1",
    "parentRefreshTokenHash1",
    "antiCsrfToken",
    "tId",
    "rsub",
)
MAX_AGE = 60
USER = "user-1"


# --- helpers -----------------------------------------------------------------------------


class Fetch:
    """A claim's fetch function that records its calls; ``value`` can change."""

    def __init__(self, value: Any) -> None:
        self.value = value
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, user_id: str, payload: dict[str, Any]) -> Any:
        self.calls.append((user_id, dict(payload)))
        return self.value


class AsyncFetch(Fetch):
    async def __call__(self, user_id: str, payload: dict[str, Any]) -> Any:
        return super().__call__(user_id, payload)


def no_fetch(user_id: str, payload: dict[str, Any]) -> None:
    return None


class Custom:
    """A user-written validator: only ``id`` and ``validate``."""

    def __init__(self, id: str, reason: dict[str, Any] | None) -> None:
        self.id = id
        self.reason = reason
        self.seen: list[tuple[dict[str, Any], int | None]] = []

    def validate(self, payload: dict[str, Any], now_ms: int | None = None) -> dict[str, Any]:
        self.seen.append((dict(payload), now_ms))
        return {"is_valid": self.reason is None, "reason": self.reason}


class AsyncCustom(Custom):
    async def validate(  # type: ignore[override]
        self, payload: dict[str, Any], now_ms: int | None = None
    ) -> dict[str, Any]:
        return super().validate(payload, now_ms)


def entry(value: Any, t: int) -> dict[str, Any]:
    return {"v": value, "t": t}


def token_payload(token: str) -> dict[str, Any]:
    """The payload a token string itself carries (not what a container says)."""
    segment = token.split(".")[1]
    decoded = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    assert isinstance(decoded, dict)
    return decoded


@contextlib.asynccontextmanager
async def raw_stub(server: RunningServer) -> AsyncIterator[pb_grpc.SessionServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.SessionServiceStub(channel)


_WIRE_KINDS = {
    "has_value": pb.CLAIM_VALIDATOR_KIND_HAS_VALUE,
    "includes": pb.CLAIM_VALIDATOR_KIND_INCLUDES,
    "excludes": pb.CLAIM_VALIDATOR_KIND_EXCLUDES,
    "includes_all": pb.CLAIM_VALIDATOR_KIND_INCLUDES_ALL,
    "includes_any": pb.CLAIM_VALIDATOR_KIND_INCLUDES_ANY,
    "excludes_all": pb.CLAIM_VALIDATOR_KIND_EXCLUDES_ALL,
}


def json_value(text: str) -> struct_pb2.Value:
    """A google.protobuf.Value from JSON text, by protobuf's own JSON mapping."""
    return json_format.Parse(text, struct_pb2.Value())


def to_wire(validator: ClaimValidator) -> pb.ClaimValidator:
    """The declarative wire form, built here independently of the SDK's wire.py and
    structs.py."""
    message = pb.ClaimValidator(
        id=validator.id,
        claim_key=validator.claim_key,
        kind=_WIRE_KINDS[validator.kind],
        value=json_value(json.dumps(validator.value)),
    )
    if validator.max_age_in_seconds is not None:
        message.max_age.seconds = validator.max_age_in_seconds
    return message


# --- every validator kind x every state, in the client and on the authority ------------

KINDS = [
    pytest.param(
        lambda: PrimitiveClaim("level", no_fetch).validators.has_value("gold", MAX_AGE),
        "gold",
        "silver",
        "expectedValue",
        "gold",
        id="has_value",
    ),
    pytest.param(
        lambda: PrimitiveClaim("flag", no_fetch).validators.has_value(True, MAX_AGE),
        True,
        1,  # true is not 1 (JavaScript's ===)
        "expectedValue",
        True,
        id="has_value-true-is-not-1",
    ),
    pytest.param(
        lambda: PrimitiveClaim("count", no_fetch).validators.has_value(1, MAX_AGE),
        1,
        True,
        "expectedValue",
        1,
        id="has_value-1-is-not-true",
    ),
    pytest.param(
        lambda: PrimitiveClaim("off", no_fetch).validators.has_value(False, MAX_AGE),
        False,
        0,
        "expectedValue",
        False,
        id="has_value-false-is-not-0",
    ),
    pytest.param(
        lambda: PrimitiveArrayClaim("roles", no_fetch).validators.includes(
            "admin", MAX_AGE, id="must-be-admin"
        ),
        ["user", "admin"],
        ["user"],
        "expectedToInclude",
        "admin",
        id="includes",
    ),
    pytest.param(
        lambda: PrimitiveArrayClaim("bits", no_fetch).validators.includes(1, MAX_AGE),
        [0, 1],
        [True, "1", 1.5],
        "expectedToInclude",
        1,
        id="includes-1-is-not-true",
    ),
    pytest.param(
        lambda: PrimitiveArrayClaim("roles", no_fetch).validators.excludes("banned", MAX_AGE),
        ["user"],
        ["user", "banned"],
        "expectedToNotInclude",
        "banned",
        id="excludes",
    ),
    pytest.param(
        lambda: PrimitiveArrayClaim("perms", no_fetch).validators.includes_all(
            ["read", "write"], MAX_AGE
        ),
        ["write", "x", "read"],
        ["read", "x"],
        "expectedToInclude",
        ["read", "write"],
        id="includes_all",
    ),
    pytest.param(
        lambda: PrimitiveArrayClaim("perms", no_fetch).validators.includes_any(
            ["read", "write"], MAX_AGE
        ),
        ["x", "write"],
        ["x", "delete"],
        "expectedToIncludeAtLeastOneOf",
        ["read", "write"],
        id="includes_any",
    ),
    pytest.param(
        lambda: PrimitiveArrayClaim("roles", no_fetch).validators.excludes_all(
            ["root", "banned"], MAX_AGE
        ),
        ["user", "admin"],
        ["user", "banned"],
        "expectedToNotInclude",
        ["root", "banned"],
        id="excludes_all",
    ),
    pytest.param(
        lambda: BooleanClaim("st-ev", no_fetch).validators.is_true(MAX_AGE),
        True,
        False,
        "expectedValue",
        True,
        id="is_true",
    ),
    pytest.param(
        lambda: BooleanClaim("st-ev", no_fetch).validators.is_true(MAX_AGE),
        True,
        1,
        "expectedValue",
        True,
        id="is_true-1-is-not-true",
    ),
    pytest.param(
        lambda: BooleanClaim("st-mfa", no_fetch).validators.is_false(MAX_AGE),
        False,
        True,
        "expectedValue",
        False,
        id="is_false",
    ),
]


@pytest.mark.parametrize(("make_validator", "right", "wrong", "expected_key", "expected"), KINDS)
async def test_validator_kind_in_every_state_same_on_both_sides(
    make_validator: Callable[[], ClaimValidator],
    right: Any,
    wrong: Any,
    expected_key: str,
    expected: Any,
    client: SessionClient,
    clock: ManualClock,
    rpc_counter: RpcCounter,
) -> None:
    validator = make_validator()
    key = validator.claim_key

    async def payload_of(custom: dict[str, Any]) -> dict[str, Any]:
        # A payload as the authority mints it: stored, signed, verified.
        created = await client.create_new_session(USER, custom)
        verified = await client.get_session(created.access_token)
        assert verified is not None
        return verified.access_token_payload

    # The expired value was fetched MAX_AGE + 1 seconds ago; the others just now.
    expired = await payload_of({key: entry(right, clock.ms)})
    clock.advance(MAX_AGE + 1)
    states = {
        "missing": (
            await payload_of({"unrelated": entry(right, clock.ms)}),
            {"message": "value does not exist", expected_key: expected},
            True,
        ),
        "expired": (
            expired,
            {"message": "expired", "ageInSeconds": MAX_AGE + 1, "maxAgeInSeconds": MAX_AGE},
            True,
        ),
        "wrong": (
            await payload_of({key: entry(wrong, clock.ms)}),
            {"message": "wrong value", expected_key: expected, "actualValue": wrong},
            False,
        ),
        "right": (await payload_of({key: entry(right, clock.ms)}), None, False),
    }
    for state, (payload, reason, should_refetch) in states.items():
        local = validator.validate(payload, clock.ms)
        assert local == {"is_valid": reason is None, "reason": reason}, state
        assert validator.should_refetch(payload, clock.ms) is should_refetch, state

        calls = rpc_counter.calls["ValidateClaimsInJwtPayload"]
        remote = await client.validate_claims_in_jwt_payload(USER, payload, [validator])
        assert rpc_counter.calls["ValidateClaimsInJwtPayload"] == calls + 1, state
        failures = [] if reason is None else [ClaimValidationError(validator.id, reason)]
        assert remote == failures, state

        # ValidateClaims: the fetch returns None, so nothing changes and the same holds.
        result = await client.validate_claims(USER, payload, [validator])
        assert result.invalid_claims == failures, state
        assert result.access_token_payload_update is None, state


async def test_max_age_boundary_and_default_max_age(
    client: SessionClient, clock: ManualClock
) -> None:
    claim = PrimitiveClaim[str]("level", no_fetch, default_max_age_in_seconds=30)
    payload = {"level": entry("gold", clock.ms)}
    default = claim.validators.has_value("gold")
    explicit = claim.validators.has_value("gold", max_age_in_seconds=10)
    assert default.max_age_in_seconds == 30
    clock.advance(10)  # exactly the max age: still valid (SuperTokens: t < now - maxAge)
    for validator in (default, explicit):
        assert validator.validate(payload, clock.ms) == {"is_valid": True, "reason": None}
        assert not validator.should_refetch(payload, clock.ms)
        assert await client.validate_claims_in_jwt_payload(USER, payload, [validator]) == []
    clock.advance(1)
    assert explicit.should_refetch(payload, clock.ms)
    expired = {"message": "expired", "ageInSeconds": 11, "maxAgeInSeconds": 10}
    assert await client.validate_claims_in_jwt_payload(USER, payload, [default, explicit]) == [
        ClaimValidationError("level", expired)
    ]


# --- get_session refetches what should refetch ---------------------------------------------


@pytest.mark.parametrize("verify_locally", [True, False], ids=["local", "remote"])
@pytest.mark.parametrize("registered", ["override", "client-global"])
async def test_get_session_refetches_a_claim_older_than_its_max_age(
    registered: str,
    verify_locally: bool,
    server: RunningServer,
    connect: Connect,
    clock: ManualClock,
    rpc_counter: RpcCounter,
) -> None:
    fetch = Fetch("admin")
    role = PrimitiveClaim[str]("role", fetch)
    validator = role.validators.has_value("admin", max_age_in_seconds=MAX_AGE)
    seen: list[tuple[list[Any], SessionContainer]] = []

    def override(globals_: list[Any], session: SessionContainer) -> list[Any]:
        seen.append((list(globals_), session))
        return [*globals_, validator]

    options: dict[str, Any] = {"verify_locally": verify_locally}
    if registered == "client-global":
        options["global_claim_validators"] = [validator]
    chosen_override = override if registered == "override" else None

    async with connect(server, **options) as client:
        created = await client.create_new_session(USER, await role.build(USER, {}, clock.ms))
        fetched_at = clock.ms
        assert len(fetch.calls) == 1
        assert created.access_token_payload["role"] == entry("admin", fetched_at)

        clock.advance(MAX_AGE)  # exactly the max age: fresh enough
        same = await client.get_session(
            created.access_token, override_global_claim_validators=chosen_override
        )
        assert same is not None
        assert len(fetch.calls) == 1
        assert same.access_token == created.access_token
        assert rpc_counter.calls["RegenerateAccessToken"] == 0
        if registered == "override":
            assert seen[-1][0] == []
            assert seen[-1][1].session_handle == created.session_handle

        clock.advance(1)
        renewed = await client.get_session(
            created.access_token, override_global_claim_validators=chosen_override
        )
        assert renewed is not None
        assert len(fetch.calls) == 2
        assert fetch.calls[-1][0] == USER
        assert rpc_counter.calls["RegenerateAccessToken"] == 1
        assert renewed.access_token != created.access_token
        assert renewed.access_token_payload["role"] == entry("admin", clock.ms)
        assert token_payload(renewed.access_token)["role"] == entry("admin", clock.ms)
        assert renewed.session_handle == created.session_handle

        # The new token verifies, carries the new time, and needs no refetch.
        again = await client.get_session(
            renewed.access_token, override_global_claim_validators=chosen_override
        )
        assert again is not None
        assert again.access_token == renewed.access_token
        assert again.access_token_payload["role"] == entry("admin", clock.ms)
        assert len(fetch.calls) == 2
        assert rpc_counter.calls["RegenerateAccessToken"] == 1
        # The stored payload changed too: the next refresh keeps the fresh value.
        info = await client.get_session_information(created.session_handle)
        assert info is not None
        assert info.custom_claims_in_access_token_payload["role"] == entry("admin", clock.ms)


@pytest.mark.parametrize("verify_locally", [True, False], ids=["local", "remote"])
async def test_get_session_fetches_a_missing_claim_then_validates_the_fetched_value(
    verify_locally: bool,
    server: RunningServer,
    connect: Connect,
    clock: ManualClock,
    rpc_counter: RpcCounter,
) -> None:
    fetch = AsyncFetch(["user"])  # an async fetch function
    roles = PrimitiveArrayClaim("roles", fetch)
    async with connect(server, verify_locally=verify_locally) as client:
        created = await client.create_new_session(USER, {"keep": 1})
        with pytest.raises(InvalidClaimsError) as raised:
            await client.get_session(
                created.access_token,
                override_global_claim_validators=[roles.validators.includes("admin")],
            )
        [(fetched_for, fetched_with)] = fetch.calls
        assert (fetched_for, fetched_with["keep"]) == (USER, 1)
        assert raised.value.invalid_claims == [
            ClaimValidationError(
                "roles",
                {"message": "wrong value", "expectedToInclude": "admin", "actualValue": ["user"]},
            )
        ]
        assert rpc_counter.calls["RegenerateAccessToken"] == 1

        fetch.value = None  # "do not set": nothing is stored, the claim stays missing
        other = await client.create_new_session(USER)
        with pytest.raises(InvalidClaimsError) as raised:
            await client.get_session(
                other.access_token,
                override_global_claim_validators=[roles.validators.includes("admin")],
            )
        assert raised.value.invalid_claims == [
            ClaimValidationError(
                "roles", {"message": "value does not exist", "expectedToInclude": "admin"}
            )
        ]
        assert len(fetch.calls) == 2
        assert rpc_counter.calls["RegenerateAccessToken"] == 1


# --- global validators and their override ---------------------------------------------------

AUTHORITY_GLOBALS = [
    {"claim": "st-ev", "kind": "is_true"},
    {"claim": "roles", "kind": "includes", "value": "admin", "max_age_seconds": 300, "id": "adm"},
]
ST_EV_MISSING = ClaimValidationError(
    "st-ev", {"message": "value does not exist", "expectedValue": True}
)
ADMIN_MISSING = ClaimValidationError(
    "adm", {"message": "value does not exist", "expectedToInclude": "admin"}
)


async def test_authority_globals_are_listed_and_enforced_everywhere(
    start: Start, connect: Connect, clock: ManualClock
) -> None:
    server = await start(global_claim_validators=AUTHORITY_GLOBALS)
    mine = BooleanClaim("mine", Fetch(True)).validators.is_true()
    async with (
        connect(server, global_claim_validators=[mine]) as local,
        connect(server, verify_locally=False) as remote,
    ):
        assert await local.get_global_claim_validators() == [
            ClaimValidator("st-ev", "has_value", True),
            ClaimValidator("roles", "includes", "admin", 300, "adm"),
            mine,
        ]
        assert await remote.get_global_claim_validators() == [
            ClaimValidator("st-ev", "has_value", True, None, "st-ev"),
            ClaimValidator("roles", "includes", "admin", 300, "adm"),
        ]

        bare = await local.create_new_session(USER)
        paths: dict[str, Callable[[str], Awaitable[SessionContainer | None]]] = {
            "local": local.get_session,
            "remote": remote.get_session,
            "check-database": lambda token: remote.get_session(token, check_database=True),
        }
        for name, get_session in paths.items():
            with pytest.raises(InvalidClaimsError) as raised:
                await get_session(bare.access_token)
            assert raised.value.invalid_claims == [ST_EV_MISSING, ADMIN_MISSING], name

        good = await local.create_new_session(
            USER, {"st-ev": entry(True, clock.ms), "roles": entry(["admin"], clock.ms)}
        )
        for name, get_session in paths.items():
            verified = await get_session(good.access_token)
            assert verified is not None, name
            assert verified.session_handle == good.session_handle, name

        # The authority's globals are not refetchable: past their max age they fail.
        clock.advance(301)
        with pytest.raises(InvalidClaimsError) as raised:
            await remote.get_session(good.access_token)
        assert raised.value.invalid_claims == [
            ClaimValidationError(
                "adm", {"message": "expired", "ageInSeconds": 301, "maxAgeInSeconds": 300}
            )
        ]


async def test_raw_get_session_without_override_runs_the_authority_globals(
    start: Start, connect: Connect, clock: ManualClock
) -> None:
    server = await start(global_claim_validators=AUTHORITY_GLOBALS)
    async with connect(server) as client, raw_stub(server) as stub:
        bare = await client.create_new_session(USER)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.GetSession(pb.GetSessionRequest(access_token=bare.access_token))
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
        error = error_from_rpc_error(raised.value)
        assert isinstance(error, InvalidClaimsError)
        assert error.invalid_claims == [ST_EV_MISSING, ADMIN_MISSING]

        # A present (even empty) override replaces the globals.
        response = await stub.GetSession(
            pb.GetSessionRequest(
                access_token=bare.access_token,
                override_global_claim_validators=pb.ClaimValidatorList(),
            )
        )
        assert response.session.session_handle == bare.session_handle
        extra = PrimitiveClaim("level", no_fetch).validators.has_value(3)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.GetSession(
                pb.GetSessionRequest(
                    access_token=bare.access_token,
                    override_global_claim_validators=pb.ClaimValidatorList(
                        validators=[to_wire(extra)]
                    ),
                )
            )
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
        error = error_from_rpc_error(raised.value)
        assert isinstance(error, InvalidClaimsError)
        assert error.invalid_claims == [
            ClaimValidationError("level", {"message": "value does not exist", "expectedValue": 3})
        ]

        good = await client.create_new_session(
            USER, {"st-ev": entry(True, clock.ms), "roles": entry(["x", "admin"], clock.ms)}
        )
        response = await stub.GetSession(pb.GetSessionRequest(access_token=good.access_token))
        assert response.session.session_handle == good.session_handle


@pytest.mark.parametrize("verify_locally", [True, False], ids=["local", "remote"])
async def test_override_replaces_or_extends_the_globals(
    verify_locally: bool, start: Start, connect: Connect, clock: ManualClock
) -> None:
    server = await start(global_claim_validators=[{"claim": "st-ev", "kind": "is_true"}])
    fetch = Fetch(["user"])
    roles = PrimitiveArrayClaim("roles", fetch)
    extra = roles.validators.includes("admin")
    wrong_role = ClaimValidationError(
        "roles", {"message": "wrong value", "expectedToInclude": "admin", "actualValue": ["user"]}
    )
    async with connect(server, verify_locally=verify_locally) as client:
        session = await client.create_new_session(USER)
        with pytest.raises(InvalidClaimsError) as raised:
            await client.get_session(session.access_token)
        assert raised.value.invalid_claims == [ST_EV_MISSING]

        # Replacing: [] skips the authority's failing global.
        received: list[list[Any]] = []

        def replace(globals_: list[Any], container: SessionContainer) -> list[Any]:
            received.append(list(globals_))
            assert container.user_id == USER
            return []

        verified = await client.get_session(
            session.access_token, override_global_claim_validators=replace
        )
        assert verified is not None
        assert verified.session_handle == session.session_handle
        assert received == [[ClaimValidator("st-ev", "has_value", True)]]
        # A plain list replaces as well.
        assert await client.get_session(session.access_token, override_global_claim_validators=[])
        assert fetch.calls == []

        # Extending: the globals and one more; every failure is listed, in order.
        async def extend(globals_: list[Any], container: SessionContainer) -> list[Any]:
            return [*globals_, extra]

        with pytest.raises(InvalidClaimsError) as raised:
            await client.get_session(session.access_token, override_global_claim_validators=extend)
        assert raised.value.invalid_claims == [ST_EV_MISSING, wrong_role]
        assert len(fetch.calls) == 1  # the missing roles claim was fetched

        with pytest.raises(InvalidClaimsError) as raised:
            await client.get_session(
                session.access_token, override_global_claim_validators=lambda g, s: [extra, *g]
            )
        assert raised.value.invalid_claims == [wrong_role, ST_EV_MISSING]


async def test_override_also_replaces_the_client_globals(
    server: RunningServer, connect: Connect
) -> None:
    failing = BooleanClaim("st-ev", no_fetch).validators.is_true()
    async with connect(server, global_claim_validators=[failing]) as client:
        assert await client.get_global_claim_validators() == [failing]
        session = await client.create_new_session(USER)
        with pytest.raises(InvalidClaimsError) as raised:
            await client.get_session(session.access_token)
        assert raised.value.invalid_claims == [ST_EV_MISSING]
        verified = await client.get_session(
            session.access_token, override_global_claim_validators=lambda g, s: []
        )
        assert verified is not None


# --- INVALID_CLAIMS with every reason, from both paths ---------------------------------------

FAILING_GLOBALS: list[dict[str, Any]] = [
    {"claim": "st-ev", "kind": "is_true"},
    {"claim": "roles", "kind": "includes", "value": "admin"},
    {"claim": "level", "kind": "has_value", "value": 3, "max_age_seconds": 10, "id": "lvl"},
    {"claim": "roles", "kind": "excludes", "value": "user", "id": "not-user"},  # fails
    {"claim": "plan", "kind": "has_value", "value": "pro"},  # passes
    {"claim": "perms", "kind": "includes_any", "value": ["a", "b"]},
]
ALL_FAILURES = [
    ClaimValidationError("st-ev", {"message": "value does not exist", "expectedValue": True}),
    ClaimValidationError(
        "roles", {"message": "wrong value", "expectedToInclude": "admin", "actualValue": ["user"]}
    ),
    ClaimValidationError("lvl", {"message": "expired", "ageInSeconds": 30, "maxAgeInSeconds": 10}),
    ClaimValidationError(
        "not-user",
        {"message": "wrong value", "expectedToNotInclude": "user", "actualValue": ["user"]},
    ),
    ClaimValidationError(
        "perms",
        {"message": "value does not exist", "expectedToIncludeAtLeastOneOf": ["a", "b"]},
    ),
]


async def test_invalid_claims_round_trip_lists_every_failure_in_order(
    start: Start, connect: Connect, clock: ManualClock
) -> None:
    server = await start(global_claim_validators=FAILING_GLOBALS)
    async with (
        connect(server) as local,
        connect(server, verify_locally=False) as remote,
        raw_stub(server) as stub,
    ):
        session = await local.create_new_session(
            USER,
            {
                "roles": entry(["user"], clock.ms),
                "level": entry(3, clock.ms),
                "plan": entry("pro", clock.ms),
            },
        )
        clock.advance(30)

        for client in (local, remote):
            with pytest.raises(InvalidClaimsError) as raised:
                await client.get_session(session.access_token)
            assert raised.value.invalid_claims == ALL_FAILURES
            assert raised.value.reason == "INVALID_CLAIMS"

        # The authority's own verdict, decoded by the SDK's error table.
        with pytest.raises(grpc.aio.AioRpcError) as rpc_error:
            await stub.GetSession(pb.GetSessionRequest(access_token=session.access_token))
        assert rpc_error.value.code() == grpc.StatusCode.PERMISSION_DENIED
        decoded = error_from_rpc_error(rpc_error.value)
        assert isinstance(decoded, InvalidClaimsError)
        assert decoded.invalid_claims == ALL_FAILURES

        # The same validators sent as an override list give the same answer.
        validators = [ClaimValidator.from_spec(spec) for spec in FAILING_GLOBALS]
        with pytest.raises(grpc.aio.AioRpcError) as rpc_error:
            await stub.GetSession(
                pb.GetSessionRequest(
                    access_token=session.access_token,
                    override_global_claim_validators=pb.ClaimValidatorList(
                        validators=[to_wire(v) for v in validators]
                    ),
                )
            )
        decoded = error_from_rpc_error(rpc_error.value)
        assert isinstance(decoded, InvalidClaimsError)
        assert decoded.invalid_claims == ALL_FAILURES

        payload = token_payload(session.access_token)
        assert await remote.validate_claims_in_jwt_payload(USER, payload, validators) == (
            ALL_FAILURES
        )


# --- the claim functions by session handle ---------------------------------------------------


@pytest.mark.parametrize("gone", ["revoked", "expired", "never-existed"])
async def test_claim_functions_on_a_session_that_does_not_exist(
    gone: str, client: SessionClient, clock: ManualClock
) -> None:
    fetch = Fetch("admin")
    role = PrimitiveClaim[str]("role", fetch)
    session = await client.create_new_session(USER, {"role": entry("user", clock.ms)})
    handle = session.session_handle
    if gone == "revoked":
        assert await client.revoke_session(handle)
    elif gone == "expired":
        clock.advance(100 * 24 * 3600 + 1)  # past the refresh-token validity
    else:
        handle = str(uuid.uuid4())

    assert await client.fetch_and_set_claim(handle, role) is False
    assert fetch.calls == []  # no session: nothing to fetch for
    assert await client.set_claim_value(handle, role, "admin") is False
    assert await client.remove_claim(handle, role) is False
    value = await client.get_claim_value(handle, role)
    assert value.status == "SESSION_DOES_NOT_EXIST_ERROR"
    assert value.value is None
    assert await client.get_session_information(handle) is None  # nothing was recreated


async def test_claim_functions_on_a_live_session(client: SessionClient, clock: ManualClock) -> None:
    fetch = Fetch(["admin", "user"])
    roles = PrimitiveArrayClaim("roles", fetch)
    session = await client.create_new_session(USER, {"keep": {"nested": [1, 2]}})
    handle = session.session_handle

    async def stored() -> dict[str, Any]:
        info = await client.get_session_information(handle)
        assert info is not None
        return info.custom_claims_in_access_token_payload

    unset = await client.get_claim_value(handle, roles)
    assert (unset.status, unset.value) == ("OK", None)

    # fetch_and_set_claim runs the fetch with the user id and the custom claims.
    assert await client.fetch_and_set_claim(handle, roles) is True
    assert fetch.calls == [(USER, {"keep": {"nested": [1, 2]}})]
    got = await client.get_claim_value(handle, roles)
    assert (got.status, got.value) == ("OK", ["admin", "user"])
    assert await stored() == {
        "keep": {"nested": [1, 2]},
        "roles": entry(["admin", "user"], clock.ms),
    }

    clock.advance(5)
    assert await client.set_claim_value(handle, roles, ["viewer"]) is True
    got = await client.get_claim_value(handle, roles)
    assert (got.status, got.value) == ("OK", ["viewer"])
    assert (await stored())["roles"] == entry(["viewer"], clock.ms)

    # Live access tokens see the stored value at their next refresh.
    assert session.refresh_token is not None
    refreshed = await client.refresh_session(session.refresh_token)
    assert refreshed.access_token_payload["roles"] == entry(["viewer"], clock.ms)
    assert refreshed.access_token_payload["keep"] == {"nested": [1, 2]}

    assert await client.remove_claim(handle, roles) is True
    got = await client.get_claim_value(handle, roles)
    assert (got.status, got.value) == ("OK", None)
    assert await stored() == {"keep": {"nested": [1, 2]}}

    # A fetch returning None sets nothing, yet the session exists: True.
    fetch.value = None
    assert await client.fetch_and_set_claim(handle, roles) is True
    assert len(fetch.calls) == 2
    assert await stored() == {"keep": {"nested": [1, 2]}}
    assert (await client.get_claim_value(handle, roles)).value is None


# --- SessionContainer methods ----------------------------------------------------------------


async def test_container_claim_methods_remint_the_access_token_at_once(
    client: SessionClient, clock: ManualClock, rpc_counter: RpcCounter
) -> None:
    ev_fetch = Fetch(True)
    email_verified = BooleanClaim("st-ev", ev_fetch)
    roles = PrimitiveArrayClaim("roles", Fetch(["admin"]))
    session = await client.create_new_session(USER, {"keep": 1})
    expiry = session.access_token_expiry
    seen_tokens = {session.access_token}

    async def assert_new_token(key: str, expected: Any) -> None:
        assert session.access_token not in seen_tokens
        seen_tokens.add(session.access_token)
        assert session.access_token_expiry == expiry
        for payload in (session.access_token_payload, token_payload(session.access_token)):
            assert payload.get(key) == expected
            assert payload["keep"] == 1
        verified = await client.get_session(session.access_token)
        assert verified is not None
        assert verified.access_token_payload.get(key) == expected

    await session.fetch_and_set_claim(email_verified)
    [(fetched_for, fetched_with)] = ev_fetch.calls
    assert fetched_for == USER
    assert fetched_with["keep"] == 1
    assert fetched_with["sessionHandle"] == session.session_handle
    await assert_new_token("st-ev", entry(True, clock.ms))
    assert session.get_claim_value(email_verified) is True
    assert (await client.get_claim_value(session.session_handle, email_verified)).value is True

    clock.advance(1)
    await session.set_claim_value(roles, ["viewer"])
    await assert_new_token("roles", entry(["viewer"], clock.ms))
    assert session.get_claim_value(roles) == ["viewer"]
    assert session.access_token_payload["st-ev"] == entry(True, clock.ms - 1000)
    assert (await client.get_claim_value(session.session_handle, roles)).value == ["viewer"]

    await session.remove_claim(email_verified)
    await assert_new_token("st-ev", None)
    assert session.get_claim_value(email_verified) is None
    assert (await client.get_claim_value(session.session_handle, email_verified)).value is None

    # assert_claims refetches the missing claim and re-mints at once.
    await session.assert_claims([email_verified.validators.is_true()])
    assert len(ev_fetch.calls) == 2
    await assert_new_token("st-ev", entry(True, clock.ms))

    # Nothing to refetch: the token stays, no RPC.
    token, regenerations = session.access_token, rpc_counter.calls["RegenerateAccessToken"]
    await session.assert_claims([roles.validators.includes("viewer")])
    assert session.access_token == token
    assert rpc_counter.calls["RegenerateAccessToken"] == regenerations

    with pytest.raises(InvalidClaimsError) as raised:
        await session.assert_claims(
            [
                roles.validators.includes("admin"),
                roles.validators.excludes("nobody"),
                email_verified.validators.is_false(),
            ]
        )
    assert raised.value.invalid_claims == [
        ClaimValidationError(
            "roles",
            {"message": "wrong value", "expectedToInclude": "admin", "actualValue": ["viewer"]},
        ),
        ClaimValidationError(
            "st-ev", {"message": "wrong value", "expectedValue": False, "actualValue": True}
        ),
    ]
    assert session.access_token == token

    # A fetch returning None changes nothing.
    ev_fetch.value = None
    await session.fetch_and_set_claim(email_verified)
    assert session.access_token == token


async def test_container_claim_methods_on_a_revoked_session(
    client: SessionClient, clock: ManualClock
) -> None:
    claim = BooleanClaim("st-ev", Fetch(True))
    session = await client.create_new_session(USER)
    assert await session.revoke_session()
    with pytest.raises(UnauthorisedError):
        await session.set_claim_value(claim, True)
    with pytest.raises(UnauthorisedError):
        await session.fetch_and_set_claim(claim)
    with pytest.raises(UnauthorisedError):
        await session.remove_claim(claim)


# --- validate_claims, validate_claims_in_jwt_payload and custom validators -------------------


async def test_validate_claims_reports_the_payload_update_of_a_refetch(
    client: SessionClient, clock: ManualClock, rpc_counter: RpcCounter
) -> None:
    fetch = Fetch(["admin"])
    roles = PrimitiveArrayClaim("roles", fetch, default_max_age_in_seconds=300)
    validators = [roles.validators.includes("admin")]

    result = await client.validate_claims(USER, {"other": 1}, validators)
    assert result.access_token_payload_update == {"roles": entry(["admin"], clock.ms)}
    assert result.invalid_claims == []
    assert fetch.calls == [(USER, {"other": 1})]
    assert rpc_counter.calls["ValidateClaims"] == 1

    fresh = {"other": 1, "roles": entry(["admin"], clock.ms)}
    result = await client.validate_claims(USER, fresh, validators)
    assert result.access_token_payload_update is None
    assert result.invalid_claims == []
    assert len(fetch.calls) == 1

    clock.advance(301)  # past the claim's default max age
    fetch.value = ["user"]
    result = await client.validate_claims(USER, fresh, validators)
    assert result.access_token_payload_update == {"roles": entry(["user"], clock.ms)}
    assert result.invalid_claims == [
        ClaimValidationError(
            "roles",
            {"message": "wrong value", "expectedToInclude": "admin", "actualValue": ["user"]},
        )
    ]
    assert len(fetch.calls) == 2
    assert fresh == {"other": 1, "roles": entry(["admin"], clock.ms - 301_000)}  # not mutated

    # validate_claims_in_jwt_payload never refetches.
    assert await client.validate_claims_in_jwt_payload(USER, fresh, validators) == [
        ClaimValidationError(
            "roles", {"message": "expired", "ageInSeconds": 301, "maxAgeInSeconds": 300}
        )
    ]
    assert await client.validate_claims_in_jwt_payload(USER, {}, validators) == [
        ClaimValidationError(
            "roles", {"message": "value does not exist", "expectedToInclude": "admin"}
        )
    ]
    assert len(fetch.calls) == 2


def _mixed_validators(
    shared_id: bool,
) -> tuple[list[Any], list[ClaimValidationError], list[Custom]]:
    """Built-in and custom validators interleaved. With ``shared_id`` two built-ins
    keep the default id "roles" (both validate the roles claim, as is usual in
    SuperTokens) and only the second of them fails."""
    roles = PrimitiveArrayClaim("roles", no_fetch)
    level = PrimitiveClaim[int]("level", no_fetch)
    sync_fail = Custom("custom-sync", {"message": "sync says no", "n": 1})
    async_fail = AsyncCustom("custom-async", {"message": "async says no"})
    passes = AsyncCustom("custom-ok", None)
    validators = [
        level.validators.has_value(3),  # fails: wrong value
        roles.validators.includes("user", id=None if shared_id else "has-user"),  # passes
        sync_fail,
        roles.validators.excludes("banned"),  # fails
        passes,
        async_fail,
        level.validators.has_value(2, id="level-2"),  # passes
        BooleanClaim("st-ev", no_fetch).validators.is_true(),  # fails: missing
    ]
    failures = [
        ClaimValidationError(
            "level", {"message": "wrong value", "expectedValue": 3, "actualValue": 2}
        ),
        ClaimValidationError("custom-sync", {"message": "sync says no", "n": 1}),
        ClaimValidationError(
            "roles",
            {
                "message": "wrong value",
                "expectedToNotInclude": "banned",
                "actualValue": ["user", "banned"],
            },
        ),
        ClaimValidationError("custom-async", {"message": "async says no"}),
        ClaimValidationError("st-ev", {"message": "value does not exist", "expectedValue": True}),
    ]
    return validators, failures, [sync_fail, async_fail, passes]


@pytest.mark.parametrize("shared_id", [False, True], ids=["distinct-ids", "shared-id"])
@pytest.mark.parametrize(
    "via", ["validate_claims", "validate_claims_in_jwt_payload", "get_session", "assert_claims"]
)
async def test_custom_validators_mixed_with_built_ins_keep_the_order_of_failures(
    via: str, shared_id: bool, client: SessionClient, clock: ManualClock
) -> None:
    custom_claims = {"level": entry(2, clock.ms), "roles": entry(["user", "banned"], clock.ms)}
    session = await client.create_new_session(USER, custom_claims)
    payload = session.access_token_payload
    validators, failures, customs = _mixed_validators(shared_id)

    if via == "validate_claims":
        result = await client.validate_claims(USER, payload, validators)
        assert result.access_token_payload_update is None  # st-ev's fetch returns None
        found = result.invalid_claims
    elif via == "validate_claims_in_jwt_payload":
        found = await client.validate_claims_in_jwt_payload(USER, payload, validators)
    else:
        with pytest.raises(InvalidClaimsError) as raised:
            if via == "get_session":
                await client.get_session(
                    session.access_token, override_global_claim_validators=validators
                )
            else:
                await session.assert_claims(validators)
        found = raised.value.invalid_claims

    assert found == failures
    for custom in customs:  # each custom validator ran once, on the payload, at "now"
        assert custom.seen == [(payload, clock.ms)]


async def test_a_passing_custom_validator_lets_get_session_through(
    client: SessionClient, clock: ManualClock
) -> None:
    session = await client.create_new_session(USER, {"plan": "pro"})
    allowed = AsyncCustom("plan-check", None)
    verified = await client.get_session(
        session.access_token, override_global_claim_validators=lambda g, s: [*g, allowed]
    )
    assert verified is not None
    assert allowed.seen[0][0]["plan"] == "pro"
    assert allowed.seen[0][1] == clock.ms


# --- protected keys ----------------------------------------------------------------------------


@pytest.mark.parametrize("key", PROTECTED)
def test_protected_keys_cannot_be_claim_keys(
    key: str, make_settings: Callable[..., Settings]
) -> None:
    for claim_class in (PrimitiveClaim, PrimitiveArrayClaim, BooleanClaim, SessionClaim):
        with pytest.raises(InvalidArgumentError):
            claim_class(key, no_fetch)
    with pytest.raises(InvalidArgumentError):
        ClaimValidator(key, "has_value", True)
    with pytest.raises(ConfigError):
        make_settings(global_claim_validators=[{"claim": key, "kind": "is_true"}])


RAW_PROTECTED = {
    "SetClaimValue-exp": lambda h: (
        "SetClaimValue",
        pb.SetClaimValueRequest(session_handle=h, claim_key="exp", value=json_value("1")),
    ),
    "SetClaimValue-sub": lambda h: (
        "SetClaimValue",
        pb.SetClaimValueRequest(session_handle=h, claim_key="sub", value=json_value('{"v":"x"}')),
    ),
    "SetClaimValue-empty": lambda h: (
        "SetClaimValue",
        pb.SetClaimValueRequest(session_handle=h, claim_key="", value=json_value("1")),
    ),
    "GetClaimValue-sessionHandle": lambda h: (
        "GetClaimValue",
        pb.GetClaimValueRequest(session_handle=h, claim_key="sessionHandle"),
    ),
    "RemoveClaim-exp": lambda h: (
        "RemoveClaim",
        pb.RemoveClaimRequest(session_handle=h, claim_key="exp"),
    ),
    "ValidateClaimsInJwtPayload-sub": lambda h: (
        "ValidateClaimsInJwtPayload",
        pb.ValidateClaimsInJwtPayloadRequest(
            jwt_payload=struct_pb2.Struct(),
            claim_validators=[
                pb.ClaimValidator(
                    claim_key="sub",
                    kind=pb.CLAIM_VALIDATOR_KIND_HAS_VALUE,
                    value=json_value('"x"'),
                )
            ],
        ),
    ),
}


@pytest.mark.parametrize("make_request", RAW_PROTECTED.values(), ids=RAW_PROTECTED.keys())
async def test_raw_claim_rpcs_with_a_protected_key_are_invalid_argument(
    make_request: Callable[[str], tuple[str, Any]],
    server: RunningServer,
    client: SessionClient,
    clock: ManualClock,
) -> None:
    session = await client.create_new_session(USER, {"role": entry("user", clock.ms)})
    method, request = make_request(session.session_handle)
    async with raw_stub(server) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await getattr(stub, method)(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert isinstance(error_from_rpc_error(raised.value), InvalidArgumentError)
    # Nothing changed: the token still verifies and the stored payload is intact.
    verified = await client.get_session(session.access_token, check_database=True)
    assert verified is not None
    assert verified.access_token_payload["exp"] == session.access_token_payload["exp"]
    assert verified.access_token_payload["sub"] == USER
    info_after = await client.get_session_information(session.session_handle)
    assert info_after is not None
    assert info_after.custom_claims_in_access_token_payload == {"role": entry("user", clock.ms)}


async def test_too_many_validators_in_one_call_are_refused(client: SessionClient) -> None:
    flag = BooleanClaim("flag", lambda user_id, payload: True)
    too_many = [flag.validators.is_true(id=f"v{i}") for i in range(65)]
    with pytest.raises(InvalidArgumentError) as raised:
        await client.validate_claims_in_jwt_payload("user-1", {}, too_many)
    assert raised.value.field == "claim_validators"
    assert await client.validate_claims_in_jwt_payload("user-1", {}, too_many[:64])
