"""The parts that serve the API, wired together: key ring, token issuer, the
recipe, claims, the revocation feed and housekeeping, over one store, clock and
observer. The servicer, the HTTP side and the CLI get their parts from here."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from .clock import Clock
from .config import ConfigError, Settings, env_name, master_key_bytes
from .events import SessionEvents
from .housekeeping import Housekeeping
from .keys import KeyRing
from .revocations import RevocationFeed
from .sealing import SealingError, SecretSealer
from .session_claims import SessionClaims
from .sessions import SessionManager
from .storage.base import SessionStore
from .token_issuer import TokenIssuer
from .tokens import PageTokenCodec, RefreshTokenCodec

log = logging.getLogger(__name__)

# The name of the stored secret, not the secret.
REFRESH_KEY_SECRET = "refresh-token-mac-key"  # noqa: S105


@dataclass(frozen=True)
class Authority:
    sessions: SessionManager
    claims: SessionClaims
    tokens: TokenIssuer
    revocations: RevocationFeed
    housekeeping: Housekeeping

    @property
    def keys(self) -> KeyRing:
        return self.tokens.keys


async def assemble(
    settings: Settings, store: SessionStore, clock: Clock, events: SessionEvents
) -> Authority:
    """Open (or make) the signing keys and the refresh-token MAC key, then wire the
    parts. Raises ConfigError when stored secrets are sealed with another key."""
    master_key = master_key_bytes(settings)
    if master_key is None:
        log.warning(
            "no master key is configured (%s): signing keys are stored unencrypted",
            env_name("master_key"),
        )
    sealer = SecretSealer(master_key)
    try:
        return await _assemble(settings, store, clock, events, sealer)
    except SealingError as error:
        raise ConfigError(f"{env_name('master_key')}: {error}") from None


async def _assemble(
    settings: Settings,
    store: SessionStore,
    clock: Clock,
    events: SessionEvents,
    sealer: SecretSealer,
) -> Authority:
    keys = KeyRing(
        store,
        clock,
        algorithm=settings.signing_algorithm,
        rotation_ms=settings.signing_key_rotation * 1000,
        access_token_validity_ms=settings.access_token_validity_ms,
        sealer=sealer,
    )
    await keys.start()
    stored = await store.secret(
        REFRESH_KEY_SECRET, lambda: sealer.seal(os.urandom(32), REFRESH_KEY_SECRET)
    )
    mac_key = sealer.open(stored, REFRESH_KEY_SECRET)
    tokens = TokenIssuer(
        keys, clock, issuer=settings.issuer, validity_ms=settings.access_token_validity_ms
    )
    revocations = RevocationFeed(store)
    sessions = SessionManager(
        settings,
        store,
        tokens,
        clock,
        refresh_tokens=RefreshTokenCodec(mac_key),
        page_tokens=PageTokenCodec(mac_key),
        revocations=revocations,
        events=events,
    )
    claims = SessionClaims(
        store, sessions.merge_into_stored_payload, clock, settings.global_claim_validators
    )
    housekeeping = Housekeeping(
        store, keys, clock, access_token_validity_ms=settings.access_token_validity_ms
    )
    return Authority(sessions, claims, tokens, revocations, housekeeping)
