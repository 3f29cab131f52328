"""Errors round-trip: what the authority raises is what the client raises.

Each scenario triggers one domain error through the real server twice: once through
SessionClient (same class, same attributes) and once through the raw generated stub
(status code per the DESIGN table, one ErrorInfo with our domain, reason and
metadata, plus the standard detail that fits: google.rpc.BadRequest for
INVALID_ARGUMENT, google.rpc.RetryInfo for STORAGE_UNAVAILABLE, our InvalidClaims for
INVALID_CLAIMS). Neither ever carries a token or a hash of one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, json_format, struct_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from session_authority import (
    ApiKeyInvalidError,
    AuthorityUnreachableError,
    InternalServerError,
    InvalidArgumentError,
    InvalidClaimsError,
    SessionClient,
    SessionError,
    StorageUnavailableError,
    TokenTheftDetectedError,
    TryRefreshTokenError,
    UnauthorisedError,
)
from session_authority.errors import (
    ERROR_DOMAIN,
    ERROR_TABLE,
    ClaimValidationError,
    error_from_wire,
    status_code_for,
)
from session_authority.v1 import session_service_pb2 as pb
from session_authority.v1 import session_service_pb2_grpc as pb_grpc
from session_authority.wire import (
    MAX_INVALID_CLAIMS_DETAIL_BYTES,
    error_from_rpc_error,
    rich_status,
)
from session_authority_server.app import RunningServer

from .conftest import ManualClock

DOMAIN = "session-authority"

# The DESIGN table, written out independently of ERROR_TABLE.
DESIGN_CODES: dict[type[SessionError], grpc.StatusCode] = {
    UnauthorisedError: grpc.StatusCode.UNAUTHENTICATED,
    TryRefreshTokenError: grpc.StatusCode.UNAUTHENTICATED,
    TokenTheftDetectedError: grpc.StatusCode.PERMISSION_DENIED,
    InvalidClaimsError: grpc.StatusCode.PERMISSION_DENIED,
    InvalidArgumentError: grpc.StatusCode.INVALID_ARGUMENT,
    ApiKeyInvalidError: grpc.StatusCode.UNAUTHENTICATED,
    StorageUnavailableError: grpc.StatusCode.UNAVAILABLE,
    InternalServerError: grpc.StatusCode.INTERNAL,
    # Beyond the DESIGN table: sent by services protected by session_authority.grpc.
    AuthorityUnreachableError: grpc.StatusCode.UNAVAILABLE,
}
DESIGN_REASONS: dict[type[SessionError], str] = {
    UnauthorisedError: "UNAUTHORISED",
    TryRefreshTokenError: "TRY_REFRESH_TOKEN",
    TokenTheftDetectedError: "TOKEN_THEFT_DETECTED",
    InvalidClaimsError: "INVALID_CLAIMS",
    InvalidArgumentError: "INVALID_ARGUMENT",
    ApiKeyInvalidError: "API_KEY_INVALID",
    StorageUnavailableError: "STORAGE_UNAVAILABLE",
    InternalServerError: "INTERNAL",
    AuthorityUnreachableError: "UNREACHABLE",
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def secret_forms(token: str) -> list[str]:
    """The token and the hashes of it that must never leave the authority in an error."""
    forms = [token, hashlib.sha256(token.encode()).hexdigest()]
    if token.count(".") == 2:
        # An access token: its signature alone identifies it too.
        forms.append(token.rsplit(".", 1)[1])
    elif len(token) == 110:
        raw = unb64url(token)  # a refresh token: version, flags, handle, secret, MAC
        if len(raw) == 82:
            secret = raw[18:50]
            digest = hashlib.sha256(secret).digest()
            forms += [b64url(secret), secret.hex(), digest.hex(), b64url(digest)]
    return forms


def assert_no_secret(texts: list[str], tokens: list[str]) -> None:
    for token in tokens:
        for form in secret_forms(token):
            for text in texts:
                assert form not in text, "a token (or a hash of one) leaked into an error"


# --- scenarios ---------------------------------------------------------------------------


@dataclass
class Ctx:
    client: SessionClient
    remote: SessionClient  # verify_locally=False: get_session always asks the authority
    clock: ManualClock


@dataclass
class Case:
    """One triggered error: how to provoke it, and what must come back."""

    call: Callable[[], Awaitable[Any]]  # through SessionClient
    method: str  # the same through the raw stub
    request: Any
    error: type[SessionError]
    attrs: dict[str, Any]  # exception attributes
    metadata: dict[str, str]  # ErrorInfo metadata
    tokens: list[str] = field(default_factory=list)  # presented or issued: never echoed


def text(value: str) -> struct_pb2.Value:
    return struct_pb2.Value(string_value=value)


async def _new(ctx: Ctx, user_id: str = "user-e") -> tuple[str, str, str]:
    session = await ctx.client.create_new_session(user_id, {"role": "r"}, {"d": 1})
    assert session.refresh_token is not None
    return session.session_handle, session.access_token, session.refresh_token


async def refresh_revoked_session(ctx: Ctx) -> Case:
    handle, access, refresh = await _new(ctx)
    assert await ctx.client.revoke_session(handle)
    return Case(
        lambda: ctx.client.refresh_session(refresh),
        "RefreshSession",
        pb.RefreshSessionRequest(refresh_token=refresh),
        UnauthorisedError,
        {"clear_tokens": True},
        {"clearTokens": "true"},
        [access, refresh],
    )


async def refresh_expired_session(ctx: Ctx) -> Case:
    _, access, refresh = await _new(ctx)
    ctx.clock.advance(8_640_000 + 1)  # past the (sliding) session validity
    return Case(
        lambda: ctx.client.refresh_session(refresh),
        "RefreshSession",
        pb.RefreshSessionRequest(refresh_token=refresh),
        UnauthorisedError,
        {"clear_tokens": True},
        {"clearTokens": "true"},
        [access, refresh],
    )


async def refresh_forged_token(ctx: Ctx) -> Case:
    _, access, refresh = await _new(ctx)
    forged = ("B" if refresh[40] == "A" else "A").join((refresh[:40], refresh[41:]))
    return Case(
        lambda: ctx.client.refresh_session(forged),
        "RefreshSession",
        pb.RefreshSessionRequest(refresh_token=forged),
        UnauthorisedError,
        {"clear_tokens": True},
        {"clearTokens": "true"},
        [access, refresh, forged],
    )


async def get_session_of_revoked_session(ctx: Ctx) -> Case:
    handle, access, refresh = await _new(ctx)
    assert await ctx.client.revoke_session(handle)
    return Case(
        lambda: ctx.client.get_session(access, check_database=True),
        "GetSession",
        pb.GetSessionRequest(access_token=access, check_database=True),
        UnauthorisedError,
        {"clear_tokens": True},
        {"clearTokens": "true"},
        [access, refresh],
    )


async def get_session_garbled_token(ctx: Ctx) -> Case:
    _, access, refresh = await _new(ctx)
    garbled = access[: len(access) // 2]
    return Case(
        lambda: ctx.remote.get_session(garbled),
        "GetSession",
        pb.GetSessionRequest(access_token=garbled),
        UnauthorisedError,
        {"clear_tokens": False},
        {"clearTokens": "false"},
        [access, refresh, garbled],
    )


async def get_session_empty_token(ctx: Ctx) -> Case:
    return Case(
        lambda: ctx.remote.get_session(""),
        "GetSession",
        pb.GetSessionRequest(access_token="", check_database=True),
        UnauthorisedError,
        {"clear_tokens": False},
        {"clearTokens": "false"},
    )


async def get_session_expired_token(ctx: Ctx) -> Case:
    _, access, refresh = await _new(ctx)
    ctx.clock.advance(3601)
    return Case(
        lambda: ctx.remote.get_session(access),
        "GetSession",
        pb.GetSessionRequest(access_token=access),
        TryRefreshTokenError,
        {},
        {},
        [access, refresh],
    )


async def get_session_bad_signature(ctx: Ctx) -> Case:
    _, access, refresh = await _new(ctx)
    header, payload, signature = access.split(".")
    claims = json.loads(unb64url(payload)) | {"role": "admin"}
    forged = f"{header}.{b64url(json.dumps(claims).encode())}.{signature}"
    return Case(
        lambda: ctx.client.get_session(forged, check_database=True),
        "GetSession",
        pb.GetSessionRequest(access_token=forged, check_database=True),
        TryRefreshTokenError,
        {},
        {},
        [access, refresh, forged],
    )


async def refresh_ancestor_token(ctx: Ctx) -> Case:
    handle, access, refresh = await _new(ctx, "user-theft")
    first = await ctx.client.refresh_session(refresh)
    assert first.refresh_token is not None
    second = await ctx.client.refresh_session(first.refresh_token)
    assert second.refresh_token is not None
    return Case(
        lambda: ctx.client.refresh_session(refresh),
        "RefreshSession",
        pb.RefreshSessionRequest(refresh_token=refresh),
        TokenTheftDetectedError,
        {"session_handle": handle, "user_id": "user-theft"},
        {"sessionHandle": handle, "userId": "user-theft"},
        [access, refresh, first.access_token, first.refresh_token, second.refresh_token],
    )


async def refresh_previous_token_after_grace(ctx: Ctx) -> Case:
    handle, access, refresh = await _new(ctx, "user-späť 🙂")
    first = await ctx.client.refresh_session(refresh)
    assert first.refresh_token is not None
    ctx.clock.advance(31)
    return Case(
        lambda: ctx.client.refresh_session(refresh),
        "RefreshSession",
        pb.RefreshSessionRequest(refresh_token=refresh),
        TokenTheftDetectedError,
        {"session_handle": handle, "user_id": "user-späť 🙂"},
        {"sessionHandle": handle, "userId": "user-späť 🙂"},
        [access, refresh, first.access_token, first.refresh_token],
    )


async def create_with_protected_claim(ctx: Ctx) -> Case:
    return Case(
        lambda: ctx.client.create_new_session("user-e", {"sub": "someone-else"}),
        "CreateNewSession",
        pb.CreateNewSessionRequest(
            user_id="user-e", access_token_payload=struct_pb2.Struct(fields={"sub": text("x")})
        ),
        InvalidArgumentError,
        {"field": "access_token_payload"},
        {"field": "access_token_payload"},
    )


async def create_with_empty_user_id(ctx: Ctx) -> Case:
    return Case(
        lambda: ctx.client.create_new_session(""),
        "CreateNewSession",
        pb.CreateNewSessionRequest(user_id=""),
        InvalidArgumentError,
        {"field": "user_id"},
        {"field": "user_id"},
    )


async def regenerate_with_protected_claim(ctx: Ctx) -> Case:
    _, access, refresh = await _new(ctx)
    return Case(
        lambda: ctx.client.regenerate_access_token(access, {"sessionHandle": "h"}),
        "RegenerateAccessToken",
        pb.RegenerateAccessTokenRequest(
            access_token=access,
            new_access_token_payload=struct_pb2.Struct(
                fields={"exp": struct_pb2.Value(number_value=1)}
            ),
        ),
        InvalidArgumentError,
        {"field": "new_access_token_payload"},
        {"field": "new_access_token_payload"},
        [access, refresh],
    )


async def merge_with_protected_claim(ctx: Ctx) -> Case:
    handle, access, refresh = await _new(ctx)
    return Case(
        lambda: ctx.client.merge_into_access_token_payload(handle, {"antiCsrfToken": "t"}),
        "MergeIntoAccessTokenPayload",
        pb.MergeIntoAccessTokenPayloadRequest(
            session_handle=handle,
            access_token_payload_update=struct_pb2.Struct(fields={"tId": text("t")}),
        ),
        InvalidArgumentError,
        {"field": "access_token_payload_update"},
        {"field": "access_token_payload_update"},
        [access, refresh],
    )


SCENARIOS: list[Callable[[Ctx], Awaitable[Case]]] = [
    refresh_revoked_session,
    refresh_expired_session,
    refresh_forged_token,
    get_session_of_revoked_session,
    get_session_garbled_token,
    get_session_empty_token,
    get_session_expired_token,
    get_session_bad_signature,
    refresh_ancestor_token,
    refresh_previous_token_after_grace,
    create_with_protected_claim,
    create_with_empty_user_id,
    regenerate_with_protected_claim,
    merge_with_protected_claim,
]


@pytest.fixture
async def ctx(
    client: SessionClient,
    server: RunningServer,
    connect: Callable[..., SessionClient],
    clock: ManualClock,
) -> AsyncIterator[Ctx]:
    async with connect(server, verify_locally=False) as remote:
        yield Ctx(client, remote, clock)


@pytest.fixture
async def stub(server: RunningServer) -> AsyncIterator[pb_grpc.SessionServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.SessionServiceStub(channel)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
async def test_error_round_trip(
    scenario: Callable[[Ctx], Awaitable[Case]],
    ctx: Ctx,
    stub: pb_grpc.SessionServiceStub,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The scenario runs twice (each run sets up its own session): once through the
    client, once through the raw stub."""
    caplog.set_level(logging.INFO)

    # Through SessionClient: the class and attributes the server raised.
    case = await scenario(ctx)
    with pytest.raises(SessionError) as raised:
        await case.call()
    error = raised.value
    assert type(error) is case.error
    for name, value in case.attrs.items():
        assert getattr(error, name) == value, name
    if case.error is InvalidArgumentError:
        assert isinstance(error, ValueError)
    texts = [str(error), repr(error), error.message, *map(str, vars(error).values())]
    assert_no_secret(texts, case.tokens)

    # Through the raw stub: status code, one ErrorInfo, reason and metadata.
    case = await scenario(ctx)
    with pytest.raises(grpc.aio.AioRpcError) as raised_rpc:
        await getattr(stub, case.method)(case.request)
    rpc_error = raised_rpc.value
    assert rpc_error.code() == DESIGN_CODES[case.error]
    status = rpc_status.from_call(rpc_error)  # also checks code and message agree
    assert status is not None
    infos = []
    others = []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            infos.append(info)
        else:
            others.append(detail)
    assert len(infos) == 1
    [info] = infos
    assert info.domain == DOMAIN == ERROR_DOMAIN
    assert info.reason == DESIGN_REASONS[case.error]
    assert dict(info.metadata) == case.metadata
    # The standard detail that fits: for these scenarios, BadRequest naming the field.
    if case.error is InvalidArgumentError:
        [detail] = others
        bad_request = error_details_pb2.BadRequest()
        assert detail.Unpack(bad_request), detail.type_url
        [violation] = bad_request.field_violations
        assert violation.field == case.metadata["field"]
        assert violation.description == status.message
    else:
        assert others == []
    raw_trailers = [
        value.decode("latin-1") if isinstance(value, bytes) else value
        for _, value in rpc_error.trailing_metadata() or ()
    ]
    texts = [
        rpc_error.details() or "",
        rpc_error.debug_error_string() or "",
        status.message,
        str(info),
        *map(str, others),
        *raw_trailers,
    ]
    assert_no_secret(texts, case.tokens)
    # Nor in what the authority logged (at its default level) while answering.
    assert_no_secret([caplog.text], case.tokens)


