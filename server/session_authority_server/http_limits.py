"""Bounds on the connections of the HTTP listener, so that sockets which send
nothing, or half a request, cannot pile up and use the file descriptors the gRPC
side needs too.

The rule, per connection:

* Cap: at most ``max_connections`` are open at once. One more is closed as soon
  as it is accepted, before the web framework sees it.
* Header timeout: a new connection must deliver its first request head (the
  request line and headers, up to the blank line) within ``header_timeout`` of
  being accepted, or it is closed. It is a deadline, not an inactivity timer:
  trickling in a byte now and then does not extend it.
* Idle timeout: a connection with no request in progress is closed
  ``idle_timeout`` after its last response, and a later request's head must be
  complete within that time too.
* A request in progress (head received, response not finished) is never cut by
  these timers, however long it runs: a stream may stay open for long.

This module does the cap and the first head, below the HTTP server: it wraps
the protocol factory that ``loop.create_server`` takes, sees only bytes, and
finds the end of a head by the blank line. After that first head it never
closes the connection, since only the HTTP server knows where a request body or
a response ends. The idle timeout is therefore the server's keep-alive timeout,
which ``http.start_http`` sets: uvicorn closes a connection that waits for its
next request once that long has passed since the last response, and
(http._HttpProtocol) partial data does not restart or stop that clock: only a
complete head does. A server replacing uvicorn must be given the idle timeout
the same way and keep that property (tests/test_http_limits.py checks it).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

# The blank line ending a head; a bare LF is accepted as a line end, as lenient
# parsers do (a false end only leaves the connection to the idle timeout).
_HEAD_END = re.compile(rb"\n\r?\n")
REJECTION_LOG_INTERVAL_S = 60.0


@dataclass(frozen=True)
class ConnectionLimits:
    """Seconds, seconds, and connections: see the rule above."""

    header_timeout: float
    idle_timeout: float
    max_connections: int


class ConnectionLimiter:
    """A protocol factory for ``loop.create_server``: each connection gets a
    protocol from ``factory`` (uvicorn's HTTP protocol), within the limits.
    ``on_reject`` is called for each connection closed by the cap."""

    def __init__(
        self,
        factory: Callable[[], asyncio.Protocol],
        limits: ConnectionLimits,
        on_reject: Callable[[], object] | None = None,
    ) -> None:
        self.factory = factory
        self.limits = limits
        self.on_reject = on_reject
        self.open_connections = 0  # admitted and not yet lost
        self._unlogged = 0
        self._next_log_at = 0.0

    def __call__(self) -> asyncio.Protocol:
        return _LimitedConnection(self)

    def rejected(self) -> None:
        if self.on_reject is not None:
            self.on_reject()
        self._unlogged += 1
        now = asyncio.get_running_loop().time()
        if now >= self._next_log_at:
            log.warning(
                "HTTP connection cap (%d) reached: %d connection(s) closed on arrival "
                "since the last report",
                self.limits.max_connections,
                self._unlogged,
            )
            self._unlogged = 0
            self._next_log_at = now + REJECTION_LOG_INTERVAL_S


class _LimitedConnection(asyncio.Protocol):
    """Passes everything to the server's protocol, watching the first head."""

    def __init__(self, limiter: ConnectionLimiter) -> None:
        self._limiter = limiter
        self._inner: asyncio.Protocol | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._head_tail = b""  # the last bytes of the head so far, once it started

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        limiter = self._limiter
        if limiter.open_connections >= limiter.limits.max_connections:
            transport.close()
            limiter.rejected()
            return
        limiter.open_connections += 1
        self._deadline = asyncio.get_running_loop().call_later(
            limiter.limits.header_timeout, transport.close
        )
        self._inner = limiter.factory()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        if self._deadline is not None:
            head = self._head_tail + data
            if not self._head_tail:  # empty lines may precede a request line
                head = head.lstrip(b"\r\n")
            if _HEAD_END.search(head):
                self._deadline.cancel()
                self._deadline = None
            else:
                self._head_tail = head[-2:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return None if self._inner is None else self._inner.eof_received()

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is None:
            return
        self._limiter.open_connections -= 1
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._inner.connection_lost(exc)
        self._inner = None
