"""CreateJwt: plain JWTs signed with the access-token keys, which must never
pass as a session: session-layout claims refused, "stt": 1 always set."""

from __future__ import annotations

import pytest
from session_authority.errors import InvalidArgumentError, UnauthorisedError
from session_authority_server.assembly import Authority

from ..conftest import ManualClock
from .support import ISSUER, jwt_parts, verified_claims


async def test_a_jwt_is_signed_by_the_static_key_with_stt_1(
    authority: Authority, clock: ManualClock
) -> None:
    token = await authority.tokens.create_jwt({"sub": "service-a", "aud": "billing"}, 60, None)

    header, _ = jwt_parts(token)
    static = authority.keys.static_key
    assert header == {"alg": "ES256", "kid": static.kid, "typ": "JWT"}  # no "version"
    now_s = clock.now_ms() // 1000
    assert verified_claims(token, static.public) == {
        "iss": ISSUER,
        "sub": "service-a",
        "aud": "billing",
        "iat": now_s,
        "exp": now_s + 60,
        "stt": 1,
    }


async def test_the_caller_may_set_iss_but_not_iat_or_exp(
    authority: Authority, clock: ManualClock
) -> None:
    token = await authority.tokens.create_jwt(
        {"iss": "https://other.test", "iat": 1, "exp": 2}, None, True
    )
    _, payload = jwt_parts(token)
    now_s = clock.now_ms() // 1000
    hundred_years_s = 100 * 365 * 24 * 3600  # the default validity, as in SuperTokens
    assert payload == {
        "iss": "https://other.test",
        "iat": now_s,
        "exp": now_s + hundred_years_s,
        "stt": 1,
    }


async def test_without_the_static_key_the_current_signing_key_signs(
    authority: Authority,
) -> None:
    token = await authority.tokens.create_jwt({"sub": "service-a"}, 60, False)
    header, _ = jwt_parts(token)
    signer = await authority.keys.signer()
    assert header["kid"] == signer.kid
    assert verified_claims(token, signer.public)["stt"] == 1


@pytest.mark.parametrize(
    "claim",
    ["sessionHandle", "refreshTokenHash1", "antiCsrfToken", "tId", "rsub", "userId", "stt"],
)
async def test_session_claims_are_refused(authority: Authority, claim: str) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        await authority.tokens.create_jwt({"sub": "x", claim: "y"}, 60, None)
    assert refused.value.field == "payload"


@pytest.mark.parametrize("validity", [0, -1, 10 * 100 * 365 * 24 * 3600 + 1])
async def test_validity_is_checked(authority: Authority, validity: int) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        await authority.tokens.create_jwt({}, validity, None)
    assert refused.value.field == "validity"


async def test_a_jwt_never_passes_as_an_access_token(authority: Authority) -> None:
    async def get(token: str) -> None:
        await authority.sessions.get_session(
            token, None, anti_csrf_check=None, check_database=False
        )

    # Its header has no "version", whichever key signed it.
    for static in (True, False):
        with pytest.raises(UnauthorisedError):
            await get(await authority.tokens.create_jwt({"sub": "user-1"}, 60, static))