# --- the table itself ---------------------------------------------------------------------

SAMPLES: dict[type[SessionError], list[SessionError]] = {
    UnauthorisedError: [
        UnauthorisedError("gone", clear_tokens=True),
        UnauthorisedError("garbled", clear_tokens=False),
    ],
    TryRefreshTokenError: [TryRefreshTokenError("expired")],
    TokenTheftDetectedError: [
        TokenTheftDetectedError("theft", session_handle="h-1", user_id="u-1"),
        TokenTheftDetectedError("theft", session_handle="h-2", user_id='ü 🙂 "q" ,=;'),
    ],
    InvalidClaimsError: [
        InvalidClaimsError(
            "claims",
            invalid_claims=[
                ClaimValidationError("st-role", {"message": "wrong value", "expectedValue": "a"}),
                # The largest integer a JSON number (a double) holds exactly.
                ClaimValidationError("st-ev", {"message": "expired", "ageInSeconds": 2**53}),
                ClaimValidationError("st-f", {"message": "wrong value", "expectedValue": 0.5}),
                ClaimValidationError("no-reason", None),
            ],
        ),
        InvalidClaimsError("none", invalid_claims=[]),
    ],
    InvalidArgumentError: [
        InvalidArgumentError("bad", field="user_id"),
        InvalidArgumentError("bad", field=""),
    ],
    ApiKeyInvalidError: [ApiKeyInvalidError("no key")],
    StorageUnavailableError: [StorageUnavailableError("down")],
    AuthorityUnreachableError: [AuthorityUnreachableError("the authority did not answer")],
    InternalServerError: [InternalServerError("internal error")],
}


