"""Secrets at rest: signing private keys and the refresh-token MAC key are sealed
with AES-256-GCM under the master key (SESSION_AUTHORITY_MASTER_KEY or a key
file), bound to their name (kid) as associated data.

Without a master key they are stored in the clear (and the authority says so at
start). With one, new secrets are sealed; secrets stored earlier in the clear
stay readable and are never rewritten. Sealed secrets and no (or a wrong) master
key stop the start: nothing is overwritten or regenerated.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .config import ConfigError, Settings, env_name

log = logging.getLogger(__name__)

_SEALED = b"sealed:v1:"
_NONCE_BYTES = 12


def parse_master_key(text: str, source: str) -> bytes:
    """32 bytes from base64 (standard or URL-safe) or 64 hex digits."""
    text = text.strip()
    decoders = (bytes.fromhex, base64.b64decode, base64.urlsafe_b64decode)
    for decode in decoders:
        with contextlib.suppress(ValueError, binascii.Error):
            key = decode(text) if decode is bytes.fromhex else decode(text + "=" * (-len(text) % 4))
            if len(key) == 32:
                return key
    raise ConfigError(
        f"{source}: the master key must be 32 bytes, base64 or hex (make one with: "
        "python -c 'import os,base64;print(base64.b64encode(os.urandom(32)).decode())')"
    )


def master_key_bytes(settings: Settings) -> bytes | None:
    """The configured master key, or None; ConfigError if it is malformed."""
    if settings.master_key:
        return parse_master_key(settings.master_key, env_name("master_key"))
    if settings.master_key_file:
        text = Path(settings.master_key_file).read_text(encoding="ascii", errors="replace")
        return parse_master_key(text, env_name("master_key_file"))
    return None


class SecretSealer:
    def __init__(self, master_key: bytes | None) -> None:
        self._aead = AESGCM(master_key) if master_key is not None else None

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretSealer:
        key = master_key_bytes(settings)
        if key is None:
            log.warning(
                "no master key is configured (%s): signing keys are stored unencrypted",
                env_name("master_key"),
            )
        return cls(key)

    def seal(self, secret: bytes, name: str) -> bytes:
        if self._aead is None:
            return secret
        nonce = os.urandom(_NONCE_BYTES)
        return _SEALED + nonce + self._aead.encrypt(nonce, secret, name.encode())

    def open(self, stored: bytes, name: str) -> bytes:
        if not stored.startswith(_SEALED):
            return stored
        if self._aead is None:
            raise ConfigError(
                f"{env_name('master_key')}: the database holds encrypted signing keys; "
                "start with the master key they were sealed with"
            )
        body = stored[len(_SEALED) :]
        try:
            return self._aead.decrypt(body[:_NONCE_BYTES], body[_NONCE_BYTES:], name.encode())
        except InvalidTag:
            raise ConfigError(
                f"{env_name('master_key')}: this master key does not open the stored signing "
                "keys (a different key sealed them); nothing was changed"
            ) from None
