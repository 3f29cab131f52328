"""Hostile and malformed input against a real server, a real client and a real SQLite file.

Every test ends by checking that the authority still serves and lost nothing: a
session created before the bad input still verifies against the database, still
refreshes, and still holds exactly the payload and data it was created with.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import math
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from google.protobuf import struct_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from session_authority import (
    ClaimValidator,
    InvalidArgumentError,
    PrimitiveClaim,
    SessionClient,
    SessionContainer,
    TryRefreshTokenError,
    UnauthorisedError,
)
from session_authority.json_text import MAX_JSON_DEPTH
from session_authority.v1 import session_service_pb2 as pb
from session_authority.v1 import session_service_pb2_grpc as pb_grpc
from session_authority_server.app import RunningServer

from .conftest import ManualClock, RpcCounter

# JSON numbers are doubles: 2^53 - 1 is the largest odd integer one holds exactly, so
# any lossy step (a float32, a decimal rounding) changes it; 0.1 must stay a float.
BIG = 2**53 - 1
WITNESS_PAYLOAD: dict[str, Any] = {"w": BIG, "f": 0.1, "nested": {"k": [1, "two", None]}}
WITNESS_DATA: dict[str, Any] = {"d": -BIG, "text": "zß水🙂", "empty": [{}, []]}
B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
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


# --- token surgery -------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def token_parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    return json.loads(unb64url(header)), json.loads(unb64url(payload)), signature


def build_token(
    header: dict[str, Any], payload: dict[str, Any], sign: Callable[[bytes], bytes]
) -> str:
    signing_input = f"{b64url(compact(header))}.{b64url(compact(payload))}"
    return f"{signing_input}.{b64url(sign(signing_input.encode('ascii')))}"


@functools.cache
def foreign_rsa_key() -> rsa.RSAPrivateKey:
    """A key the authority never had."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def rs256_with(key: rsa.RSAPrivateKey) -> Callable[[bytes], bytes]:
    return lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def hs256_with(secret: bytes) -> Callable[[bytes], bytes]:
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


def public_key_pem(jwk: dict[str, Any]) -> bytes:
    numbers = rsa.RSAPublicNumbers(
        e=int.from_bytes(unb64url(jwk["e"]), "big"), n=int.from_bytes(unb64url(jwk["n"]), "big")
    )
    return numbers.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def change_char(token: str, index: int, *, shift: int = 32) -> str:
    """The token with one base64url character replaced by another (shift 32 flips the
    high bit of that character's six, always a data bit)."""
    old = B64URL_ALPHABET.index(token[index])
    new = B64URL_ALPHABET[(old + shift) % 64]
    assert new != token[index]
    return token[:index] + new + token[index + 1 :]


# --- fixtures --------------------------------------------------------------------------


@dataclass
class Witness:
    """A session created before the bad input; assert_intact proves it survived."""

    client: SessionClient
    clock: ManualClock
    session: SessionContainer
    refresh_token: str

    @property
    def handle(self) -> str:
        return self.session.session_handle

    async def assert_intact(self) -> None:
        client, handle = self.client, self.handle
        info = await client.get_session_information(handle)
        assert info is not None
        assert info.user_id == "witness"
        assert info.session_data_in_database == WITNESS_DATA
        assert info.custom_claims_in_access_token_payload == WITNESS_PAYLOAD
        assert await client.get_all_session_handles_for_user("witness") == [handle]
        assert self.session.access_token_expiry is not None
        if self.clock.ms < self.session.access_token_expiry:
            verified = await client.get_session(self.session.access_token, check_database=True)
            assert verified is not None and verified.session_handle == handle
        refreshed = await client.refresh_session(self.refresh_token)
        assert refreshed.session_handle == handle
        assert refreshed.refresh_token is not None
        self.refresh_token = refreshed.refresh_token
        for check_database in (True, False):
            verified = await client.get_session(
                refreshed.access_token, check_database=check_database
            )
            assert verified is not None
            assert verified.session_handle == handle
            assert verified.access_token_payload["w"] == BIG
            assert type(verified.access_token_payload["w"]) is int
            assert type(verified.access_token_payload["f"]) is float


@pytest.fixture
async def witness(client: SessionClient, clock: ManualClock) -> Witness:
    session = await client.create_new_session("witness", WITNESS_PAYLOAD, WITNESS_DATA)
    assert session.refresh_token is not None
    return Witness(client, clock, session, session.refresh_token)


@pytest.fixture
async def remote_client(
    server: RunningServer, connect: Callable[..., SessionClient]
) -> AsyncIterator[SessionClient]:
    async with connect(server, verify_locally=False) as remote:
        yield remote


Verify = Callable[[str], Awaitable[SessionContainer | None]]


@pytest.fixture
def paths(client: SessionClient, remote_client: SessionClient) -> dict[str, Verify]:
    """get_session through each path: the client's JWKS cache ("local"), the authority
    (verify_locally=False), and the authority with check_database=True."""
    return {
        "local": client.get_session,
        "server": remote_client.get_session,
        "server-check-database": functools.partial(client.get_session, check_database=True),
    }