def test_the_table_matches_the_design() -> None:
    assert {m.error_class: m.status_code for m in ERROR_TABLE} == DESIGN_CODES
    assert {m.error_class: m.error_class.reason for m in ERROR_TABLE} == DESIGN_REASONS
    reasons = [m.error_class.reason for m in ERROR_TABLE]
    assert len(reasons) == len(set(reasons))
    assert ERROR_DOMAIN == DOMAIN


@pytest.mark.parametrize(
    "error",
    [sample for mapping in ERROR_TABLE for sample in SAMPLES[mapping.error_class]],
    ids=lambda e: f"{type(e).__name__}-{e.message}",
)
def test_error_from_wire_round_trips(error: SessionError) -> None:
    metadata = error.wire_metadata()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    # Through a real ErrorInfo, as the wire carries it.
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=metadata)
    info = error_details_pb2.ErrorInfo.FromString(info.SerializeToString())
    back = error_from_wire(info.reason, error.message, dict(info.metadata))
    assert type(back) is type(error)
    expected = vars(error)
    if isinstance(error, InvalidClaimsError):
        # The failures travel in the InvalidClaims detail, not in ErrorInfo metadata.
        assert metadata == {}
        expected = expected | {"invalid_claims": []}
    assert vars(back) == expected
    assert str(back) == str(error)
    assert status_code_for(back) == DESIGN_CODES[type(error)]


