"""The HTTP listener, in the same process on its own port: SessionService over
Connect and gRPC-Web (connect.py, under the same API keys, limits, errors and
metrics as gRPC), and what gateways and other SDKs fetch over plain HTTP (JWKS,
OpenID discovery), probes, and metrics. The last four need no API key and
reveal no secret.

The application is plain ASGI; the server is uvicorn's HTTP/1.1 protocol
(httptools' parser), run here on the process's own event loop, each connection
within the bounds of http_limits.py, over TLS when HTTP_TLS is set.

Why uvicorn: it cost the least server CPU per call of the four measured by
bench/connect_servers.py (2 shared cores, Connect JSON unary calls over 32
keep-alive connections, SQLite; medians of 3 interleaved rounds of 6 s; calls/s
moved with the machine's other load, CPU per call much less):

    server CPU per call         GetSession   CreateNewSession
    uvicorn 0.54 + httptools      384 us          932 us
    aiohttp 3.14 + ASGI bridge    410 us         1072 us
    granian 2.8 (embedded)        512 us         1083 us
    hypercorn 0.18 (h11)          582 us         1273 us

and its protocol is an asyncio.Protocol, so http_limits.py wraps it as it
wrapped aiohttp's. granian handles connections in Rust, beyond any protocol
factory: neither the connection cap nor the header deadline could hold for it.
(The same GetSession costs 264 us over gRPC: about 240 us of the Connect call is
connectrpc, proto JSON in Python and the work itself, whatever the server.)
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import math
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from uvicorn import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from .config import host_and_port
from .http_limits import ConnectionLimiter, ConnectionLimits
from .metrics import Metrics
from .storage.base import Lifecycle, StorageUnavailable
from .token_issuer import TokenIssuer

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
# Any for the arguments: connectrpc's application declares asgiref's precise types.
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

_JSON = b"application/json"
_TEXT = b"text/plain; charset=utf-8"
# A request head (request line and headers) larger than this is refused (431):
# aiohttp, before, refused lines over 8 KiB; httptools has no limit of its own.
MAX_HEAD_BYTES = 64 * 1024
# At stop, how long handlers get to end once their connections are closed.
_DISCONNECT_WAIT_S = 1.0


async def _respond(
    send: Send, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *headers,
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


Route = Callable[[], Awaitable[tuple[int, Headers, bytes]]]


class HttpApp:
    """The listener's ASGI application: paths under rpc_path + "/" go to the
    Connect application once ``serve_rpcs`` has been called (before that they
    answer 503: the issuer is not settled yet), the rest are the pages below."""

    def __init__(
        self, tokens: TokenIssuer, store: Lifecycle, metrics: Metrics, rpc_path: str = ""
    ) -> None:
        self._tokens, self._store, self._metrics = tokens, store, metrics
        self._rpc_prefix = rpc_path + "/"
        self._rpc: ASGIApp | None = None
        self._rpc_refusal: str | None = None
        self._routes: dict[str, Route] = {
            "/.well-known/jwks.json": self._jwks,
            "/.well-known/openid-configuration": self._discovery,
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            "/metrics": self._prometheus,
        }

    def serve_rpcs(self, rpc: ASGIApp, *, refusal: str | None = None) -> None:
        """From now on, RPCs go to rpc; or, with a refusal, are refused with it."""
        self._rpc, self._rpc_refusal = rpc, refusal

    async def _jwks(self) -> tuple[int, Headers, bytes]:
        keys, max_age = await self._tokens.keys.jwks()
        self._metrics.jwks_fetches.labels("http").inc()
        # Caches may keep the set until the next key could start signing.
        cache = f"public, max-age={max_age}".encode()
        body = json.dumps({"keys": keys}).encode()
        return 200, [(b"content-type", _JSON), (b"cache-control", cache)], body

    async def _discovery(self) -> tuple[int, Headers, bytes]:
        body = json.dumps(self._tokens.open_id_discovery_configuration()).encode()
        return 200, [(b"content-type", _JSON)], body

    async def _healthz(self) -> tuple[int, Headers, bytes]:
        return 200, [(b"content-type", _TEXT)], b"ok\n"

    async def _readyz(self) -> tuple[int, Headers, bytes]:
        try:
            await self._store.ping()
        except StorageUnavailable:
            return 503, [(b"content-type", _TEXT)], b"storage unavailable\n"
        return 200, [(b"content-type", _TEXT)], b"ready\n"

    async def _prometheus(self) -> tuple[int, Headers, bytes]:
        return 200, [(b"content-type", b"text/plain; version=0.0.4")], self._metrics.exposition()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path.startswith(self._rpc_prefix):
            await self._call(scope, receive, send)
            return
        route = self._routes.get(path)
        if route is None:
            await _respond(send, 404, b"not found\n", [(b"content-type", _TEXT)])
            return
        if scope["method"] not in ("GET", "HEAD"):
            headers = [(b"content-type", _TEXT), (b"allow", b"GET, HEAD")]
            await _respond(send, 405, b"method not allowed\n", headers)
            return
        status, headers, body = await route()
        await _respond(send, status, body, headers)

    async def _call(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_type = dict(scope["headers"]).get(b"content-type", b"")
        if content_type.startswith(b"application/grpc") and not content_type.startswith(
            b"application/grpc-web"
        ):
            # gRPC needs HTTP/2 and trailers: it has a port of its own.
            refusal = "gRPC is served on the gRPC port (SESSION_AUTHORITY_LISTEN)"
            await _connect_error(send, 415, "unimplemented", refusal)
        elif self._rpc is None:
            await _connect_error(send, 503, "unavailable", "starting: retry in a moment")
        elif self._rpc_refusal is not None:
            await _connect_error(send, 401, "unauthenticated", self._rpc_refusal)
        else:
            await self._rpc(scope, receive, send)


async def _connect_error(send: Send, status: int, code: str, message: str) -> None:
    """An error in the Connect protocol's unary shape (other protocols read the
    HTTP status), for calls refused before they reach connectrpc."""
    body = json.dumps({"code": code, "message": message}).encode()
    await _respond(send, status, body, [(b"content-type", _JSON)])


# --- the server ------------------------------------------------------------------------------


class _HttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with the idle rule of http_limits.py: uvicorn
    stops its keep-alive clock at the first byte of the next request; here it runs
    on until that request's head is complete, so a head started and never
    finished is closed by the idle timeout as by aiohttp before. And a head
    larger than MAX_HEAD_BYTES is refused."""

    _receiving = False  # inside data_received
    _in_head = True  # between requests: the bytes are a head's
    _head_bytes = 0

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        self._receiving = True
        try:
            super().data_received(data)
        finally:
            self._receiving = False
        if self._in_head and self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            self._refuse_large_head()

    def _refuse_large_head(self) -> None:
        body = b"request head too large\n"
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
        )
        self.transport.close()

    def _unset_keepalive_if_required(self) -> None:
        if not self._receiving:
            super()._unset_keepalive_if_required()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._receiving = False  # the head is complete: the idle clock stops
        super()._unset_keepalive_if_required()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        super().on_message_complete()