async def assert_refused(
    paths: dict[str, Verify], token: str | None, error: type[Exception]
) -> list[Exception]:
    """Present token on every path; each must raise error. Returns the exceptions."""
    raised = []
    for name, verify in paths.items():
        try:
            result = await verify(token)  # type: ignore[arg-type]
        except error as exc:
            raised.append(exc)
        except Exception as exc:
            raise AssertionError(f"{name}: {type(exc).__name__}, not {error.__name__}") from exc
        else:
            raise AssertionError(f"{name}: accepted the token ({result!r})")
    return raised


@pytest.fixture
async def channel(server: RunningServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as opened:
        yield opened


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> pb_grpc.SessionServiceStub:
    return pb_grpc.SessionServiceStub(channel)


async def real_kid_and_jwk(client: SessionClient, token: str) -> tuple[str, dict[str, Any]]:
    kid = token_parts(token)[0]["kid"]
    jwks = await client.get_jwks()
    [jwk] = [key for key in jwks["keys"] if key["kid"] == kid]
    return kid, jwk


# --- access tokens: garbled ----------------------------------------------------------

_rng = random.Random(20240501)
_PIECES = [b64url(_rng.randbytes(n)) for n in (3, 17, 40, 64, 130, 256)]

GARBLED: dict[str, Callable[[Witness], str]] = {
    "abc": lambda w: "abc",
    "a.b.c": lambda w: "a.b.c",
    "four-parts": lambda w: "a.b.c.d",
    "random-base64-pieces": lambda w: ".".join(_PIECES[:3]),
    "random-base64-single": lambda w: _PIECES[5],
    "header-is-a-json-array": lambda w: b64url(b"[1,2]") + "." + _PIECES[1] + "." + _PIECES[2],
    "non-ascii": lambda w: "é.ü.水",
    "truncated-in-half": lambda w: w.session.access_token[: len(w.session.access_token) // 2],
    "refresh-token-as-access-token": lambda w: w.refresh_token,
    "one-megabyte-string": lambda w: "x" * (1 << 20),
    "one-megabyte-payload-with-real-header": lambda w: (
        w.session.access_token.split(".")[0] + "." + "A" * (1 << 20) + "." + "B" * 342
    ),
}


@pytest.mark.parametrize("make_token", GARBLED.values(), ids=GARBLED.keys())
async def test_garbled_access_token_is_unauthorised_without_clearing_tokens(
    make_token: Callable[[Witness], str],
    paths: dict[str, Verify],
    witness: Witness,
    rpc_counter: RpcCounter,
) -> None:
    token = make_token(witness)
    calls_before = rpc_counter.total()
    # A malformed token is refused locally before any key lookup: no RPC at all.
    [local] = await assert_refused({"local": paths["local"]}, token, UnauthorisedError)
    assert rpc_counter.total() == calls_before
    raised = [local, *await assert_refused(paths, token, UnauthorisedError)]
    assert [exc.clear_tokens for exc in raised] == [False] * len(raised)  # type: ignore[attr-defined]
    await witness.assert_intact()


@pytest.mark.parametrize("token", ["", None])
async def test_missing_access_token(
    token: str | None, paths: dict[str, Verify], client: SessionClient, witness: Witness
) -> None:
    raised = await assert_refused(paths, token, UnauthorisedError)
    assert [exc.clear_tokens for exc in raised] == [False] * len(raised)  # type: ignore[attr-defined]
    assert await client.get_session(token, session_required=False) is None
    assert await client.get_session(token, session_required=False, check_database=True) is None
    await witness.assert_intact()


# --- access tokens: forged signatures --------------------------------------------------


async def test_alg_none_token_is_refused(
    paths: dict[str, Verify], client: SessionClient, witness: Witness
) -> None:
    kid, _ = await real_kid_and_jwk(client, witness.session.access_token)
    _, payload, _ = token_parts(witness.session.access_token)
    payload["sub"] = "attacker"
    header = {"alg": "none", "kid": kid, "version": "5", "typ": "JWT"}
    token = build_token(header, payload, lambda data: b"")
    assert token.endswith(".")
    await assert_refused(paths, token, TryRefreshTokenError)
    await witness.assert_intact()


@pytest.mark.parametrize("secret_source", ["public-key-pem", "jwk-n"])
async def test_hs256_token_keyed_with_the_public_key_is_refused(
    secret_source: str, paths: dict[str, Verify], client: SessionClient, witness: Witness
) -> None:
    kid, jwk = await real_kid_and_jwk(client, witness.session.access_token)
    secret = public_key_pem(jwk) if secret_source == "public-key-pem" else jwk["n"].encode()
    _, payload, _ = token_parts(witness.session.access_token)
    payload["sub"] = "attacker"
    header = {"alg": "HS256", "kid": kid, "typ": "JWT", "version": "5"}
    token = build_token(header, payload, hs256_with(secret))
    await assert_refused(paths, token, TryRefreshTokenError)
    await witness.assert_intact()


PAYLOAD_CHANGES: dict[str, Callable[[dict[str, Any]], None]] = {
    "sub": lambda p: p.update(sub="attacker", rsub="attacker"),
    "sessionHandle": lambda p: p.update(sessionHandle=str(uuid.uuid4())),
    "added-claim": lambda p: p.update(role="admin"),
}


@pytest.mark.parametrize("change", PAYLOAD_CHANGES.values(), ids=PAYLOAD_CHANGES.keys())
async def test_payload_changed_under_a_valid_signature_is_refused(
    change: Callable[[dict[str, Any]], None], paths: dict[str, Verify], witness: Witness
) -> None:
    header_segment, payload_segment, signature = witness.session.access_token.split(".")
    payload = json.loads(unb64url(payload_segment))
    change(payload)
    token = f"{header_segment}.{b64url(compact(payload))}.{signature}"
    assert token != witness.session.access_token
    await assert_refused(paths, token, TryRefreshTokenError)
    await witness.assert_intact()


async def test_one_payload_byte_changed_is_refused(
    paths: dict[str, Verify], witness: Witness
) -> None:
    header_segment, payload_segment, signature = witness.session.access_token.split(".")
    raw = bytearray(unb64url(payload_segment))
    position = raw.index(b'"w":') + len(b'"w":')  # the first digit of BIG
    raw[position] = ord("8") if raw[position] != ord("8") else ord("7")
    json.loads(raw)  # still well-formed: only the signature can tell
    token = f"{header_segment}.{b64url(bytes(raw))}.{signature}"
    await assert_refused(paths, token, TryRefreshTokenError)
    await witness.assert_intact()


async def test_access_token_expires_after_its_validity(
    paths: dict[str, Verify], clock: ManualClock, witness: Witness
) -> None:
    token = witness.session.access_token
    clock.advance(3599)
    for verify in paths.values():
        verified = await verify(token)
        assert verified is not None and verified.session_handle == witness.handle
    clock.advance(1)
    await assert_refused(paths, token, TryRefreshTokenError)
    clock.advance(86_400)
    await assert_refused(paths, token, TryRefreshTokenError)
    await witness.assert_intact()


@pytest.mark.parametrize("kid", ["d-123", "real-kid"])
async def test_token_signed_by_a_key_the_authority_never_had(
    kid: str, paths: dict[str, Verify], client: SessionClient, witness: Witness
) -> None:
    if kid == "real-kid":
        kid, _ = await real_kid_and_jwk(client, witness.session.access_token)
    _, payload, _ = token_parts(witness.session.access_token)
    header = {"alg": "RS256", "kid": kid, "typ": "JWT", "version": "5"}
    token = build_token(header, payload, rs256_with(foreign_rsa_key()))
    await assert_refused(paths, token, TryRefreshTokenError)
    await witness.assert_intact()


async def test_unknown_kid_flood_costs_at_most_one_jwks_fetch(
    server: RunningServer,
    connect: Callable[..., SessionClient],
    rpc_counter: RpcCounter,
    witness: Witness,
) -> None:
    _, payload, _ = token_parts(witness.session.access_token)
    forged = [
        build_token(
            {"alg": "RS256", "kid": f"d-{123 + i % 3}", "typ": "JWT", "version": "5"},
            payload | {"n": i},
            rs256_with(foreign_rsa_key()),
        )
        for i in range(30)
    ]
    # A verifier that has never fetched the JWKS: the first forged token costs the
    # fetch any first verification needs, plus at most one unknown-kid refetch; the
    # rest cost nothing.
    async with connect(server) as fresh:
        before = rpc_counter.calls["GetJwks"]
        for token in forged:
            with pytest.raises(TryRefreshTokenError):
                await fresh.get_session(token)
        assert 1 <= rpc_counter.calls["GetJwks"] - before <= 2
        # Its cache still serves real tokens without another fetch.
        after_flood = rpc_counter.calls["GetJwks"]
        verified = await fresh.get_session(witness.session.access_token)
        assert verified is not None and verified.session_handle == witness.handle
        assert rpc_counter.calls["GetJwks"] - after_flood <= 1
    # A verifier with a warm cache: the flood costs at most one refetch.
    warm = witness.client
    assert await warm.get_session(witness.session.access_token) is not None
    before = rpc_counter.calls["GetJwks"]
    for token in forged:
        with pytest.raises(TryRefreshTokenError):
            await warm.get_session(token)
    assert rpc_counter.calls["GetJwks"] - before <= 1
    await witness.assert_intact()


# --- refresh tokens ----------------------------------------------------------------------


def _right_length_wrong_mac() -> str:
    body = bytes([1, 0]) + uuid.uuid4().bytes + random.Random(7).randbytes(32 + 32)
    return b64url(body)


BAD_REFRESH_TOKENS: dict[str, Callable[[str, str], str]] = {
    # (victim's refresh token, victim's access token) -> bad refresh token
    "empty": lambda rt, at: "",
    "abc": lambda rt, at: "abc",
    "random-110-chars": lambda rt, at: "".join(random.Random(1).choices(B64URL_ALPHABET, k=110)),
    "random-base64": lambda rt, at: b64url(random.Random(2).randbytes(82)),
    "right-layout-wrong-mac": lambda rt, at: _right_length_wrong_mac(),
    "one-megabyte": lambda rt, at: "A" * (1 << 20),
    "non-ascii": lambda rt, at: "é" * 110,
    "truncated-in-half": lambda rt, at: rt[: len(rt) // 2],
    "last-char-dropped": lambda rt, at: rt[:-1],
    "char-appended": lambda rt, at: rt + "A",
    "access-token": lambda rt, at: at,
}


@pytest.mark.parametrize("make_token", BAD_REFRESH_TOKENS.values(), ids=BAD_REFRESH_TOKENS.keys())
async def test_bad_refresh_token_is_unauthorised_and_revokes_nothing(
    make_token: Callable[[str, str], str], client: SessionClient, witness: Witness
) -> None:
    victim = await client.create_new_session("victim", {"v": 1}, {"v": 2})
    assert victim.refresh_token is not None
    bad = make_token(victim.refresh_token, victim.access_token)
    assert bad != victim.refresh_token
    with pytest.raises(UnauthorisedError):
        await client.refresh_session(bad)
    # Nobody was revoked or rotated: the victim's current token is still current,
    # so refreshing twice in a row (no grace-period replay) works.
    assert await client.get_all_session_handles_for_user("victim") == [victim.session_handle]
    first = await client.refresh_session(victim.refresh_token)
    assert first.refresh_token is not None
    second = await client.refresh_session(first.refresh_token)
    assert second.session_handle == victim.session_handle
    assert await client.get_session(second.access_token, check_database=True) is not None
    await witness.assert_intact()


async def test_real_refresh_token_with_one_character_changed_is_unauthorised(
    client: SessionClient, clock: ManualClock, witness: Witness
) -> None:
    """Any single changed character (version, flags, handle, secret or MAC bytes) makes
    the token a forgery: UNAUTHORISED, never theft detection, nobody revoked."""
    victim = await client.create_new_session("victim", {"v": 1}, {"v": 2})
    token = victim.refresh_token
    assert token is not None and len(token) == 110
    for index in (0, 1, 2, 3, 5, 10, 23, 24, 40, 60, 67, 70, 90, 105, 108, 109):
        with pytest.raises(UnauthorisedError):
            await client.refresh_session(change_char(token, index))
    assert await client.get_all_session_handles_for_user("victim") == [victim.session_handle]
    first = await client.refresh_session(token)
    clock.advance(60)  # past the grace period: a hidden rotation would now look like theft
    assert first.refresh_token is not None
    second = await client.refresh_session(first.refresh_token)
    assert second.session_handle == victim.session_handle
    await witness.assert_intact()


async def _token_with_char(client: SessionClient, chars: str) -> SessionContainer:
    for _ in range(100):
        session = await client.create_new_session("victim")
        assert session.refresh_token is not None
        if any(c in session.refresh_token for c in chars):
            return session
    raise AssertionError(f"no refresh token with any of {chars!r} in 100 sessions")


@pytest.mark.parametrize("encoding", ["padding-bits-of-last-char", "standard-base64-alphabet"])
async def test_non_canonical_encoding_of_a_real_refresh_token_is_unauthorised(
    encoding: str, client: SessionClient, clock: ManualClock, witness: Witness
) -> None:
    """A refresh token is one exact string: a different string that happens to decode
    to the same bytes is a mangled token, not the token."""
    if encoding == "padding-bits-of-last-char":
        victim = await client.create_new_session("victim")
        assert victim.refresh_token is not None
        # 82 bytes in 110 characters: the last character's low 4 bits are padding.
        rt = victim.refresh_token
        last = B64URL_ALPHABET.index(rt[-1])
        mangled = rt[:-1] + B64URL_ALPHABET[last ^ 1]
    else:
        victim = await _token_with_char(client, "-_")
        assert victim.refresh_token is not None
        rt = victim.refresh_token
        mangled = rt.replace("-", "+").replace("_", "/")
    assert mangled != rt
    with pytest.raises(UnauthorisedError):
        await client.refresh_session(mangled)
    # The real token still rotates normally, and long after the grace period the
    # session is still alive (the mangled string did not rotate it behind its back).
    first = await client.refresh_session(rt)
    clock.advance(120)
    assert first.refresh_token is not None
    second = await client.refresh_session(first.refresh_token)
    assert second.session_handle == victim.session_handle
    await witness.assert_intact()


# --- protected claims and hostile JSON values ----------------------------------------------


@pytest.mark.parametrize("claim", PROTECTED)
async def test_protected_claim_in_a_custom_payload_is_invalid_argument(
    claim: str, client: SessionClient, witness: Witness
) -> None:
    calls: dict[str, Callable[[Any], Awaitable[Any]]] = {
        "access_token_payload": lambda value: client.create_new_session(
            "u-protected", {"ok": 1, claim: value}
        ),
        "access_token_payload_update": lambda value: client.merge_into_access_token_payload(
            witness.handle, {"ok": 1, claim: value}
        ),
        "new_access_token_payload": lambda value: client.regenerate_access_token(
            witness.session.access_token, {"ok": 1, claim: value}
        ),
    }
    for field, call in calls.items():
        for value in ("x", 0, None):
            with pytest.raises(InvalidArgumentError) as raised:
                await call(value)
            assert isinstance(raised.value, ValueError)
            assert raised.value.field == field, (field, value)
    assert await client.get_all_session_handles_for_user("u-protected") == []
    await witness.assert_intact()  # the stored payload is untouched ("ok" not merged)


@dataclass(frozen=True)
class JsonField:
    """A request field that carries a JSON value: a Struct, or a Value holding one.

    build(target) makes the request and returns the Struct inside it that carries
    the value; the hostile value is written into that Struct in place (copying a
    deeply nested Struct into a request goes through this process' own parser,
    whose depth limit the hostile values are meant to meet on the server)."""

    method: str
    # The field a refusal of the value names, and the one a refusal of its size names.
    field: str
    size_field: str
    max_bytes: int
    build: Callable[[SessionContainer], tuple[Message, struct_pb2.Struct]]


def _create_payload(target: SessionContainer) -> tuple[Message, struct_pb2.Struct]:
    request = pb.CreateNewSessionRequest(user_id="u-json")
    return request, request.access_token_payload


def _create_data(target: SessionContainer) -> tuple[Message, struct_pb2.Struct]:
    request = pb.CreateNewSessionRequest(user_id="u-json")
    return request, request.session_data_in_database


def _update_data(target: SessionContainer) -> tuple[Message, struct_pb2.Struct]:
    request = pb.UpdateSessionDataInDatabaseRequest(session_handle=target.session_handle)
    return request, request.new_session_data


def _merge(target: SessionContainer) -> tuple[Message, struct_pb2.Struct]:
    request = pb.MergeIntoAccessTokenPayloadRequest(session_handle=target.session_handle)
    return request, request.access_token_payload_update


def _regenerate(target: SessionContainer) -> tuple[Message, struct_pb2.Struct]:
    request = pb.RegenerateAccessTokenRequest(access_token=target.access_token)
    return request, request.new_access_token_payload


def _set_claim(target: SessionContainer) -> tuple[Message, struct_pb2.Struct]:
    request = pb.SetClaimValueRequest(session_handle=target.session_handle, claim_key="c")
    return request, request.value.struct_value


def _create_jwt(target: SessionContainer) -> tuple[Message, struct_pb2.Struct]:
    request = pb.CreateJwtRequest()
    return request, request.payload


def _validate(target: SessionContainer) -> tuple[Message, struct_pb2.Struct]:
    request = pb.ValidateClaimsRequest()
    return request, request.access_token_payload


def _validate_jwt(target: SessionContainer) -> tuple[Message, struct_pb2.Struct]:
    request = pb.ValidateClaimsInJwtPayloadRequest()
    return request, request.jwt_payload


def _validator_value(target: SessionContainer) -> tuple[Message, struct_pb2.Struct]:
    request = pb.ValidateClaimsRequest()
    validator = request.claim_validators.add(claim_key="c", kind=pb.CLAIM_VALIDATOR_KIND_HAS_VALUE)
    return request, validator.value.struct_value


KIB = 1024
# Those that store or sign what they are given come first (STORING_FIELDS).
JSON_FIELDS = {
    "CreateNewSession.access_token_payload": JsonField(
        "CreateNewSession",
        "access_token_payload",
        "access_token_payload",
        16 * KIB,
        _create_payload,
    ),
    "CreateNewSession.session_data_in_database": JsonField(
        "CreateNewSession",
        "session_data_in_database",
        "session_data_in_database",
        64 * KIB,
        _create_data,
    ),
    "UpdateSessionDataInDatabase.new_session_data": JsonField(
        "UpdateSessionDataInDatabase",
        "new_session_data",
        "new_session_data",
        64 * KIB,
        _update_data,
    ),
    "MergeIntoAccessTokenPayload.access_token_payload_update": JsonField(
        "MergeIntoAccessTokenPayload",
        "access_token_payload_update",
        "access_token_payload_update",
        16 * KIB,
        _merge,
    ),
    "RegenerateAccessToken.new_access_token_payload": JsonField(
        "RegenerateAccessToken",
        "new_access_token_payload",
        "new_access_token_payload",
        16 * KIB,
        _regenerate,
    ),
    "SetClaimValue.value": JsonField("SetClaimValue", "value", "value", 16 * KIB, _set_claim),
    "CreateJwt.payload": JsonField("CreateJwt", "payload", "payload", 16 * KIB, _create_jwt),
    "ValidateClaims.access_token_payload": JsonField(
        "ValidateClaims", "access_token_payload", "access_token_payload", 16 * KIB, _validate
    ),
    "ValidateClaimsInJwtPayload.jwt_payload": JsonField(
        "ValidateClaimsInJwtPayload", "jwt_payload", "jwt_payload", 16 * KIB, _validate_jwt
    ),
    # A validator's value; the size limit is on the values of all validators together.
    "ValidateClaims.claim_validators.value": JsonField(
        "ValidateClaims", "claim_validators.value", "claim_validators", 16 * KIB, _validator_value
    ),
}
STORING_FIELDS = list(JSON_FIELDS)[:7]


def _nested_lists(depth: int) -> Callable[[struct_pb2.Struct], None]:
    """{"a":[[...[1]...]]}: depth levels in all, the Struct itself the first."""

    def fill(struct: struct_pb2.Struct) -> None:
        value = struct.fields["a"]
        for _ in range(depth - 2):
            value = value.list_value.values.add()
        value.list_value.values.add().number_value = 1

    return fill


def _nested_objects(depth: int) -> Callable[[struct_pb2.Struct], None]:
    """{"a":{"a":...{"a":1}...}}: depth objects."""

    def fill(struct: struct_pb2.Struct) -> None:
        for _ in range(depth - 1):
            struct = struct.fields["a"].struct_value
        struct.fields["a"].number_value = 1

    return fill


def _number(number: float, path: tuple[str, ...] = ("a",)) -> Callable[[struct_pb2.Struct], None]:
    def fill(struct: struct_pb2.Struct) -> None:
        for key in path[:-1]:
            struct = struct.fields[key].struct_value
        struct.fields[path[-1]].number_value = number

    return fill


def _without_kind(struct: struct_pb2.Struct) -> None:
    struct.fields["a"].Clear()  # the entry exists; its Value holds nothing


def _without_kind_in_a_list(struct: struct_pb2.Struct) -> None:
    items = struct.fields["a"].list_value.values
    items.add().number_value = 1
    items.add()


def _without_kind_in_a_claim(struct: struct_pb2.Struct) -> None:
    """{"k": {"v": <no kind>, "t": 1}}: a claim as the authority stores one."""
    entry = struct.fields["k"].struct_value
    entry.fields["v"].Clear()
    entry.fields["t"].number_value = 1


def _nan_in_a_claim(struct: struct_pb2.Struct) -> None:
    entry = struct.fields["k"].struct_value
    values = entry.fields["v"].list_value.values
    values.add().string_value = "admin"
    values.add().number_value = math.nan
    entry.fields["t"].number_value = 1


# A hostile JSON value for a field, and which name its refusal gives: "field" (the
# value's field), "size" (JsonField.size_field) or "request" (the message does not
# even parse: nested past protobuf's own depth limit).
Hostile = tuple[Callable[[struct_pb2.Struct], None], str]

HOSTILE_VALUES: dict[str, Hostile] = {
    "value-without-kind": (_without_kind, "field"),
    "value-without-kind-in-a-list": (_without_kind_in_a_list, "field"),
    "value-without-kind-in-a-claim": (_without_kind_in_a_claim, "field"),
    "nan": (_number(math.nan), "field"),
    "negative-nan": (_number(-math.nan), "field"),
    "infinity": (_number(math.inf), "field"),
    "minus-infinity": (_number(-math.inf), "field"),
    "nan-in-a-claim": (_nan_in_a_claim, "field"),
    "infinity-deep-inside": (_number(math.inf, ("x", "y", "z")), "field"),
    # MAX_JSON_DEPTH is 32; lists nest 33 levels within protobuf's parsing depth.
    "nested-one-level-too-deep": (_nested_lists(MAX_JSON_DEPTH + 1), "field"),
    "nested-far-too-deep-in-lists": (_nested_lists(600), "request"),
    "nested-far-too-deep-in-objects": (_nested_objects(2_500), "request"),
}


def _blob(size: int) -> Callable[[struct_pb2.Struct], None]:
    def fill(struct: struct_pb2.Struct) -> None:
        struct.fields["blob"].string_value = "x" * size

    return fill


async def _expect_invalid_argument(
    stub: pb_grpc.SessionServiceStub, method: str, request: Any, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await getattr(stub, method)(request)
    _assert_invalid_argument(raised.value, field)


def _assert_invalid_argument(error: grpc.aio.AioRpcError, field: str) -> None:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    status = rpc_status.from_call(error)
    assert status is not None
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
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
    assert dict(infos[0].metadata) == {"field": field}, (dict(infos[0].metadata), field)
    assert [[v.field for v in b.field_violations] for b in bad_requests] == [[field]]


async def _refused_everywhere(
    stub: pb_grpc.SessionServiceStub,
    fill: Callable[[struct_pb2.Struct], None],
    names: Callable[[JsonField], str],
    target: SessionContainer,
) -> None:
    for name, json_field in JSON_FIELDS.items():
        request, struct = json_field.build(target)
        fill(struct)
        try:
            await _expect_invalid_argument(stub, json_field.method, request, names(json_field))
        except AssertionError as error:
            error.add_note(f"in {name}")
            raise


@pytest.mark.parametrize("hostile", HOSTILE_VALUES.values(), ids=HOSTILE_VALUES.keys())
async def test_hostile_json_value_is_invalid_argument(
    hostile: Hostile, stub: pb_grpc.SessionServiceStub, client: SessionClient, witness: Witness
) -> None:
    """What the Python client refuses to send (NaN, values without a kind, nesting
    past MAX_JSON_DEPTH), sent as raw protobuf to every field that takes JSON."""
    fill, refusal_names = hostile
    names: dict[str, Callable[[JsonField], str]] = {
        "field": lambda f: f.field,
        "size": lambda f: f.size_field,
        "request": lambda f: "request",
    }
    await _refused_everywhere(stub, fill, names[refusal_names], witness.session)
    assert await client.get_all_session_handles_for_user("u-json") == []
    await witness.assert_intact()


@pytest.mark.parametrize("over", ["one-byte-over", "300-KiB"])
async def test_json_too_large_is_invalid_argument(
    over: str, stub: pb_grpc.SessionServiceStub, client: SessionClient, witness: Witness
) -> None:
    # {"blob":"x..."}: the compact JSON just past each field's limit, or far past it
    # (past the wire size the authority looks at before converting anything).
    for name, json_field in JSON_FIELDS.items():
        size = json_field.max_bytes - 10 if over == "one-byte-over" else 300 * KIB
        request, struct = json_field.build(witness.session)
        _blob(size)(struct)
        try:
            await _expect_invalid_argument(stub, json_field.method, request, json_field.size_field)
        except AssertionError as error:
            error.add_note(f"in {name}")
            raise
    assert await client.get_all_session_handles_for_user("u-json") == []
    await witness.assert_intact()


@pytest.mark.parametrize("where", ["key", "string"])
async def test_json_string_that_is_not_utf8_is_invalid_argument(
    where: str, channel: grpc.aio.Channel, client: SessionClient, witness: Witness
) -> None:
    """A lone surrogate encoded as UTF-8 bytes, in an object key or a string: no
    protobuf library builds that, but the bytes can be sent."""
    for name, json_field in JSON_FIELDS.items():
        request, struct = json_field.build(witness.session)
        if where == "key":
            struct.fields["@@@@"].string_value = "v"
        else:
            struct.fields["k"].list_value.values.add().string_value = "@@@@"
        data = request.SerializeToString()
        assert data.count(b"@@@@") == 1
        call = channel.unary_unary(f"/session_authority.v1.SessionService/{json_field.method}")
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call(data.replace(b"@@@@", b"\xed\xa0\x80@"))
        try:
            _assert_invalid_argument(raised.value, "request")
        except AssertionError as error:
            error.add_note(f"in {name}")
            raise
    assert await client.get_all_session_handles_for_user("u-json") == []
    await witness.assert_intact()


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strict_json(text: str | bytes) -> Any:
    """Parse as RFC 8259 JSON, which has no NaN or Infinity (other SDKs parse this way)."""
    return json.loads(text, parse_constant=_refuse_constant)


# Doubles at the edges: the largest, the smallest subnormal, minus zero, integers a
# double holds but JSON readers that parse integers exactly would see differently.
EXTREME_NUMBERS = [
    1.7976931348623157e308,
    -1.7976931348623157e308,
    5e-324,
    -0.0,
    2.0**64,
    2.0**53 + 2,
    -(2.0**63),
    1e-300,
]


@pytest.mark.parametrize("number", EXTREME_NUMBERS, ids=[repr(n) for n in EXTREME_NUMBERS])
async def test_extreme_numbers_are_kept_as_json_or_refused(
    number: float, stub: pb_grpc.SessionServiceStub, client: SessionClient, witness: Witness
) -> None:
    """A double JSON can spell: the authority must keep it exactly (as a JSON number
    in what it stores and signs) or refuse it, never store or sign non-JSON."""
    target = await client.create_new_session("u-json")
    for name in STORING_FIELDS:
        json_field = JSON_FIELDS[name]
        request, struct = json_field.build(target)
        struct.fields["huge"].number_value = number
        try:
            response = await getattr(stub, json_field.method)(request)
        except grpc.aio.AioRpcError as error:
            _assert_invalid_argument(error, json_field.field)
            continue
        fields = response.DESCRIPTOR.fields_by_name
        tokens = [response.jwt] if "jwt" in fields else []
        if "access_token" in fields and response.HasField("access_token"):
            tokens.append(response.access_token.token)
        for token in tokens:
            claims = strict_json(unb64url(token.split(".")[1]))
            if "huge" in claims:
                assert claims["huge"] == number, (name, claims["huge"])
        for handle in await client.get_all_session_handles_for_user("u-json"):
            info = await client.get_session_information(handle)
            assert info is not None
            for stored in (
                info.custom_claims_in_access_token_payload,
                info.session_data_in_database,
            ):
                strict_json(json.dumps(stored))
                if "huge" in stored:
                    assert stored["huge"] == number, (name, stored["huge"])
    await witness.assert_intact()


def _nested_list(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


# What JSON cannot carry exactly, which the SDK refuses before any RPC.
NOT_SENDABLE: dict[str, Any] = {
    "integer-past-2^53": 2**53 + 1,
    "negative-integer-past-2^53": -(2**53) - 1,
    "integer-past-int64": 2**64,
    "nan": math.nan,
    "infinity": math.inf,
    "lone-surrogate": "a\udc80b",
    "nested-too-deep": _nested_list(MAX_JSON_DEPTH),  # {"k": [[...]]}: one level too deep
    "not-json": {1, 2},
    "bytes": b"bytes",
}


@pytest.mark.parametrize("value", NOT_SENDABLE.values(), ids=NOT_SENDABLE.keys())
async def test_the_sdk_refuses_values_json_cannot_carry(
    value: Any, client: SessionClient, witness: Witness, rpc_counter: RpcCounter
) -> None:
    """Numbers travel as doubles: an integer past +-2^53 would arrive rounded, so the
    SDK refuses it (as it refuses NaN, non-JSON types and too deep nesting), naming
    the request field, and sends nothing."""
    claim: PrimitiveClaim[Any] = PrimitiveClaim("c", lambda user_id, ctx: None)
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "access_token_payload": lambda: client.create_new_session("u-json", {"k": value}),
        "session_data_in_database": lambda: client.create_new_session("u-json", {}, {"k": value}),
        "new_session_data": lambda: client.update_session_data_in_database(
            witness.handle, {"k": value}
        ),
        "access_token_payload_update": lambda: client.merge_into_access_token_payload(
            witness.handle, {"k": value}
        ),
        "new_access_token_payload": lambda: client.regenerate_access_token(
            witness.session.access_token, {"k": value}
        ),
        "value": lambda: client.set_claim_value(witness.handle, claim, {"k": value}),
        "payload": lambda: client.create_jwt({"k": value}),
        "jwt_payload": lambda: client.validate_claims_in_jwt_payload(
            "u-json", {"k": value}, [ClaimValidator("c", "has_value", 1)]
        ),
        "claim_validators.value": lambda: client.validate_claims_in_jwt_payload(
            "u-json", {}, [ClaimValidator("c", "has_value", {"k": value})]
        ),
    }
    before = rpc_counter.total()
    for field, call in calls.items():
        with pytest.raises(InvalidArgumentError) as raised:
            try:
                await call()
            except InvalidArgumentError:
                raise
            except Exception as error:
                raise AssertionError(f"{field}: {type(error).__name__}: {error}") from error
            raise AssertionError(f"{field}: sent")
        assert raised.value.field == field, (field, raised.value.field, raised.value.message)
    assert rpc_counter.total() == before  # refused before anything was sent
    assert await client.get_all_session_handles_for_user("u-json") == []
    await witness.assert_intact()


# --- user ids and handles ----------------------------------------------------------------

BAD_USER_IDS = {"empty": "", "ten-kilobytes": "u" * 10 * 1024, "513-chars": "u" * 513}


@pytest.mark.parametrize("user_id", BAD_USER_IDS.values(), ids=BAD_USER_IDS.keys())
async def test_bad_user_id_is_invalid_argument(
    user_id: str, client: SessionClient, witness: Witness
) -> None:
    for call in (
        client.create_new_session,
        client.get_all_session_handles_for_user,
        client.revoke_all_sessions_for_user,
    ):
        with pytest.raises(InvalidArgumentError) as raised:
            await call(user_id)
        assert isinstance(raised.value, ValueError)
        assert raised.value.field == "user_id", call.__name__
    await witness.assert_intact()


async def test_longest_allowed_user_id_works(client: SessionClient, witness: Witness) -> None:
    user_id = "u" * 512
    session = await client.create_new_session(user_id)
    assert await client.get_all_session_handles_for_user(user_id) == [session.session_handle]
    assert await client.revoke_all_sessions_for_user(user_id) == [session.session_handle]
    await witness.assert_intact()


async def test_unknown_handles(client: SessionClient, witness: Witness) -> None:
    unknown = str(uuid.uuid4())
    assert await client.revoke_session(unknown) is False
    assert await client.get_session_information(unknown) is None
    assert await client.update_session_data_in_database(unknown, {"x": 1}) is False
    assert await client.merge_into_access_token_payload(unknown, {"x": 1}) is False
    assert await client.revoke_multiple_sessions([unknown]) == []
    assert await client.revoke_multiple_sessions([unknown, "not-a-uuid", unknown]) == []
    assert await client.get_session_information("not-a-uuid") is None
    await witness.assert_intact()


@pytest.mark.parametrize("handle", ["", "h" * 129])
async def test_bad_handle_is_invalid_argument(
    handle: str, client: SessionClient, witness: Witness
) -> None:
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: client.revoke_session(handle),
        lambda: client.get_session_information(handle),
        lambda: client.update_session_data_in_database(handle, {}),
        lambda: client.merge_into_access_token_payload(handle, {}),
        lambda: client.revoke_multiple_sessions([witness.handle, handle]),
    ]
    for call in calls:
        with pytest.raises(InvalidArgumentError) as raised:
            await call()
        assert raised.value.field in ("session_handle", "session_handles")
    await witness.assert_intact()  # the valid handle in the batch was not revoked either


async def test_revoking_twice(client: SessionClient, witness: Witness) -> None:
    session = await client.create_new_session("twice")
    assert await client.revoke_session(session.session_handle) is True
    assert await client.revoke_session(session.session_handle) is False
    assert await client.get_session_information(session.session_handle) is None
    assert await client.revoke_multiple_sessions([session.session_handle]) == []
    await witness.assert_intact()


async def test_revoke_multiple_with_duplicates(client: SessionClient, witness: Witness) -> None:
    first = await client.create_new_session("dup")
    second = await client.create_new_session("dup")
    handles = [first.session_handle] * 3 + [str(uuid.uuid4()), first.session_handle]
    assert await client.revoke_multiple_sessions(handles) == [first.session_handle]
    assert await client.get_all_session_handles_for_user("dup") == [second.session_handle]
    assert await client.revoke_multiple_sessions(handles) == []
    await witness.assert_intact()
