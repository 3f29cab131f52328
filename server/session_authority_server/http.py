"""The HTTP side, in the same process on its own port: what gateways and other
SDKs fetch over plain HTTP (JWKS, OpenID discovery), probes, and metrics.
None of it needs an API key; none of it reveals a secret."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from aiohttp import web

from .config import host_and_port
from .http_limits import ConnectionLimiter, ConnectionLimits
from .metrics import Metrics
from .storage.base import Lifecycle, StorageUnavailable
from .token_issuer import TokenIssuer

_JSON = "application/json"


def build_http_app(tokens: TokenIssuer, store: Lifecycle, metrics: Metrics) -> web.Application:
    async def jwks(request: web.Request) -> web.Response:
        keys, max_age = await tokens.keys.jwks()
        metrics.jwks_fetches.labels("http").inc()
        # Caches may keep the set until the next key could start signing.
        return web.Response(
            text=json.dumps({"keys": keys}),
            content_type=_JSON,
            headers={"Cache-Control": f"public, max-age={max_age}"},
        )

    async def discovery(request: web.Request) -> web.Response:
        return web.Response(
            text=json.dumps(tokens.open_id_discovery_configuration()), content_type=_JSON
        )

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        try:
            await store.ping()
        except StorageUnavailable:
            return web.Response(status=503, text="storage unavailable\n")
        return web.Response(text="ready\n")

    async def prometheus(request: web.Request) -> web.Response:
        return web.Response(
            body=metrics.exposition(), headers={"Content-Type": "text/plain; version=0.0.4"}
        )

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", jwks)
    app.router.add_get("/.well-known/openid-configuration", discovery)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", prometheus)
    return app


class _LimitedSite(web.BaseSite):
    """A TCP site whose connections go through a ConnectionLimiter."""

    __slots__ = ("_host", "_limiter", "_port", "_reuse_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        limiter: ConnectionLimiter,
        *,
        reuse_port: bool,
    ) -> None:
        super().__init__(runner)
        self._host, self._port, self._reuse_port = host, port, reuse_port
        self._limiter = limiter

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        self._server = await asyncio.get_running_loop().create_server(
            self._limiter, self._host, self._port, reuse_port=self._reuse_port or None
        )


async def start_http(
    app: web.Application,
    listen: str,
    *,
    limits: ConnectionLimits,
    reuse_port: bool = False,
    on_reject: Callable[[], object] | None = None,
) -> tuple[web.AppRunner, int]:
    """Serve the app on host:port (port 0: any free one) within the connection
    limits (see http_limits.py); returns the bound port. on_reject is called for
    each connection closed by the cap."""
    host, port = host_and_port(listen)
    # aiohttp's keep-alive timeout is the idle timeout: only it knows when a
    # response has finished.
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=limits.idle_timeout)
    await runner.setup()
    assert runner.server is not None
    limiter = ConnectionLimiter(runner.server, limits, on_reject)
    site = _LimitedSite(runner, host, port, limiter, reuse_port=reuse_port)
    await site.start()
    return runner, int(runner.addresses[0][1])