def server_ssl_context(cert_file: str, key_file: str, client_ca_file: str) -> ssl.SSLContext:
    """TLS for the HTTP listener with the gRPC port's certificate; with a client
    CA, callers must present a certificate it signed (mTLS), as on the gRPC port.
    (startup_checks.server_credentials has checked the files.)"""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    if client_ca_file:
        context.load_verify_locations(client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["http/1.1"])
    return context


class HttpListener:
    """The ASGI application served on host:port within the connection limits."""

    def __init__(self, server: asyncio.Server, state: ServerState, port: int) -> None:
        self._server = server
        self._state = state
        self.port = port
        self._dates = asyncio.create_task(self._keep_date_header())

    async def _keep_date_header(self) -> None:
        while True:
            date = email.utils.formatdate(usegmt=True).encode()
            self._state.default_headers = [(b"date", date)]
            await asyncio.sleep(1)

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting; close idle connections; let requests in progress finish
        within grace, then close their connections too (a stream's handler sees
        the disconnect and ends), as gRPC's stop does."""
        self._dates.cancel()
        self._server.close()
        for connection in list(self._state.connections):
            connection.shutdown()
        if self._state.tasks and grace:
            await asyncio.wait(set(self._state.tasks), timeout=grace)
        for connection in list(self._state.connections):
            connection.transport.close()
        if self._state.tasks:
            await asyncio.wait(set(self._state.tasks), timeout=_DISCONNECT_WAIT_S)
        for task in set(self._state.tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._dates


async def start_http(
    app: ASGIApp,
    listen: str,
    *,
    limits: ConnectionLimits,
    ssl_context: ssl.SSLContext | None = None,
    reuse_port: bool = False,
    on_reject: Callable[[], object] | None = None,
) -> HttpListener:
    """Serve the app on host:port (port 0: any free one) within the connection
    limits (see http_limits.py). on_reject is called for each connection closed
    by the cap."""
    host, port = host_and_port(listen)
    config = Config(
        app,
        http=_HttpProtocol,
        ws="none",
        lifespan="off",
        # The loopback rule reads the TCP peer: no X-Forwarded-For rewriting.
        proxy_headers=False,
        server_header=False,
        date_header=False,
        access_log=False,
        log_config=None,
        # The idle timeout (see http_limits.py and _HttpProtocol).
        timeout_keep_alive=math.ceil(limits.idle_timeout),
    )
    config.load()
    state = ServerState()

    def protocol() -> asyncio.Protocol:
        return _HttpProtocol(config=config, server_state=state, app_state={})

    server = await asyncio.get_running_loop().create_server(
        ConnectionLimiter(protocol, limits, on_reject),
        host,
        port,
        reuse_port=reuse_port or None,
        ssl=ssl_context,
        ssl_handshake_timeout=limits.header_timeout if ssl_context else None,
        backlog=2048,
    )
    bound = int(server.sockets[0].getsockname()[1])
    return HttpListener(server, state, bound)