@dataclass(frozen=True)
class EndedCall:
    """A call as its client sees it when the server ended it with ``status`` (a
    grpc.Status, as abort_with_status takes it)."""

    status: Any

    def code(self) -> grpc.StatusCode:
        return self.status.code

    def details(self) -> str:
        return self.status.details  # type: ignore[no-any-return]

    def trailing_metadata(self) -> Any:
        return self.status.trailing_metadata


@pytest.mark.parametrize(
    "error",
    [sample for mapping in ERROR_TABLE for sample in SAMPLES[mapping.error_class]],
    ids=lambda e: f"{type(e).__name__}-{e.message}",
)
def test_error_from_rpc_error_inverts_rich_status(error: SessionError) -> None:
    status = rich_status(error)
    assert status.code == DESIGN_CODES[type(error)]
    back = error_from_rpc_error(EndedCall(status))
    assert type(back) is type(error)
    assert vars(back) == vars(error)


def test_a_status_without_our_error_info_is_authority_unreachable() -> None:
    foreign = any_pb2.Any()
    foreign.Pack(error_details_pb2.ErrorInfo(reason="UNAUTHORISED", domain="elsewhere"))
    code = grpc.StatusCode.UNAVAILABLE
    for details in ([], [foreign]):
        status = status_pb2.Status(code=code.value[0], message="down", details=details)
        back = error_from_rpc_error(EndedCall(rpc_status.to_status(status)))
        assert type(back) is AuthorityUnreachableError
        assert back.status_code == code


