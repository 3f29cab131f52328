"""Hostile identifiers and page tokens, on both backends, through the raw gRPC stub.

- U+0000 (NUL) in a user id, a session handle, a claim key, a validator id or the
  client metadata is INVALID_ARGUMENT naming the field (in the ErrorInfo and the
  BadRequest), through every RPC that takes one, on SQLite
  and PostgreSQL alike (PostgreSQL cannot store NUL in text; SQLite can: one rule
  for both). Nothing is stored or revoked on the way.
- NUL inside JSON (string values and object keys) is plain JSON: it round-trips
  on both backends (the stores keep JSON as escaped text, never jsonb).
- ListSessions page tokens are the authority's own, authenticated and bound to the
  user id: huge numbers, forgeries, another user's token, truncated or garbage
  tokens are INVALID_ARGUMENT (field page_token, the token not echoed); a genuine
  token pages on, on any replica of the same database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import struct
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from session_authority import SessionClient, SessionContainer
from session_authority.v1 import session_service_pb2 as pb
from session_authority.v1 import session_service_pb2_grpc as pb_grpc
from session_authority_server.app import RunningServer

Start = Callable[..., Awaitable[RunningServer]]

NUL = "\x00"
WITNESS_USER = "witness"
WITNESS_PAYLOAD: dict[str, Any] = {"w": 1, "k": {"v": ["admin"], "t": 0}}
WITNESS_DATA: dict[str, Any] = {"d": 2}


@pytest.fixture
def database_url(any_database_url: str) -> str:
    """Every test here runs on a fresh SQLite file and a fresh PostgreSQL database."""
    return any_database_url


@pytest.fixture
async def stub(server: RunningServer) -> AsyncIterator[pb_grpc.SessionServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.SessionServiceStub(channel)


@pytest.fixture
async def witness(client: SessionClient) -> SessionContainer:
    return await client.create_new_session(WITNESS_USER, WITNESS_PAYLOAD, WITNESS_DATA)


async def assert_witness_intact(client: SessionClient, witness: SessionContainer) -> None:
    handle = witness.session_handle
    assert await client.get_all_session_handles_for_user(WITNESS_USER) == [handle]
    info = await client.get_session_information(handle)
    assert info is not None
    assert info.custom_claims_in_access_token_payload == WITNESS_PAYLOAD
    assert info.session_data_in_database == WITNESS_DATA
    verified = await client.get_session(witness.access_token, check_database=True)
    assert verified is not None and verified.session_handle == handle


async def expect_invalid_argument(
    call: Awaitable[Any], field: str, *, not_echoing: str | None = None
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    error = raised.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    status = rpc_status.from_call(error)
    assert status is not None
    infos, bad_requests = [], []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(info):
            infos.append(info)
        elif detail.Unpack(bad_request):
            bad_requests.append(bad_request)
    assert len(infos) == 1
    assert infos[0].domain == "session-authority"
    assert infos[0].reason == "INVALID_ARGUMENT"
    assert dict(infos[0].metadata) == {"field": field}
    assert [[v.field for v in b.field_violations] for b in bad_requests] == [[field]]
    if not_echoing:
        assert not_echoing not in (error.details() or "")


# --- NUL in identifiers -------------------------------------------------------------------

# Where NUL goes: alone, after a real identifier (SQLite would store that as a new
# distinct value; PostgreSQL refuses it), and in the middle.
NUL_VARIANTS = [NUL, f"{WITNESS_USER}{NUL}", f"a{NUL}b"]


def validator(claim_key: str = "k", id: str = "") -> pb.ClaimValidator:
    return pb.ClaimValidator(
        id=id,
        claim_key=claim_key,
        kind=pb.CLAIM_VALIDATOR_KIND_INCLUDES,
        value=struct_pb2.Value(string_value="admin"),
    )


ONE = struct_pb2.Value(number_value=1)
EMPTY = struct_pb2.Struct()
X_1 = struct_pb2.Struct(fields={"x": ONE})

# (method, field the error names, request builder: (bad value, witness) -> request)
Case = tuple[str, str, Callable[[str, SessionContainer], Any]]

NUL_CASES: dict[str, Case] = {
    # user ids
    "CreateNewSession.user_id": (
        "CreateNewSession",
        "user_id",
        lambda bad, w: pb.CreateNewSessionRequest(user_id=bad),
    ),
    "RevokeAllSessionsForUser.user_id": (
        "RevokeAllSessionsForUser",
        "user_id",
        lambda bad, w: pb.RevokeAllSessionsForUserRequest(user_id=bad),
    ),
    "GetAllSessionHandlesForUser.user_id": (
        "GetAllSessionHandlesForUser",
        "user_id",
        lambda bad, w: pb.GetAllSessionHandlesForUserRequest(user_id=bad),
    ),
    "ListSessions.user_id": (
        "ListSessions",
        "user_id",
        lambda bad, w: pb.ListSessionsRequest(user_id=bad),
    ),
    # What the edge service says about the client (listed with the session): NUL,
    # like every control character, is refused there too.
    "CreateNewSession.client_metadata.user_agent": (
        "CreateNewSession",
        "client_metadata.user_agent",
        lambda bad, w: pb.CreateNewSessionRequest(
            user_id="a", client_metadata=pb.ClientMetadata(user_agent=bad)
        ),
    ),
    "CreateNewSession.client_metadata.device": (
        "CreateNewSession",
        "client_metadata.device",
        lambda bad, w: pb.CreateNewSessionRequest(
            user_id="a", client_metadata=pb.ClientMetadata(device=bad)
        ),
    ),
    "CreateNewSession.client_metadata.ip": (
        "CreateNewSession",
        "client_metadata.ip",
        lambda bad, w: pb.CreateNewSessionRequest(
            user_id="a", client_metadata=pb.ClientMetadata(ip=bad)
        ),
    ),
    # session handles
    "RevokeSession.session_handle": (
        "RevokeSession",
        "session_handle",
        lambda bad, w: pb.RevokeSessionRequest(session_handle=bad),
    ),
    "GetSessionInformation.session_handle": (
        "GetSessionInformation",
        "session_handle",
        lambda bad, w: pb.GetSessionInformationRequest(session_handle=bad),
    ),
    "UpdateSessionDataInDatabase.session_handle": (
        "UpdateSessionDataInDatabase",
        "session_handle",
        lambda bad, w: pb.UpdateSessionDataInDatabaseRequest(
            session_handle=bad, new_session_data=X_1
        ),
    ),
    "MergeIntoAccessTokenPayload.session_handle": (
        "MergeIntoAccessTokenPayload",
        "session_handle",
        lambda bad, w: pb.MergeIntoAccessTokenPayloadRequest(
            session_handle=bad, access_token_payload_update=X_1
        ),
    ),
    "SetClaimValue.session_handle": (
        "SetClaimValue",
        "session_handle",
        lambda bad, w: pb.SetClaimValueRequest(session_handle=bad, claim_key="k", value=ONE),
    ),
    "GetClaimValue.session_handle": (
        "GetClaimValue",
        "session_handle",
        lambda bad, w: pb.GetClaimValueRequest(session_handle=bad, claim_key="k"),
    ),
    "RemoveClaim.session_handle": (
        "RemoveClaim",
        "session_handle",
        lambda bad, w: pb.RemoveClaimRequest(session_handle=bad, claim_key="k"),
    ),
    "RevokeOtherSessions.session_handle": (
        "RevokeOtherSessions",
        "session_handle",
        lambda bad, w: pb.RevokeOtherSessionsRequest(session_handle=bad),
    ),
    # One bad handle refuses the whole batch: the witness listed first survives.
    "RevokeMultipleSessions.session_handles": (
        "RevokeMultipleSessions",
        "session_handles",
        lambda bad, w: pb.RevokeMultipleSessionsRequest(session_handles=[w.session_handle, bad]),
    ),
    # claim keys (the witness's handle is real, so only the key can be refused)
    "SetClaimValue.claim_key": (
        "SetClaimValue",
        "claim_key",
        lambda bad, w: pb.SetClaimValueRequest(
            session_handle=w.session_handle, claim_key=bad, value=ONE
        ),
    ),
    "GetClaimValue.claim_key": (
        "GetClaimValue",
        "claim_key",
        lambda bad, w: pb.GetClaimValueRequest(session_handle=w.session_handle, claim_key=bad),
    ),
    "RemoveClaim.claim_key": (
        "RemoveClaim",
        "claim_key",
        lambda bad, w: pb.RemoveClaimRequest(session_handle=w.session_handle, claim_key=bad),
    ),
    # validators: their claim keys and ids, in every RPC that takes validators
    "ValidateClaims.validator.claim_key": (
        "ValidateClaims",
        "claim_key",
        lambda bad, w: pb.ValidateClaimsRequest(
            access_token_payload=EMPTY, claim_validators=[validator(claim_key=bad)]
        ),
    ),
    "ValidateClaims.validator.id": (
        "ValidateClaims",
        "id",
        lambda bad, w: pb.ValidateClaimsRequest(
            access_token_payload=EMPTY, claim_validators=[validator(id=bad)]
        ),
    ),
    "ValidateClaimsInJwtPayload.validator.claim_key": (
        "ValidateClaimsInJwtPayload",
        "claim_key",
        lambda bad, w: pb.ValidateClaimsInJwtPayloadRequest(
            jwt_payload=EMPTY, claim_validators=[validator(claim_key=bad)]
        ),
    ),
    "ValidateClaimsInJwtPayload.validator.id": (
        "ValidateClaimsInJwtPayload",
        "id",
        lambda bad, w: pb.ValidateClaimsInJwtPayloadRequest(
            jwt_payload=EMPTY, claim_validators=[validator(id=bad)]
        ),
    ),
    "GetSession.validator.claim_key": (
        "GetSession",
        "claim_key",
        lambda bad, w: pb.GetSessionRequest(
            access_token=w.access_token,
            override_global_claim_validators=pb.ClaimValidatorList(
                validators=[validator(claim_key=bad)]
            ),
        ),
    ),
    "GetSession.validator.id": (
        "GetSession",
        "id",
        lambda bad, w: pb.GetSessionRequest(
            access_token=w.access_token,
            override_global_claim_validators=pb.ClaimValidatorList(validators=[validator(id=bad)]),
        ),
    ),
}


@pytest.mark.parametrize("case", NUL_CASES.values(), ids=NUL_CASES.keys())
async def test_nul_in_an_identifier_is_invalid_argument(
    case: Case,
    stub: pb_grpc.SessionServiceStub,
    client: SessionClient,
    witness: SessionContainer,
) -> None:
    method, field, build = case
    for bad in NUL_VARIANTS:
        await expect_invalid_argument(getattr(stub, method)(build(bad, witness)), field)
    # Nothing was created under a NUL user id, and nothing else changed.
    assert await client.get_all_session_handles_for_user("a") == []
    await assert_witness_intact(client, witness)


async def test_identifiers_without_nul_still_work(
    client: SessionClient, witness: SessionContainer
) -> None:
    """Other control characters and non-ASCII stay allowed in user ids, as in
    SuperTokens (which takes any string): only NUL is refused."""
    user_id = "tab\there\nnewline\x1f\x7fé水🙂"
    session = await client.create_new_session(user_id)
    assert await client.get_all_session_handles_for_user(user_id) == [session.session_handle]
    [summary] = (await client.list_sessions(user_id)).sessions
    assert summary.user_id == user_id
    info = await client.get_session_information(session.session_handle)
    assert info is not None and info.user_id == user_id
    assert await client.revoke_all_sessions_for_user(user_id) == [session.session_handle]
    await assert_witness_intact(client, witness)


async def test_longest_user_id_of_four_byte_characters_works(
    client: SessionClient, witness: SessionContainer
) -> None:
    """512 characters of 4 bytes each (2 KiB, incompressible): still within what a
    PostgreSQL index entry can hold."""
    rng = random.Random(512)
    user_id = "".join(chr(rng.randrange(0x10000, 0x110000)) for _ in range(512))
    sessions = [await client.create_new_session(user_id) for _ in range(3)]
    handles = sorted(s.session_handle for s in sessions)
    assert sorted(await client.get_all_session_handles_for_user(user_id)) == handles
    first = await client.list_sessions(user_id, page_size=2)
    assert first.next_page_token is not None
    rest = await client.list_sessions(user_id, page_size=2, page_token=first.next_page_token)
    assert sorted(s.session_handle for s in first.sessions + rest.sessions) == handles
    assert sorted(await client.revoke_all_sessions_for_user(user_id)) == handles
    await assert_witness_intact(client, witness)


# --- NUL inside JSON: plain JSON, kept on both backends ---------------------------------

NUL_JSON: dict[str, Any] = {f"key{NUL}": f"value{NUL}", "nested": {NUL: [NUL, f"{NUL}x"]}}


async def test_nul_inside_json_round_trips_on_both_backends(
    client: SessionClient, witness: SessionContainer
) -> None:
    session = await client.create_new_session("u-json", NUL_JSON, NUL_JSON)
    assert {k: session.access_token_payload[k] for k in NUL_JSON} == NUL_JSON
    info = await client.get_session_information(session.session_handle)
    assert info is not None
    assert info.custom_claims_in_access_token_payload == NUL_JSON
    assert info.session_data_in_database == NUL_JSON
    verified = await client.get_session(session.access_token, check_database=True)
    assert verified is not None
    assert {k: verified.access_token_payload[k] for k in NUL_JSON} == NUL_JSON

    handle = session.session_handle
    assert await client.update_session_data_in_database(handle, {"d": NUL, NUL: 1})
    assert await client.merge_into_access_token_payload(handle, {f"m{NUL}": NUL})
    info = await client.get_session_information(handle)
    assert info is not None
    assert info.session_data_in_database == {"d": NUL, NUL: 1}
    assert info.custom_claims_in_access_token_payload == {**NUL_JSON, f"m{NUL}": NUL}

    regenerated = await client.regenerate_access_token(session.access_token, {"r": NUL})
    assert regenerated is not None
    info = await client.get_session_information(handle)
    assert info is not None and info.custom_claims_in_access_token_payload == {"r": NUL}

    assert session.refresh_token is not None
    refreshed = await client.refresh_session(session.refresh_token)
    assert refreshed.access_token_payload["r"] == NUL
    jwt = await client.create_jwt({"j": NUL, NUL: "k"})
    claims = json.loads(base64.urlsafe_b64decode(jwt.split(".")[1] + "=="))
    assert claims["j"] == NUL and claims[NUL] == "k"
    await assert_witness_intact(client, witness)


# --- page tokens ------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def json_token(value: Any) -> str:
    """The unauthenticated layout page tokens once had: base64url(JSON)."""
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def list_request(user_id: str, token: str, page_size: int = 2) -> pb.ListSessionsRequest:
    return pb.ListSessionsRequest(user_id=user_id, page_size=page_size, page_token=token)


async def alice_with_sessions(client: SessionClient, count: int = 5) -> list[str]:
    sessions = [await client.create_new_session("alice") for _ in range(count)]
    return [s.session_handle for s in sessions]


async def first_page_token(stub: pb_grpc.SessionServiceStub, user_id: str = "alice") -> str:
    page = await stub.ListSessions(list_request(user_id, ""))
    assert page.next_page_token
    return str(page.next_page_token)


HUGE_NUMBERS = {"1e26": 10**26, "-1e26": -(10**26), "2^63": 2**63, "2^64": 2**64}


@pytest.mark.parametrize("number", HUGE_NUMBERS.values(), ids=HUGE_NUMBERS.keys())
async def test_page_token_with_a_huge_number_is_invalid_argument(
    number: int, stub: pb_grpc.SessionServiceStub, client: SessionClient
) -> None:
    handles = await alice_with_sessions(client)
    for value in ([number, handles[0]], [number, str(uuid.uuid4())], [number, ""]):
        token = json_token(value)
        await expect_invalid_argument(
            stub.ListSessions(list_request("alice", token)), "page_token", not_echoing=token
        )
    # Also as a float and inside a genuine token's layout (no valid MAC, of course).
    genuine = unb64url(await first_page_token(stub))
    for token in (
        json_token([float(number), handles[0]]),
        b64url(genuine[:1] + struct.pack(">Q", number % 2**64) + genuine[9:]),
    ):
        await expect_invalid_argument(
            stub.ListSessions(list_request("alice", token)), "page_token", not_echoing=token
        )


def _changed(token: str, index: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    new = alphabet[(alphabet.index(token[index]) + 32) % 64]
    return token[:index] + new + token[index + 1 :]


BAD_TOKENS: dict[str, Callable[[str, list[str]], str]] = {
    # (a genuine token for alice's first page, alice's handles as listed) -> a bad token
    "json-with-real-values": lambda t, h: json_token([1_800_000_000_000, h[1]]),
    "json-with-a-made-up-mac": lambda t, h: json_token([1_800_000_000_000, h[1]]) + "." + t,
    "json-object": lambda t, h: json_token({"created_ms": 1, "handle": h[1]}),
    "mac-bytes-flipped": lambda t, h: b64url(
        unb64url(t)[:-32] + bytes(b ^ 0xFF for b in unb64url(t)[-32:])
    ),
    "created-ms-changed": lambda t, h: b64url(
        unb64url(t)[:1] + struct.pack(">Q", 1) + unb64url(t)[9:]
    ),
    "handle-changed": lambda t, h: b64url(
        unb64url(t)[:9] + uuid.UUID(h[0]).bytes + unb64url(t)[25:]
    ),
    "version-changed": lambda t, h: b64url(bytes([unb64url(t)[0] ^ 1]) + unb64url(t)[1:]),
    "first-char-changed": lambda t, h: _changed(t, 0),
    "middle-char-changed": lambda t, h: _changed(t, len(t) // 2),
    "last-char-changed": lambda t, h: _changed(t, len(t) - 1),
    "standard-base64": lambda t, h: base64.b64encode(unb64url(t)).decode(),
    "padded": lambda t, h: t + "=" * (-len(t) % 4 or 4),
    "truncated-by-one": lambda t, h: t[:-1],
    "truncated-in-half": lambda t, h: t[: len(t) // 2],
    "char-appended": lambda t, h: t + "A",
    "doubled": lambda t, h: t + t,
    "garbage": lambda t, h: "not a token",
    "base64-of-garbage": lambda t, h: b64url(b"\xff" * 57),
    "non-ascii": lambda t, h: "é" * 76,
    "nul": lambda t, h: NUL * 76,
    "one-megabyte": lambda t, h: "A" * (1 << 20),
    "a-refresh-token-shape": lambda t, h: "A" * 110,
}


async def test_bad_page_tokens_are_invalid_argument(
    stub: pb_grpc.SessionServiceStub, client: SessionClient
) -> None:
    await alice_with_sessions(client)
    everything = await stub.ListSessions(list_request("alice", "", page_size=200))
    handles = [s.session_handle for s in everything.sessions]  # as listed
    genuine = await first_page_token(stub)
    for name, make in BAD_TOKENS.items():
        token = make(genuine, handles)
        if name == "standard-base64" and token == genuine:
            continue  # this random token has no "-" or "_" to spell differently
        assert token != genuine, name
        try:
            await expect_invalid_argument(
                stub.ListSessions(list_request("alice", token)),
                "page_token",
                not_echoing=token if len(token) > 4 else None,
            )
        except AssertionError as error:
            error.add_note(f"page token {name!r}")
            raise
    # The genuine one still works after all that.
    page = await stub.ListSessions(list_request("alice", genuine))
    assert [s.session_handle for s in page.sessions] == handles[2:4]


async def test_another_users_page_token_is_invalid_argument(
    stub: pb_grpc.SessionServiceStub, client: SessionClient
) -> None:
    await alice_with_sessions(client)
    for _ in range(5):
        await client.create_new_session("bob")
    alices = await first_page_token(stub, "alice")
    bobs = await first_page_token(stub, "bob")
    await expect_invalid_argument(stub.ListSessions(list_request("bob", alices)), "page_token")
    await expect_invalid_argument(stub.ListSessions(list_request("alice", bobs)), "page_token")
    # Nor for a user id that differs in case or by a prefix.
    for other in ("Alice", "alic", "alice ", "alicealice"):
        await expect_invalid_argument(stub.ListSessions(list_request(other, alices)), "page_token")
    page = await stub.ListSessions(list_request("bob", bobs))
    assert len(page.sessions) == 2 and all(s.user_id == "bob" for s in page.sessions)


async def test_genuine_page_tokens_page_through_every_session(
    stub: pb_grpc.SessionServiceStub, client: SessionClient, clock: Any
) -> None:
    created = []
    for _ in range(7):
        created.append((await client.create_new_session("alice")).session_handle)
        clock.advance(0.001)
    listed, token, pages = [], "", 0
    while True:
        page = await stub.ListSessions(list_request("alice", token, page_size=3))
        pages += 1
        assert page.HasField("total_size") and page.total_size == 7
        listed += [s.session_handle for s in page.sessions]
        token = page.next_page_token
        if not token:
            break
    assert pages == 3
    assert listed == list(reversed(created))


async def test_page_tokens_pass_between_replicas_of_one_database(
    start: Start, database_url: str, connect: Callable[..., SessionClient]
) -> None:
    """Replicas share the database secret, so each accepts the other's page tokens;
    an authority with another database (another secret) does not."""
    first = await start(database_url=database_url)
    second = await start(database_url=database_url)
    async with connect(first) as client:
        for _ in range(5):
            await client.create_new_session("alice")
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{first.port}") as one,
        grpc.aio.insecure_channel(f"127.0.0.1:{second.port}") as two,
    ):
        token = await first_page_token(pb_grpc.SessionServiceStub(one))
        from_one = await pb_grpc.SessionServiceStub(one).ListSessions(list_request("alice", token))
        from_two = await pb_grpc.SessionServiceStub(two).ListSessions(list_request("alice", token))
        assert from_one == from_two and len(from_one.sessions) == 2


async def test_page_token_of_another_authority_is_invalid_argument(
    start: Start, tmp_path: Any
) -> None:
    mine = await start()
    other = await start(database_url=f"sqlite:///{tmp_path}/other.db")
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{mine.port}") as one,
        grpc.aio.insecure_channel(f"127.0.0.1:{other.port}") as two,
    ):
        for stub in (pb_grpc.SessionServiceStub(one), pb_grpc.SessionServiceStub(two)):
            for _ in range(3):
                await stub.CreateNewSession(pb.CreateNewSessionRequest(user_id="alice"))
        token = await first_page_token(pb_grpc.SessionServiceStub(two))
        await expect_invalid_argument(
            pb_grpc.SessionServiceStub(one).ListSessions(list_request("alice", token)),
            "page_token",
        )


# --- the codec itself ------------------------------------------------------------------


def test_page_token_codec_round_trip_and_range_check() -> None:
    from session_authority_server.tokens import PageTokenCodec

    codec = PageTokenCodec(b"k" * 32)
    handle = str(uuid.uuid4())
    for created_ms in (0, 1, 1_800_000_000_000, 2**63 - 1):
        token = codec.issue("alice", created_ms, handle)
        assert codec.parse("alice", token) == (created_ms, handle)
        assert codec.parse("bob", token) is None
        assert PageTokenCodec(b"K" * 32).parse("alice", token) is None
    for created_ms in (-1, 2**63, 2**64, 10**26):
        with pytest.raises(ValueError):
            codec.issue("alice", created_ms, handle)

    # A position out of range under a valid MAC (only a leaked key could make one)
    # is refused all the same.
    key = hmac.new(b"k" * 32, b"page-token", hashlib.sha256).digest()
    body = bytes([1]) + struct.pack(">Q", 2**63) + uuid.UUID(handle).bytes
    mac = hmac.new(key, body + b"alice", hashlib.sha256).digest()
    assert codec.parse("alice", b64url(body + mac)) is None
    # ... and the derivation is as documented: the same body in range parses.
    body = bytes([1]) + struct.pack(">Q", 5) + uuid.UUID(handle).bytes
    mac = hmac.new(key, body + b"alice", hashlib.sha256).digest()
    assert codec.parse("alice", b64url(body + mac)) == (5, handle)
    # The page-token key is not the refresh-token key itself.
    raw_mac = hmac.new(b"k" * 32, body + b"alice", hashlib.sha256).digest()
    assert codec.parse("alice", b64url(body + raw_mac)) is None
