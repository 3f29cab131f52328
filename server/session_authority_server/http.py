"""The HTTP side, in the same process on its own port: what gateways and other
SDKs fetch over plain HTTP (JWKS, OpenID discovery), probes, and metrics.
None of it needs an API key; none of it reveals a secret."""

from __future__ import annotations

import json

from aiohttp import web

from .metrics import Metrics
from .sessions import SessionManager
from .storage import SessionStore, StorageUnavailable

_JSON = "application/json"


def build_http_app(
    sessions: SessionManager, store: SessionStore, metrics: Metrics
) -> web.Application:
    async def jwks(request: web.Request) -> web.Response:
        keys, max_age = await sessions.keys.jwks()
        metrics.jwks_fetches.labels("http").inc()
        # Caches may keep the set until the next key could start signing.
        return web.Response(
            text=json.dumps({"keys": keys}),
            content_type=_JSON,
            headers={"Cache-Control": f"public, max-age={max_age}"},
        )

    async def discovery(request: web.Request) -> web.Response:
        return web.Response(
            text=json.dumps(sessions.open_id_discovery_configuration()), content_type=_JSON
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


async def start_http(
    app: web.Application, listen: str, *, reuse_port: bool = False
) -> tuple[web.AppRunner, int]:
    """Serve the app on host:port (port 0: any free one); returns the bound port."""
    host, _, port = listen.rpartition(":")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host.strip("[]"), int(port), reuse_port=reuse_port or None)
    await site.start()
    return runner, int(runner.addresses[0][1])
