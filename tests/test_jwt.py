"""CreateJwt and OpenID discovery against a real server: JWTs verified by PyJWT from
the JWKS alone, with the static key and the dynamic one.

PyJWT checks ``iat`` and ``exp`` against the real time, so these tests set the
shared manual clock to (or relative to) the real time before the server starts;
nothing sleeps.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import jwt
import pytest
from session_authority import (
    InvalidArgumentError,
    SessionClient,
    TryRefreshTokenError,
    UnauthorisedError,
)
from session_authority_server.app import RunningServer
from session_authority_server.tokens import JwtMinter

from .conftest import ManualClock

Start = Callable[..., Awaitable[RunningServer]]
Connect = Callable[..., SessionClient]


def default_issuer(server: RunningServer) -> str:
    """The issuer a server derives when none is set: its HTTP side's address."""
    return f"http://127.0.0.1:{server.http_port}"


HUNDRED_YEARS_S = 100 * 365 * 24 * 3600  # SuperTokens' default JWT validity: 3153600000 s
DAY = 24 * 3600


def real_now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
async def jwt_client(
    clock: ManualClock, start: Start, connect: Connect
) -> AsyncIterator[SessionClient]:
    """A client of a server whose clock reads the real time (as PyJWT's does)."""
    clock.ms = real_now_ms()
    server = await start()
    async with connect(server) as client:
        yield client


async def decode(client: SessionClient, token: str, **options: Any) -> dict[str, Any]:
    """Verify with PyJWT, using only the authority's JWKS."""
    header = jwt.get_unverified_header(token)
    jwks = jwt.PyJWKSet.from_dict(await client.get_jwks())
    key = jwks[header["kid"]]
    return jwt.decode(token, key=key.key, algorithms=[header["alg"]], **options)


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
@pytest.mark.parametrize("use_static_signing_key", [None, True, False])
async def test_create_jwt_verifies_with_pyjwt_from_the_jwks(
    algorithm: str,
    use_static_signing_key: bool | None,
    clock: ManualClock,
    start: Start,
    connect: Connect,
) -> None:
    clock.ms = real_now_ms()
    server = await start(signing_algorithm=algorithm)
    async with connect(server) as client:
        session = await client.create_new_session("user-1")
        token = await client.create_jwt(
            {"a": 1, "nested": {"b": [True, None]}}, use_static_signing_key=use_static_signing_key
        )
        header = jwt.get_unverified_header(token)
        session_kid = jwt.get_unverified_header(session.access_token)["kid"]
        assert header["alg"] == algorithm
        assert "version" not in header  # not an access token
        if use_static_signing_key is False:
            assert header["kid"].startswith("d-")
            assert header["kid"] == session_kid  # the key that signs access tokens now
        else:
            assert header["kid"].startswith("s-")
            assert header["kid"] != session_kid

        claims = await decode(client, token, issuer=default_issuer(server))
        now_s = clock.ms // 1000
        assert claims == {
            "a": 1,
            "nested": {"b": [True, None]},
            "iss": default_issuer(server),
            "iat": now_s,
            "exp": now_s + HUNDRED_YEARS_S,
            "stt": 1,  # SuperTokens' "not a session token"
        }


async def test_the_static_key_is_in_the_jwks_and_stable(jwt_client: SessionClient) -> None:
    first = await jwt_client.create_jwt()
    second = await jwt_client.create_jwt({"x": "y"}, use_static_signing_key=True)
    kid = jwt.get_unverified_header(first)["kid"]
    assert kid.startswith("s-")
    assert jwt.get_unverified_header(second)["kid"] == kid
    assert kid in [key["kid"] for key in (await jwt_client.get_jwks())["keys"]]
    claims = await decode(jwt_client, first)
    assert claims["exp"] - claims["iat"] == HUNDRED_YEARS_S
    assert claims["iss"] == (await jwt_client.get_open_id_discovery_configuration())["issuer"]


async def test_the_static_key_survives_rotation(
    clock: ManualClock, start: Start, connect: Connect
) -> None:
    # Start ten days in the past; a rotation every day; end at the real time.
    clock.ms = real_now_ms() - 10 * DAY * 1000
    server = await start(signing_key_rotation=DAY)
    async with connect(server) as client:
        static_before = await client.create_jwt({"n": 1})
        dynamic_before = await client.create_jwt({"n": 1}, use_static_signing_key=False)
        # A successor is published an hour before it signs: the first call after
        # the gap publishes it, and two hours later (the real time) it signs.
        clock.advance(10 * DAY - 2 * 3600)
        await client.create_jwt({"n": 0}, use_static_signing_key=False)
        clock.advance(2 * 3600)
        static_after = await client.create_jwt({"n": 2})
        dynamic_after = await client.create_jwt({"n": 2}, use_static_signing_key=False)

        def kid(token: str) -> str:
            value = jwt.get_unverified_header(token)["kid"]
            assert isinstance(value, str)
            return value

        assert kid(dynamic_after) != kid(dynamic_before)  # the dynamic key rotated
        assert kid(static_after) == kid(static_before)  # the static key never does
        assert (await decode(client, static_before))["n"] == 1
        assert (await decode(client, static_after))["n"] == 2
        assert (await decode(client, dynamic_after))["n"] == 2


@pytest.mark.parametrize("validity_seconds", [0, -5])
async def test_create_jwt_rejects_a_validity_of_zero_or_less(
    validity_seconds: int, client: SessionClient
) -> None:
    for use_static_signing_key in (None, False):
        with pytest.raises(InvalidArgumentError) as raised:
            await client.create_jwt(
                {"a": 1},
                validity_seconds=validity_seconds,
                use_static_signing_key=use_static_signing_key,
            )
        assert raised.value.field == "validity"