@pytest.mark.parametrize("reason", ["", "NOPE", "unauthorised", "unreachable", "SessionError"])
def test_unknown_reason_is_an_internal_server_error(reason: str) -> None:
    back = error_from_wire(reason, "something odd", {"clearTokens": "false", "field": "x"})
    assert type(back) is InternalServerError
    assert back.message == "something odd"


def test_missing_metadata_gives_safe_defaults() -> None:
    unauthorised = error_from_wire("UNAUTHORISED", "m", {})
    assert isinstance(unauthorised, UnauthorisedError) and unauthorised.clear_tokens is True
    claims = error_from_wire("INVALID_CLAIMS", "m", {})
    assert isinstance(claims, InvalidClaimsError) and claims.invalid_claims == []
    # The metadata an older authority sent the failures in is not read any more.
    claims = error_from_wire("INVALID_CLAIMS", "m", {"claimValidationErrors": '[{"id":"x"}]'})
    assert isinstance(claims, InvalidClaimsError) and claims.invalid_claims == []
    field_error = error_from_wire("INVALID_ARGUMENT", "m", {})
    assert isinstance(field_error, InvalidArgumentError) and field_error.field == ""


def ended_with(code: grpc.StatusCode, reason: str, *details: Any) -> EndedCall:
    """A call that ended with our ErrorInfo (reason) and then these detail messages."""
    packed = []
    for detail in (error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN), *details):
        any_detail = any_pb2.Any()
        any_detail.Pack(detail)
        packed.append(any_detail)
    status = status_pb2.Status(code=code.value[0], message="m", details=packed)
    return EndedCall(rpc_status.to_status(status))


