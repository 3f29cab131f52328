"""Housekeeping: deleting what no longer matters (expired sessions, revocations no
token can outlive, retired signing keys), periodically and on demand
(``session-authority purge-expired``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from .clock import Clock
from .keys import CLOCK_SKEW_MS, KeyRing
from .storage.base import KeyStorage, RevocationLog, SessionRows, StorageUnavailable

log = logging.getLogger(__name__)


class PurgeableStore(SessionRows, RevocationLog, KeyStorage, Protocol):
    pass


class Housekeeping:
    def __init__(
        self, store: PurgeableStore, keys: KeyRing, clock: Clock, *, access_token_validity_ms: int
    ) -> None:
        self._store = store
        self._keys = keys
        self._clock = clock
        self._access_token_validity_ms = access_token_validity_ms

    async def purge_expired(self, batch_size: int = 1000) -> tuple[int, int]:
        """Delete expired sessions and retired signing keys: (sessions, keys)."""
        now = self._clock.now_ms()
        sessions = await self._store.purge_expired(now, batch_size)
        # The log keeps a revocation while a token of that session can be valid.
        await self._store.purge_revocations(now - self._access_token_validity_ms - CLOCK_SKEW_MS)
        await self._keys.signer()  # adopt any rotation first, so retirement is current
        keys = await self._store.delete_signing_keys(self._keys.retired_kids())
        return sessions, keys

    async def purge_periodically(
        self, interval_s: float, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    ) -> None:
        """Purge every interval; failures are logged and retried at the next tick
        (replicas skip a tick another one is doing)."""
        while True:
            await sleep(interval_s)
            try:
                removed, keys = await self.purge_expired()
            except StorageUnavailable as error:
                log.warning("purge skipped: storage unavailable: %s", error)
                continue
            if removed or keys:
                log.info("purged %d expired sessions and %d retired signing keys", removed, keys)