async def test_a_jwt_is_rejected_by_pyjwt_after_its_validity(
    clock: ManualClock, start: Start, connect: Connect
) -> None:
    # The authority's clock is an hour behind the real time, so a 60 s JWT it
    # issues has expired for PyJWT, while a two-hour one has not.
    clock.ms = real_now_ms() - 3600 * 1000
    server = await start()
    async with connect(server) as client:
        for use_static_signing_key in (None, False):
            short = await client.create_jwt(
                {"a": 1}, validity_seconds=60, use_static_signing_key=use_static_signing_key
            )
            unverified = jwt.decode(short, options={"verify_signature": False})
            assert unverified["iat"] == clock.ms // 1000
            assert unverified["exp"] == unverified["iat"] + 60
            with pytest.raises(jwt.ExpiredSignatureError):
                await decode(client, short)
            # Only the validity is wrong: the signature is fine.
            assert (await decode(client, short, options={"verify_exp": False}))["a"] == 1

            long = await client.create_jwt(
                {"a": 2}, validity_seconds=7200, use_static_signing_key=use_static_signing_key
            )
            claims = await decode(client, long)
            assert claims["exp"] - claims["iat"] == 7200
            assert claims["a"] == 2


@pytest.mark.parametrize("use_static_signing_key", [None, False], ids=["static", "dynamic"])
async def test_a_create_jwt_token_is_not_an_access_token(
    use_static_signing_key: bool | None,
    server: RunningServer,
    connect: Connect,
    clock: ManualClock,
) -> None:
    async with connect(server) as local, connect(server, verify_locally=False) as remote:
        session = await local.create_new_session("user-1")
        payload = session.access_token_payload
        attempts: dict[str, Callable[[str], Awaitable[Any]]] = {
            "local": local.get_session,
            "remote": remote.get_session,
            "check-database": lambda token: local.get_session(token, check_database=True),
            "regenerate": lambda token: local.regenerate_access_token(token, {"x": 1}),
        }
        # A JWT that copies a real session's payload is not signed at all (the
        # interop tests show why: other SDKs would take it for the session).
        copied = {k: v for k, v in payload.items() if k not in ("iat", "exp", "iss")}
        with pytest.raises(InvalidArgumentError) as raised:
            await local.create_jwt(copied, use_static_signing_key=use_static_signing_key)
        assert raised.value.field == "payload"
        for body in ({"a": 1}, {"sub": payload["sub"], "a": 1}):
            token = await local.create_jwt(body, use_static_signing_key=use_static_signing_key)
            for name, attempt in attempts.items():
                try:
                    result = await attempt(token)
                except (UnauthorisedError, TryRefreshTokenError):
                    continue
                raise AssertionError(f"{name} accepted a CreateJwt token: {result!r}")
        # The real session is untouched.
        info = await local.get_session_information(session.session_handle)
        assert info is not None
        assert info.custom_claims_in_access_token_payload == {}


@pytest.mark.parametrize(
    ("stt", "accepted"),
    [(0, True), (1, False), (2, False), (True, False), (False, False), (None, False), ("0", False)],
)
async def test_an_access_token_with_a_token_type_other_than_0_is_refused(
    stt: Any, accepted: bool, server: RunningServer, connect: Connect
) -> None:
    """As SuperTokens' SDKs do: "stt" absent or 0 is a session, anything else is not,
    even in a v5 token the authority's own key signed."""
    async with connect(server) as local, connect(server, verify_locally=False) as remote:
        session = await local.create_new_session("user-1")
        signer = await server.authority.keys.signer()
        token = JwtMinter().mint(signer, {**session.access_token_payload, "stt": stt})
        for client in (local, remote):
            if accepted:
                verified = await client.get_session(token)
                assert verified is not None
                assert verified.session_handle == session.session_handle
            else:
                with pytest.raises(UnauthorisedError):
                    await client.get_session(token)


# --- OpenID discovery --------------------------------------------------------------------------


async def test_discovery_document_uses_the_configured_issuer(
    clock: ManualClock, start: Start, connect: Connect
) -> None:
    clock.ms = real_now_ms()
    issuer = "https://auth.example.com"
    server = await start(issuer=issuer)
    async with connect(server) as client:
        document = await client.get_open_id_discovery_configuration()
        assert document["issuer"] == issuer
        assert document["jwks_uri"] == "https://auth.example.com/.well-known/jwks.json"
        # JWTs and access tokens name the same issuer.
        claims = await decode(client, await client.create_jwt(), issuer=issuer)
        assert claims["iss"] == issuer
        session = await client.create_new_session("user-1")
        assert session.access_token_payload["iss"] == issuer


async def test_discovery_document_default_issuer(
    server: RunningServer, client: SessionClient
) -> None:
    document = await client.get_open_id_discovery_configuration()
    assert document["issuer"] == default_issuer(server)
    assert document["jwks_uri"] == default_issuer(server) + "/.well-known/jwks.json"


async def test_discovery_issuer_matches_the_iss_of_issued_tokens_with_a_trailing_slash(
    clock: ManualClock, start: Start, connect: Connect
) -> None:
    # OpenID Connect Discovery 1.0 section 4.3: the discovery issuer and the iss of
    # the tokens must be identical, or verifiers must refuse them.
    clock.ms = real_now_ms()
    server = await start(issuer="https://auth.example.com/tenant/")
    async with connect(server) as client:
        document = await client.get_open_id_discovery_configuration()
        assert "//.well-known" not in document["jwks_uri"]
        assert document["jwks_uri"] == document["issuer"].rstrip("/") + "/.well-known/jwks.json"
        claims = await decode(client, await client.create_jwt())
        assert claims["iss"] == document["issuer"]
        session = await client.create_new_session("user-1")
        assert session.access_token_payload["iss"] == document["issuer"]
