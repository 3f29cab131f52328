"""Shared fixtures: a real server on an ephemeral port, a real SQLite file, a
real client, and one manual clock that both sides read."""

from __future__ import annotations

import collections
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from session_authority import SessionClient, SessionContainer
from session_authority_server.app import RunningServer, start_server
from session_authority_server.config import Settings, load_settings

START_MS = 1_800_000_000_000

# The PostgreSQL server the PostgreSQL tests use (CI sets it); without it they skip.
POSTGRES_DSN = os.environ.get("SESSION_AUTHORITY_TEST_POSTGRES_DSN")


class ManualClock:
    """Time that moves only when a test says so; the server reads now_ms(), the
    client reads time()."""

    def __init__(self, start_ms: int = START_MS) -> None:
        self.ms = start_ms

    def now_ms(self) -> int:
        return self.ms

    def time(self) -> float:
        return self.ms / 1000

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


def refresh_token_of(session: SessionContainer) -> str:
    """The refresh token of a session that create_new_session or refresh_session
    returned: SessionContainer.refresh_token is None only for get_session's."""
    assert session.refresh_token is not None
    return session.refresh_token


class RpcCounter(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped: Any
    """Counts the RPCs a server receives, by method name (e.g. "GetSession")."""

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        self.calls[handler_call_details.method.rsplit("/", 1)[-1]] += 1
        return await continuation(handler_call_details)

    def total(self) -> int:
        return sum(self.calls.values())


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/sessions.db"


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    if not POSTGRES_DSN:
        pytest.skip("SESSION_AUTHORITY_TEST_POSTGRES_DSN is not set (CI sets it; see .ci/run)")
    import asyncpg

    name = f"sa_test_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(POSTGRES_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, _ = POSTGRES_DSN.rpartition("/")
    yield f"{base}/{name}"
    admin = await asyncpg.connect(POSTGRES_DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs on a fresh SQLite file and a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/sessions.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def make_settings(database_url: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "listen": "127.0.0.1:0",
            "http_listen": "127.0.0.1:0",
        }
        values.update(overrides)
        return load_settings(None, {}, **values)

    return make


@pytest.fixture
def rpc_counter() -> RpcCounter:
    return RpcCounter()


@pytest.fixture
async def start(
    make_settings: Callable[..., Settings], clock: ManualClock, rpc_counter: RpcCounter
) -> AsyncIterator[Callable[..., Awaitable[RunningServer]]]:
    """start(**settings) -> a running server on an ephemeral port (stopped at teardown)."""
    running: list[RunningServer] = []

    async def start_one(**overrides: Any) -> RunningServer:
        server = await start_server(
            make_settings(**overrides), clock=clock, interceptors=[rpc_counter]
        )
        running.append(server)
        return server

    yield start_one
    for server in running:
        await server.stop(None)


@pytest.fixture
async def server(start: Callable[..., Awaitable[RunningServer]]) -> RunningServer:
    return await start()


@pytest.fixture
def connect(clock: ManualClock) -> Callable[..., SessionClient]:
    """connect(server, **client options) -> a SessionClient on the test clock."""

    def make(server: RunningServer, **options: Any) -> SessionClient:
        options.setdefault("clock", clock.time)
        return SessionClient(f"127.0.0.1:{server.port}", **options)

    return make


@pytest.fixture
async def client(
    server: RunningServer, connect: Callable[..., SessionClient]
) -> AsyncIterator[SessionClient]:
    async with connect(server) as session_client:
        yield session_client
