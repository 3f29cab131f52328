"""What the authority signs, and how it checks it: access tokens in SuperTokens'
v5 layout, the plain JWTs of CreateJwt, and the discovery document that tells
verifiers where the keys are. One issuer URL (``iss``) for all of them, settled
at start before any token is minted."""

from __future__ import annotations

from typing import Any

from session_authority.errors import InvalidArgumentError
from session_authority.session import TokenInfo
from session_authority.verify import parse_access_token, verify_access_token

from .clock import Clock
from .keys import KeyRing
from .storage.base import SessionRow
from .tokens import JwtMinter
from .validation import check_create_jwt_payload

# CreateJwt's default validity, as in the reference: 100 years.
DEFAULT_JWT_VALIDITY_S = 100 * 365 * 24 * 3600
MAX_JWT_VALIDITY_S = 10 * DEFAULT_JWT_VALIDITY_S
# The "stt" (token type) of every CreateJwt token, as SuperTokens core marks its
# own: a session token has none or 0, and SuperTokens' SDKs reject any other.
NOT_A_SESSION_TOKEN = 1


class TokenIssuer:
    def __init__(self, keys: KeyRing, clock: Clock, *, issuer: str, validity_ms: int) -> None:
        self.keys = keys
        # Public: the start may settle it from the port the HTTP side bound, before
        # any token exists.
        self.issuer = issuer
        self._clock = clock
        self._validity_ms = validity_ms
        self._minter = JwtMinter()

    async def mint_access_token(
        self,
        row: SessionRow,
        custom_claims: dict[str, Any],
        *,
        refresh_token_hash: str,
        anti_csrf_token: str | None,
        now_ms: int,
        expiry_s: int | None = None,
    ) -> tuple[dict[str, Any], TokenInfo]:
        """An access token of the session (expiring with the access-token validity,
        never past the session's absolute end, unless expiry_s is given): its
        payload and the token."""
        if expiry_s is None:
            expiry_ms = now_ms + self._validity_ms
            if row.absolute_expires_ms is not None:  # no token outlives its session
                expiry_ms = min(expiry_ms, row.absolute_expires_ms)
            expiry_s = expiry_ms // 1000
        # The v5 layout, in SuperTokens' order; custom claims follow.
        payload: dict[str, Any] = {
            "sub": row.user_id,
            "exp": expiry_s,
            "iat": now_ms // 1000,
            "sessionHandle": row.handle,
            "refreshTokenHash1": refresh_token_hash,
            "parentRefreshTokenHash1": None,
            "antiCsrfToken": anti_csrf_token,
            "tId": row.tenant_id,
            "rsub": row.user_id,
            "iss": self.issuer,
        }
        payload.update(custom_claims)
        token = self._minter.mint(await self.keys.signer(), payload)
        return payload, TokenInfo(token, expiry_s * 1000, now_ms)

    async def verify_access_token(
        self, access_token: str, now_ms: int, *, check_expiry: bool
    ) -> dict[str, Any]:
        """The payload of one of our access tokens; raises the recipe's errors."""
        parsed = parse_access_token(access_token)
        key = await self.keys.verification_key_reloading(parsed.kid)
        return verify_access_token(parsed, key, now_ms, check_expiry=check_expiry)

    async def create_jwt(
        self,
        payload: dict[str, Any],
        validity_seconds: int | None,
        use_static_signing_key: bool | None,
    ) -> str:
        """Sign a payload that is no session token; ``iat``, ``exp`` and ``stt`` are
        set here, ``iss`` unless given.

        The keys are those of access tokens, and SuperTokens' SDKs tell a session
        token by its payload: session-layout claims are refused, and ``"stt": 1``
        (SuperTokens' mark for "not a session token", which its SDKs reject as an
        access token) is set after the caller's claims.
        """
        check_create_jwt_payload(payload, "payload")
        validity = DEFAULT_JWT_VALIDITY_S if validity_seconds is None else validity_seconds
        if not 0 < validity <= MAX_JWT_VALIDITY_S:
            raise InvalidArgumentError(
                f"validity must be between 1 and {MAX_JWT_VALIDITY_S} seconds",
                field="validity",
            )
        now_s = self._clock.now_ms() // 1000
        claims = {
            "iss": self.issuer,
            **payload,
            "iat": now_s,
            "exp": now_s + validity,
            "stt": NOT_A_SESSION_TOKEN,
        }
        signer = (
            self.keys.static_key
            if use_static_signing_key is None or use_static_signing_key
            else await self.keys.signer()
        )
        return self._minter.mint(signer, claims, access_token=False)

    def open_id_discovery_configuration(self) -> dict[str, Any]:
        """What is true of this authority: who issues its tokens, and where their
        keys are. It is no OpenID Provider (no authorization endpoint, no ID
        tokens), so it claims no response or subject types and no ID-token
        algorithms: a strict OIDC client would be right to reject those."""
        return {"issuer": self.issuer, "jwks_uri": f"{self.issuer}/.well-known/jwks.json"}
