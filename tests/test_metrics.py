"""/metrics carries the series the authority documents, without prometheus_client's
``*_created`` timestamps (one more series per counter and histogram child)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
from session_authority import SessionClient
from session_authority_server.app import RunningServer


async def test_metrics_have_no_created_series(
    start: Callable[..., Awaitable[RunningServer]], connect: Callable[..., SessionClient]
) -> None:
    server = await start()
    async with connect(server) as client:
        session = await client.create_new_session("user-1")
        assert session.refresh_token is not None
        await client.refresh_session(session.refresh_token)
    url = f"http://127.0.0.1:{server.http_port}/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        text = await response.text()
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
    assert "session_authority_rpcs_total" in names
    assert "session_authority_rpc_duration_seconds_bucket" in names
    assert "session_authority_sessions_created_total" in names  # a name, not a timestamp
    assert not [name for name in names if name.endswith("_created")], sorted(names)
