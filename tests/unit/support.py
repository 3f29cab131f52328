"""What the unit tests share: settings without a server, an observer that records
what the recipe tells it, and reading the tokens the recipe hands out."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from session_authority.verify import VerificationKey
from session_authority_server.config import Settings, load_settings
from session_authority_server.events import RevocationCause

ISSUER = "https://authority.test"
MINUTE_MS = 60_000


def unit_settings(**overrides: Any) -> Settings:
    """Settings as tests/conftest.py's make_settings builds them, with no database
    or listener in use; ES256, whose keys take microseconds to make (RSA's take
    tens of milliseconds)."""
    values: dict[str, Any] = {"signing_algorithm": "ES256", "issuer": ISSUER}
    values.update(overrides)
    return load_settings(None, {}, **values)


class RecordingObserver:
    """SessionEvents, written down in order: "created", "refreshed", "theft",
    and "revoked <count> <cause>"."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def session_created(self) -> None:
        self.events.append("created")

    def session_refreshed(self) -> None:
        self.events.append("refreshed")

    def sessions_revoked(self, count: int, cause: RevocationCause) -> None:
        self.events.append(f"revoked {count} {cause}")

    def theft_detected(self) -> None:
        self.events.append("theft")

    def take(self) -> list[str]:
        """The events so far, forgotten: the next take() starts afresh."""
        taken, self.events = self.events, []
        return taken


def b64url_json(segment: str) -> dict[str, Any]:
    value = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    assert isinstance(value, dict)
    return value


def jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, payload) of a JWT, unverified."""
    header, payload, _ = token.split(".")
    return b64url_json(header), b64url_json(payload)


def verified_claims(token: str, key: VerificationKey) -> dict[str, Any]:
    """The payload of a JWT whose signature this key verifies."""
    header, payload, signature = token.split(".")
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    assert key.algorithm.verify(f"{header}.{payload}".encode(), key.key, raw), "bad signature"
    return b64url_json(payload)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
