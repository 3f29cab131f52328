"""Access tokens' format and the pure functions that verify one, shared by the
client SDK (local verification) and the authority.

The verifier trusts the key, never the token: the algorithm comes from the JWK
the ``kid`` names, so ``alg: none`` or an HS256 token "signed" with a public key
fail like any other bad signature. Key objects are parsed once per JWKS fetch.

Failure classes follow the SuperTokens recipe: a token that is not a well-formed
v5 access token is UNAUTHORISED (clear_tokens false); a bad signature, an
unknown key or an expired token is TRY_REFRESH_TOKEN.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.algorithms import Algorithm

from .errors import TryRefreshTokenError, UnauthorisedError

ACCESS_TOKEN_VERSION = "5"  # noqa: S105 (a format version, not a secret)

# Claims the authority owns; custom payloads may not set them.
PROTECTED_CLAIMS = frozenset(
    {
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
        # SuperTokens' token type: its SDKs refuse a session token with any but 0.
        "stt",
    }
)

# The tenant of a session whose token carries no ``tId``.
DEFAULT_TENANT_ID = "public"

# Far above any real token (payloads are capped well below this by the
# authority), low enough that a hostile megabyte is refused before any parsing.
MAX_ACCESS_TOKEN_LENGTH = 128 * 1024

ALGORITHMS: Mapping[str, Algorithm] = jwt.algorithms.get_default_algorithms()
SUPPORTED_ALGORITHMS = ("RS256", "ES256", "EdDSA")


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A parsed public key from the JWKS, ready to verify signatures."""

    kid: str
    algorithm_name: str
    algorithm: Algorithm
    key: Any


def keys_from_jwks(jwks: list[dict[str, Any]]) -> dict[str, VerificationKey]:
    """Parse every usable signing key of a JWKS once; unusable entries are skipped."""
    keys: dict[str, VerificationKey] = {}
    for jwk in jwks:
        alg = jwk.get("alg")
        kid = jwk.get("kid")
        if alg not in SUPPORTED_ALGORITHMS or not isinstance(kid, str):
            continue
        try:
            parsed = jwt.PyJWK(jwk, algorithm=alg)
        except jwt.PyJWKError:
            continue
        keys[kid] = VerificationKey(kid, alg, ALGORITHMS[alg], parsed.key)
    return keys


@dataclass(frozen=True, slots=True)
class ParsedAccessToken:
    """A token split and its header read, before any signature check."""

    kid: str
    alg: str
    signing_input: bytes
    signature: bytes
    payload_segment: str


_GARBLED = "the access token is not a valid session access token"

# header segment -> (kid, alg). Headers repeat for every token one key signs, so
# most verifications skip base64 and JSON for the header entirely.
_header_cache: dict[str, tuple[str, str]] = {}
_HEADER_CACHE_SIZE = 256


# Our headers are about 100 characters; a longer one is no token of ours, and
# parsing it (deeply nested JSON, say) would be work for nothing.
_MAX_HEADER_SEGMENT_LENGTH = 1024


def _read_header(segment: str) -> tuple[str, str]:
    cached = _header_cache.get(segment)
    if cached is not None:
        return cached
    if len(segment) > _MAX_HEADER_SEGMENT_LENGTH:
        raise UnauthorisedError(_GARBLED, clear_tokens=False)
    try:
        header = json.loads(b64url_decode(segment))
    except (ValueError, binascii.Error, RecursionError) as exc:
        raise UnauthorisedError(_GARBLED, clear_tokens=False) from exc
    if not isinstance(header, dict):
        raise UnauthorisedError(_GARBLED, clear_tokens=False)
    kid, alg = header.get("kid"), header.get("alg")
    if (
        not isinstance(kid, str)
        or not isinstance(alg, str)
        or header.get("version") != ACCESS_TOKEN_VERSION
    ):
        raise UnauthorisedError(_GARBLED, clear_tokens=False)
    if len(_header_cache) >= _HEADER_CACHE_SIZE:
        _header_cache.clear()
    _header_cache[segment] = (kid, alg)
    return kid, alg


def parse_access_token(token: str) -> ParsedAccessToken:
    """Split a token and read its header; raises UnauthorisedError if malformed."""
    if not token or len(token) > MAX_ACCESS_TOKEN_LENGTH:
        raise UnauthorisedError(_GARBLED, clear_tokens=False)
    parts = token.split(".")
    if len(parts) != 3:
        raise UnauthorisedError(_GARBLED, clear_tokens=False)
    header_segment, payload_segment, signature_segment = parts
    kid, alg = _read_header(header_segment)
    try:
        signature = b64url_decode(signature_segment)
        signing_input = f"{header_segment}.{payload_segment}".encode("ascii")
    except (ValueError, binascii.Error) as exc:
        raise UnauthorisedError(_GARBLED, clear_tokens=False) from exc
    if b64url_encode(signature) != signature_segment:
        # Base64 leaves spare bits in the last character; one token has one spelling.
        raise TryRefreshTokenError("the access token's signature is invalid")
    return ParsedAccessToken(kid, alg, signing_input, signature, payload_segment)


def verify_access_token(
    parsed: ParsedAccessToken,
    key: VerificationKey | None,
    now_ms: int,
    *,
    check_expiry: bool = True,
) -> dict[str, Any]:
    """Check signature, layout and expiry; return the decoded payload."""
    if key is None or parsed.alg != key.algorithm_name:
        raise TryRefreshTokenError("the access token's signing key is unknown or does not match")
    if not key.algorithm.verify(parsed.signing_input, key.key, parsed.signature):
        raise TryRefreshTokenError("the access token's signature is invalid")
    try:
        payload = json.loads(b64url_decode(parsed.payload_segment))
    except (ValueError, binascii.Error, RecursionError) as exc:
        raise UnauthorisedError(_GARBLED, clear_tokens=False) from exc
    if not _has_session_layout(payload):
        raise UnauthorisedError(_GARBLED, clear_tokens=False)
    if check_expiry and payload["exp"] * 1000 <= now_ms:
        raise TryRefreshTokenError("the access token has expired")
    return payload  # type: ignore[no-any-return]


def _has_session_layout(payload: object) -> bool:
    if not isinstance(payload, dict):
        return False
    return (
        isinstance(payload.get("sub"), str)
        and isinstance(payload.get("exp"), int)
        and isinstance(payload.get("iat"), int)
        and isinstance(payload.get("sessionHandle"), str)
        and isinstance(payload.get("refreshTokenHash1"), str)
        and isinstance(payload.get("antiCsrfToken"), str | None)
        # SuperTokens' token type, checked as its SDKs do: a session has none or 0.
        and payload.get("stt", 0) == 0
        and not isinstance(payload.get("stt"), bool)
    )


def check_anti_csrf(payload: Mapping[str, Any], presented: str | None, check: bool | None) -> None:
    """Apply the anti-CSRF rule shared by the authority and local verification.

    A token carries an ``antiCsrfToken`` only when one was issued (VIA_TOKEN mode,
    not disabled). When it does and the check applies (``check`` true or left
    unset), the presented token must match it; otherwise TRY_REFRESH_TOKEN.
    """
    expected = payload.get("antiCsrfToken")
    if check is False or expected is None:
        return
    if presented is None:
        raise TryRefreshTokenError("the anti-CSRF token is missing")
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise TryRefreshTokenError("the anti-CSRF token does not match")
