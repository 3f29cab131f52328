"""Local verification (no RPC): the JWKS cache, and LocalVerifier, which runs the
checks of verify.py plus anti-CSRF and the pushed revocations."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import UnauthorisedError
from .revocations import RevocationWatcher
from .verify import (
    VerificationKey,
    check_anti_csrf,
    keys_from_jwks,
    parse_access_token,
    verify_access_token,
)

# () -> (the JWKS's keys, how long the authority says they may be cached, in s).
FetchJwks = Callable[[], Awaitable[tuple[list[dict[str, Any]], int]]]


class LocalVerifier:
    """Verifies an access token as the authority would, from the cached JWKS:
    signature, layout, expiry, anti-CSRF and, given a revocation watcher, that
    the session has not been revoked."""

    def __init__(
        self,
        fetch_jwks: FetchJwks,
        *,
        now_ms: Callable[[], int],
        revocations: RevocationWatcher | None = None,
    ) -> None:
        self.jwks = JwksCache(fetch_jwks)
        self._now_ms = now_ms
        self._revocations = revocations

    async def verify(
        self, access_token: str, anti_csrf_token: str | None, anti_csrf_check: bool | None
    ) -> dict[str, Any]:
        """The token's payload; raises UnauthorisedError or TryRefreshTokenError."""
        parsed = parse_access_token(access_token)
        key = self.jwks.cached(parsed.kid) or await self.jwks.get(parsed.kid)
        payload = verify_access_token(parsed, key, self._now_ms())
        check_anti_csrf(payload, anti_csrf_token, anti_csrf_check)
        revocations = self._revocations
        if revocations is not None and revocations.is_revoked(payload["sessionHandle"]):
            raise UnauthorisedError("the session has been revoked")
        return payload


class JwksCache:
    """Keys for local verification, fetched lazily and refreshed on an unknown kid.

    The whole set is refetched when it is older than its max age, and at most once
    per ``unknown_kid_cooldown`` seconds when a token names a key the set lacks,
    so a flood of forged kids costs at most one fetch per cooldown.
    """

    def __init__(
        self,
        fetch: FetchJwks,
        *,
        max_age_seconds: float = 4 * 3600,
        unknown_kid_cooldown: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._max_age = max_age_seconds
        self._cooldown = unknown_kid_cooldown
        self._monotonic = monotonic
        self._keys: dict[str, VerificationKey] = {}
        self._fetched_at: float | None = None
        self._expires_at = 0.0
        self._unknown_kid_refetched_at: float | None = None
        self._lock = asyncio.Lock()

    def cached(self, kid: str) -> VerificationKey | None:
        """The key for ``kid`` if the cached set is fresh; no I/O."""
        if self._fetched_at is None or self._monotonic() >= self._expires_at:
            return None
        return self._keys.get(kid)

    async def get(self, kid: str) -> VerificationKey | None:
        key = self.cached(kid)
        if key is not None:
            return key
        async with self._lock:
            now = self._monotonic()
            if self._fetched_at is None or now >= self._expires_at:
                await self.refresh()
                if kid not in self._keys:  # this fetch was already the refetch for it
                    self._unknown_kid_refetched_at = now
            elif kid not in self._keys:
                last = self._unknown_kid_refetched_at
                if last is None or now - last >= self._cooldown:
                    self._unknown_kid_refetched_at = now
                    await self.refresh()
            return self._keys.get(kid)

    async def refresh(self) -> None:
        jwks, server_max_age = await self._fetch()
        self._keys = keys_from_jwks(jwks)
        self._fetched_at = self._monotonic()
        max_age = min(self._max_age, server_max_age) if server_max_age > 0 else self._max_age
        self._expires_at = self._fetched_at + max_age
