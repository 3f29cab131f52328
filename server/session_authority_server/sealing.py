"""Sealing secrets at rest: signing private keys and the refresh-token MAC key are
sealed with AES-256-GCM under the master key (SESSION_AUTHORITY_MASTER_KEY or a
key file), bound to their name (kid) as associated data.

Without a master key they are stored in the clear (and the authority says so at
start). With one, new secrets are sealed; secrets stored earlier in the clear
stay readable and are never rewritten. Sealed secrets and no (or a wrong) master
key stop the start: nothing is overwritten or regenerated.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_SEALED = b"sealed:v1:"
_NONCE_BYTES = 12


class SealingError(Exception):
    """Stored secrets cannot be opened with the master key given (or without one)."""


def parse_master_key(text: str) -> bytes:
    """32 bytes from base64 (standard or URL-safe) or 64 hex digits; ValueError
    (saying how to make one, never echoing the text) otherwise."""
    text = text.strip()
    decoders = (bytes.fromhex, base64.b64decode, base64.urlsafe_b64decode)
    for decode in decoders:
        with contextlib.suppress(ValueError, binascii.Error):
            key = decode(text) if decode is bytes.fromhex else decode(text + "=" * (-len(text) % 4))
            if len(key) == 32:
                return key
    raise ValueError(
        "the master key must be 32 bytes, base64 or hex (make one with: "
        "python -c 'import os,base64;print(base64.b64encode(os.urandom(32)).decode())')"
    )


class SecretSealer:
    def __init__(self, master_key: bytes | None) -> None:
        self._aead = AESGCM(master_key) if master_key is not None else None

    def seal(self, secret: bytes, name: str) -> bytes:
        if self._aead is None:
            return secret
        nonce = os.urandom(_NONCE_BYTES)
        return _SEALED + nonce + self._aead.encrypt(nonce, secret, name.encode())

    def open(self, stored: bytes, name: str) -> bytes:
        if not stored.startswith(_SEALED):
            return stored
        if self._aead is None:
            raise SealingError(
                "the database holds encrypted signing keys; "
                "start with the master key they were sealed with"
            )
        body = stored[len(_SEALED) :]
        try:
            return self._aead.decrypt(body[:_NONCE_BYTES], body[_NONCE_BYTES:], name.encode())
        except InvalidTag:
            raise SealingError(
                "this master key does not open the stored signing keys (a different key "
                "sealed them); nothing was changed"
            ) from None