def test_a_missing_or_unreadable_invalid_claims_detail_gives_safe_defaults() -> None:
    denied = grpc.StatusCode.PERMISSION_DENIED
    # No InvalidClaims detail at all: no failures.
    back = error_from_rpc_error(ended_with(denied, "INVALID_CLAIMS"))
    assert isinstance(back, InvalidClaimsError) and back.invalid_claims == []
    # A reason that is no JSON value (a Value without kind): the ids are kept.
    unreadable = pb.InvalidClaims(
        invalid_claims=[
            pb.ClaimValidationError(id="a", reason=struct_pb2.Value()),
            pb.ClaimValidationError(id="b"),
        ]
    )
    back = error_from_rpc_error(ended_with(denied, "INVALID_CLAIMS", unreadable))
    assert isinstance(back, InvalidClaimsError)
    assert back.invalid_claims == [ClaimValidationError("a", None), ClaimValidationError("b", None)]


def status_of(error: SessionError) -> status_pb2.Status:
    """The google.rpc.Status rich_status puts in the trailers for an error."""
    status = rpc_status.from_call(EndedCall(rich_status(error)))
    assert status is not None
    return status


@pytest.mark.parametrize(
    "error",
    [sample for mapping in ERROR_TABLE for sample in SAMPLES[mapping.error_class]],
    ids=lambda e: f"{type(e).__name__}-{e.message}",
)
def test_rich_status_adds_the_standard_detail_that_fits(error: SessionError) -> None:
    status = status_of(error)
    assert status.code == DESIGN_CODES[type(error)].value[0] and status.message == error.message
    first, *others = status.details
    info = error_details_pb2.ErrorInfo()
    assert first.Unpack(info) and info.domain == DOMAIN and info.reason == error.reason
    if isinstance(error, InvalidArgumentError):
        [detail] = others
        bad_request = error_details_pb2.BadRequest()
        assert detail.Unpack(bad_request), detail.type_url
        assert [(v.field, v.description) for v in bad_request.field_violations] == [
            (error.field, error.message)
        ]
    elif isinstance(error, StorageUnavailableError):
        [detail] = others
        retry = error_details_pb2.RetryInfo()
        assert detail.Unpack(retry), detail.type_url
        assert retry.retry_delay.ToTimedelta().total_seconds() == 1
    elif isinstance(error, InvalidClaimsError):
        [detail] = others
        invalid = pb.InvalidClaims()
        assert detail.Unpack(invalid), detail.type_url
        assert [f.id for f in invalid.invalid_claims] == [f.id for f in error.invalid_claims]
        # Reasons are JSON values: proto JSON shows them as they are.
        if error.invalid_claims:
            assert json_format.MessageToDict(invalid)["invalidClaims"][0] == {
                "id": "st-role",
                "reason": {"message": "wrong value", "expectedValue": "a"},
            }
    else:
        assert others == []


