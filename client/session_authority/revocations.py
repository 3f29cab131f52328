"""RevocationWatcher: the client's view of revoked sessions, kept from the
WatchRevocations stream for local verification.

A background task keeps a WatchRevocations stream open, resumes from its last
cursor after any disconnect (with backoff), and remembers each revoked session
until no access token of it can still be valid. Local verification rejects those
sessions. If the stream has not been heard from for longer than the staleness
bound (the authority heartbeats every few seconds), local verification stops
trusting its view and asks the authority instead (check_database behaviour).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RevokedSession:
    session_handle: str
    cursor: int
    valid_until_ms: int


# after_cursor -> a stream of (revocations, cursor) batches.
OpenStream = Callable[[int], AsyncIterator[tuple[list[RevokedSession], int]]]


class RevocationWatcher:
    def __init__(
        self,
        open_stream: OpenStream,
        *,
        staleness_s: float,
        now_ms: Callable[[], int],
        monotonic: Callable[[], float] = time.monotonic,
        max_backoff_s: float = 5.0,
    ) -> None:
        self._open_stream = open_stream
        self._staleness_s = staleness_s
        self._now_ms = now_ms
        self._monotonic = monotonic
        self._max_backoff_s = max_backoff_s
        self._revoked: dict[str, int] = {}  # handle -> valid_until_ms
        self.cursor = 0
        self._last_heard: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="session-authority-revocations")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def is_fresh(self) -> bool:
        """True while the stream has been heard from within the staleness bound."""
        heard = self._last_heard
        return heard is not None and self._monotonic() - heard <= self._staleness_s

    def is_revoked(self, session_handle: str) -> bool:
        return session_handle in self._revoked

    def __len__(self) -> int:
        return len(self._revoked)

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            try:
                async for batch, cursor in self._open_stream(self.cursor):
                    self._last_heard = self._monotonic()
                    for revoked in batch:
                        self._revoked[revoked.session_handle] = revoked.valid_until_ms
                    self.cursor = max(self.cursor, cursor)
                    self._forget_expired()
                    backoff = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as error:  # any failure: reconnect from the cursor
                log.debug("revocation stream interrupted (%s); reconnecting", type(error).__name__)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff_s)

    def _forget_expired(self) -> None:
        now = self._now_ms()
        expired = [handle for handle, until in self._revoked.items() if until <= now]
        for handle in expired:
            del self._revoked[handle]
