"""The revocation feed: wakes every watcher of this process when the revocation
log grows, whichever replica wrote to it.

Revocations made here notify at once; those made by other replicas (or other
worker processes on one SQLite file) are noticed by a short poll of the log's
latest cursor. Watchers then read the log itself, so nothing is lost between a
notification and a read, and a watcher that reconnects resumes from its cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from .storage.base import RevocationLog, RevocationRow, StorageUnavailable

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.2
HEARTBEAT_INTERVAL_S = 5.0
BATCH = 500


class RevocationFeed:
    def __init__(self, store: RevocationLog) -> None:
        self._store = store
        self._latest = 0
        self._changed = asyncio.Condition()

    async def notify(self) -> None:
        """Something was revoked here: wake the watchers now."""
        async with self._changed:
            self._latest += 1  # only "moved on" matters; watchers re-read the log
            self._changed.notify_all()

    async def poll(self, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """Notice revocations made by other processes (a background task)."""
        seen = 0
        while True:
            try:
                latest = await self._store.latest_revocation_cursor()
            except StorageUnavailable:
                latest = seen
            if latest != seen:
                seen = latest
                await self.notify()
            await sleep(POLL_INTERVAL_S)

    async def _wait(self, since: int, at_most_s: float) -> None:
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(at_most_s):
                    await self._changed.wait_for(lambda: self._latest != since)

    async def watch(
        self, after_cursor: int, heartbeat_s: float = HEARTBEAT_INTERVAL_S
    ) -> AsyncIterator[tuple[list[RevocationRow], int]]:
        """(revocations, cursor) batches: the backlog first (an empty batch if there
        is none, so a watcher knows at once that it is connected), then live ones,
        with an empty batch as a heartbeat after each quiet interval."""
        cursor = max(after_cursor, 0)
        first = True
        while True:
            generation = self._latest
            rows = await self._store.revocations_after(cursor, BATCH)
            if rows:
                cursor = rows[-1].cursor
                yield rows, cursor
                first = False
                continue
            if first:
                yield [], cursor
                first = False
            await self._wait(generation, heartbeat_s)
            if self._latest == generation:
                yield [], cursor  # heartbeat