def test_invalid_claims_round_trip_through_the_detail() -> None:
    """Every failure, in order, with reasons of every JSON type, as error_from_rpc_error
    reads them back from the InvalidClaims detail (ints stay ints)."""
    failures = [
        ClaimValidationError("obj", {"message": "wrong value", "expectedValue": {"a": [1, None]}}),
        ClaimValidationError("int", {"message": "expired", "ageInSeconds": 2**53}),
        ClaimValidationError("neg", {"message": "expired", "ageInSeconds": -(2**53)}),
        ClaimValidationError("float", {"message": "wrong value", "actualValue": 1.5}),
        ClaimValidationError("bool", {"message": "wrong value", "actualValue": False}),
        ClaimValidationError("text", "just a string"),
        ClaimValidationError("list", [1, "two", 3.25]),
        ClaimValidationError("null", None),
        ClaimValidationError("unicode", {"message": "zß水🙂"}),
    ]
    back = error_from_rpc_error(
        EndedCall(rich_status(InvalidClaimsError("claims", invalid_claims=failures)))
    )
    assert isinstance(back, InvalidClaimsError)
    assert back.invalid_claims == failures
    assert isinstance(back.invalid_claims[1].reason["ageInSeconds"], int)
    assert isinstance(back.invalid_claims[3].reason["actualValue"], float)


def invalid_claims_detail(error: InvalidClaimsError) -> pb.InvalidClaims:
    [detail] = [d for d in status_of(error).details if d.Is(pb.InvalidClaims.DESCRIPTOR)]
    invalid = pb.InvalidClaims()
    assert detail.Unpack(invalid)
    return invalid


def test_a_large_invalid_claims_error_keeps_only_the_messages() -> None:
    failures = [
        ClaimValidationError(f"claim-{i}", {"message": "wrong value", "expectedValue": "x" * 900})
        for i in range(40)
    ]
    error = InvalidClaimsError("claims failed", invalid_claims=failures)
    # Whole, they would be ten times the bound.
    assert (
        pb.InvalidClaims(
            invalid_claims=[
                pb.ClaimValidationError(
                    id=f.id, reason=json_format.ParseDict(f.reason, struct_pb2.Value())
                )
                for f in failures
            ]
        ).ByteSize()
        > 8 * MAX_INVALID_CLAIMS_DETAIL_BYTES
    )
    assert MAX_INVALID_CLAIMS_DETAIL_BYTES == 4096
    assert invalid_claims_detail(error).ByteSize() <= 4096
    back = error_from_rpc_error(EndedCall(rich_status(error)))
    assert isinstance(back, InvalidClaimsError)
    # The reasons keep their message; the list is cut only when even that is too much.
    assert back.invalid_claims == [
        ClaimValidationError(f"claim-{i}", {"message": "wrong value"}) for i in range(40)
    ]


