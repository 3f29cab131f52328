"""Minting access tokens and the refresh-token format.

Access token: a JWT in SuperTokens' v5 layout, signed with the ring's current
key object (never a PEM per call). The header for a key is encoded once.

Refresh token: opaque to clients, authenticated by the authority:

    base64url( version:1 | flags:1 | session handle:16 | secret:32 | HMAC-SHA256:32 )

The MAC (keyed by a server secret in the database) makes a forged or mangled
token recognisable before any storage access, so it can never trigger theft
detection. Storage keeps only SHA-256(secret). The successor of a secret is
HMAC(key, "successor" | secret), so a refresh retried within the grace period
gets the very same successor, and the anti-CSRF token of a pair is derived from
its secret the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from typing import Any

from session_authority.verify import ACCESS_TOKEN_VERSION, b64url_decode, b64url_encode

from .keys import SigningKey

REFRESH_TOKEN_VERSION = 1
_FLAG_ANTI_CSRF = 0x01
_SECRET_BYTES = 32
_MAC_BYTES = 32
_TOKEN_BYTES = 2 + 16 + _SECRET_BYTES + _MAC_BYTES
REFRESH_TOKEN_LENGTH = (_TOKEN_BYTES * 4 + 2) // 3  # unpadded base64url


def json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class JwtMinter:
    """Signs JWTs. Access tokens carry ``version: "5"`` in the header; plain JWTs
    (CreateJwt) do not, so verifiers never take one for the other."""

    def __init__(self) -> None:
        self._headers: dict[tuple[str, bool], str] = {}

    def mint(
        self, signer: SigningKey, payload: dict[str, Any], *, access_token: bool = True
    ) -> str:
        header = self._headers.get((signer.kid, access_token))
        if header is None:
            fields = {"alg": signer.algorithm_name, "kid": signer.kid, "typ": "JWT"}
            if access_token:
                fields["version"] = ACCESS_TOKEN_VERSION
            header = b64url_encode(json_text(fields).encode())
            self._headers[(signer.kid, access_token)] = header
        signing_input = f"{header}.{b64url_encode(json_text(payload).encode())}"
        signature = signer.public.algorithm.sign(signing_input.encode(), signer.private_key)
        return f"{signing_input}.{b64url_encode(signature)}"


@dataclass(frozen=True, slots=True)
class RefreshTokenContents:
    session_handle: str
    secret: bytes
    anti_csrf: bool


def secret_hash(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


def token_hash_hex(token: str) -> str:
    """SuperTokens' refreshTokenHash1 claim: SHA-256 of the refresh token, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


class RefreshTokenCodec:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, data: bytes) -> bytes:
        return hmac.new(self._key, data, hashlib.sha256).digest()

    def issue(self, session_handle: str, secret: bytes, *, anti_csrf: bool) -> str:
        body = (
            bytes([REFRESH_TOKEN_VERSION, _FLAG_ANTI_CSRF if anti_csrf else 0])
            + uuid.UUID(session_handle).bytes
            + secret
        )
        return b64url_encode(body + self._mac(body))

    def parse(self, token: str) -> RefreshTokenContents | None:
        """The token's contents if the authority issued it, else None."""
        if len(token) != REFRESH_TOKEN_LENGTH:
            return None
        try:
            raw = b64url_decode(token)
        except ValueError:
            return None
        if len(raw) != _TOKEN_BYTES or raw[0] != REFRESH_TOKEN_VERSION:
            return None
        if b64url_encode(raw) != token:  # only the canonical spelling of a token is it
            return None
        body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        return RefreshTokenContents(
            session_handle=str(uuid.UUID(bytes=body[2:18])),
            secret=body[18:],
            anti_csrf=bool(body[1] & _FLAG_ANTI_CSRF),
        )

    def successor_secret(self, secret: bytes) -> bytes:
        return self._mac(b"successor:" + secret)

    def anti_csrf_token(self, secret: bytes) -> str:
        return b64url_encode(self._mac(b"anti-csrf:" + secret)[:24])
