"""Token formats: the JWT signer, and the refresh-token and page-token codecs.

JWTs (access tokens, whose layout token_issuer.py fills in, and CreateJwt's) are
signed with the ring's key objects (never a PEM per call); the header for a key
is encoded once.

Refresh token: opaque to clients, authenticated by the authority:

    base64url( version:1 | flags:1 | session handle:16 | secret:32 | HMAC-SHA256:32 )

The MAC (keyed by a server secret in the database) makes a forged or mangled
token recognisable before any storage access, so it can never trigger theft
detection. Storage keeps only SHA-256(secret). The successor of a secret is
HMAC(key, "successor" | secret), so a refresh retried within the grace period
gets the very same successor, and the anti-CSRF token of a pair is derived from
its secret the same way.

Page token (ListSessions): the position after a page's last session, opaque to
clients and authenticated the same way:

    base64url( version:1 | created_ms:8 | session handle:16 | HMAC-SHA256:32 )

The MAC also covers the user id the token was issued for (which the token does
not carry), so a token pages only through that user's sessions. Its key is
derived from the refresh-token key, never that key itself.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from session_authority.json_text import compact_json
from session_authority.verify import ACCESS_TOKEN_VERSION, b64url_decode, b64url_encode

from .keys import SigningKey

REFRESH_TOKEN_VERSION = 1
_FLAG_ANTI_CSRF = 0x01
_SECRET_BYTES = 32
_MAC_BYTES = 32
_TOKEN_BYTES = 2 + 16 + _SECRET_BYTES + _MAC_BYTES
REFRESH_TOKEN_LENGTH = (_TOKEN_BYTES * 4 + 2) // 3  # unpadded base64url


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
            header = b64url_encode(compact_json(fields).encode())
            self._headers[(signer.kid, access_token)] = header
        signing_input = f"{header}.{b64url_encode(compact_json(payload).encode())}"
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


def _authenticated_body(
    token: str, length: int, size: int, version: int, mac: Callable[[bytes], bytes]
) -> bytes | None:
    """The body of base64url(body | MAC) if the token is one the authority issued
    (its length, version, canonical spelling and MAC), else None."""
    if len(token) != length:
        return None
    try:
        raw = b64url_decode(token)
    except ValueError:
        return None
    if len(raw) != size or raw[0] != version:
        return None
    if b64url_encode(raw) != token:  # only the canonical spelling of a token is it
        return None
    body, tag = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    return body if hmac.compare_digest(tag, mac(body)) else None


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
        body = _authenticated_body(
            token, REFRESH_TOKEN_LENGTH, _TOKEN_BYTES, REFRESH_TOKEN_VERSION, self._mac
        )
        if body is None:
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


PAGE_TOKEN_VERSION = 1
_PAGE_TOKEN_KEY_LABEL = b"page-token"
_POSITION = struct.Struct(">Q")
_PAGE_TOKEN_BYTES = 1 + _POSITION.size + 16 + _MAC_BYTES
PAGE_TOKEN_LENGTH = (_PAGE_TOKEN_BYTES * 4 + 2) // 3  # unpadded base64url
# What both stores can bind as an integer (SQLite INTEGER, PostgreSQL BIGINT).
_MAX_POSITION_MS = 2**63 - 1


class PageTokenCodec:
    """ListSessions page tokens: (created_ms, session handle) of the last session
    listed, bound to the user id. Every replica derives the same key from the
    shared refresh-token key, so each accepts the others' tokens and nothing else."""

    def __init__(self, refresh_token_key: bytes) -> None:
        # A subkey: the refresh-token key itself MACs nothing but refresh tokens.
        self._key = hmac.new(refresh_token_key, _PAGE_TOKEN_KEY_LABEL, hashlib.sha256).digest()

    def _mac(self, body: bytes, user_id: str) -> bytes:
        # body has a fixed length, so body | user id is unambiguous.
        message = body + user_id.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def issue(self, user_id: str, created_ms: int, session_handle: str) -> str:
        if not 0 <= created_ms <= _MAX_POSITION_MS:
            raise ValueError("created_ms is out of range")
        body = (
            bytes([PAGE_TOKEN_VERSION])
            + _POSITION.pack(created_ms)
            + uuid.UUID(session_handle).bytes
        )
        return b64url_encode(body + self._mac(body, user_id))

    def parse(self, user_id: str, token: str) -> tuple[int, str] | None:
        """(created_ms, session handle) if the authority issued this token for this
        user id, else None."""
        body = _authenticated_body(
            token,
            PAGE_TOKEN_LENGTH,
            _PAGE_TOKEN_BYTES,
            PAGE_TOKEN_VERSION,
            lambda data: self._mac(data, user_id),
        )
        if body is None:
            return None
        (created_ms,) = _POSITION.unpack_from(body, 1)
        if created_ms > _MAX_POSITION_MS:  # never issued; refused all the same
            return None
        return created_ms, str(uuid.UUID(bytes=body[1 + _POSITION.size :]))