def test_an_invalid_claims_error_too_large_even_in_brief_is_cut() -> None:
    failures = [
        ClaimValidationError(
            f"{i:03}-" + "i" * 200,
            {"message": f"{i:03} " + "m" * 300, "expectedValue": "x" * 100},
        )
        for i in range(64)
    ]
    error = InvalidClaimsError("claims failed", invalid_claims=failures)
    detail = invalid_claims_detail(error)
    assert detail.ByteSize() <= 4096
    back = error_from_rpc_error(EndedCall(rich_status(error)))
    assert isinstance(back, InvalidClaimsError)
    kept = len(back.invalid_claims)
    assert 0 < kept < len(failures)
    # As many as fit: one more would not.
    following = failures[kept]
    detail.invalid_claims.add(
        id=following.id[:128],
        reason=struct_pb2.Value(
            struct_value=struct_pb2.Struct(
                fields={"message": text(following.reason["message"][:256])}
            )
        ),
    )
    assert detail.ByteSize() > 4096
    # A prefix, in order, ids cut to 128 characters and messages to 256.
    assert back.invalid_claims == [
        ClaimValidationError(f.id[:128], {"message": f.reason["message"][:256]})
        for f in failures[:kept]
    ]
    # The whole status, as the grpc-status-details-bin trailer carries it (base64 on
    # the wire), stays well within the 8 KiB gRPC peers accept by default.
    trailer = dict(rich_status(error).trailing_metadata)["grpc-status-details-bin"]
    assert len(base64.b64encode(trailer)) < 8 * 1024 - 1024


async def test_storage_unavailable_carries_a_retry_delay(
    start: Callable[..., Awaitable[RunningServer]],
) -> None:
    """Through the real server: the store closed under it, a call answers UNAVAILABLE
    with ErrorInfo STORAGE_UNAVAILABLE and RetryInfo, which the SDK reads as
    StorageUnavailableError."""
    server = await start()
    await server.store.close()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.SessionServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.RevokeSession(pb.RevokeSessionRequest(session_handle="h"))
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    status = rpc_status.from_call(raised.value)
    assert status is not None
    first, *others = status.details
    info = error_details_pb2.ErrorInfo()
    assert first.Unpack(info) and info.reason == "STORAGE_UNAVAILABLE"
    [detail] = others
    retry = error_details_pb2.RetryInfo()
    assert detail.Unpack(retry), detail.type_url
    assert retry.retry_delay.seconds >= 1 and retry.retry_delay.nanos == 0
    assert isinstance(error_from_rpc_error(raised.value), StorageUnavailableError)


async def test_a_large_invalid_claims_error_crosses_a_real_server(
    client: SessionClient, stub: pb_grpc.SessionServiceStub
) -> None:
    """64 failing validators, each quoting a long expected value: the authority sends
    the InvalidClaims detail cut to its bound, and the call still ends as
    INVALID_CLAIMS (a trailer past the peer's limit would end it otherwise)."""
    session = await client.create_new_session("user-e")
    ids = [f"{i:02}" + "v" * 126 for i in range(64)]
    validators = [
        pb.ClaimValidator(
            id=validator_id,
            claim_key=f"claim-{i}",
            kind=pb.CLAIM_VALIDATOR_KIND_HAS_VALUE,
            value=struct_pb2.Value(string_value="x" * 200),
        )
        for i, validator_id in enumerate(ids)
    ]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetSession(
            pb.GetSessionRequest(
                access_token=session.access_token,
                override_global_claim_validators=pb.ClaimValidatorList(validators=validators),
            )
        )
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    status = rpc_status.from_call(raised.value)
    assert status is not None
    [detail] = [d for d in status.details if d.Is(pb.InvalidClaims.DESCRIPTOR)]
    assert detail.value and len(detail.value) <= MAX_INVALID_CLAIMS_DETAIL_BYTES
    error = error_from_rpc_error(raised.value)
    assert isinstance(error, InvalidClaimsError)
    kept = len(error.invalid_claims)
    assert 0 < kept < len(ids)
    assert error.invalid_claims == [
        ClaimValidationError(validator_id, {"message": "value does not exist"})
        for validator_id in ids[:kept]
    ]
