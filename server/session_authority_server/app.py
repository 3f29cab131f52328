"""Assembling the service: storage, key ring, recipe logic and the gRPC server."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from session_authority.v1 import session_service_pb2_grpc as pb_grpc

from .clock import Clock, SystemClock
from .config import ConfigError, Settings, env_name
from .service import SessionServicer
from .sessions import SessionManager
from .storage import SessionStore, StorageUnavailable, open_store

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    store: SessionStore
    sessions: SessionManager
    cleanup: asyncio.Task[None] | None = None

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting RPCs, let in-flight ones finish within grace, close storage."""
        if self.cleanup is not None:
            self.cleanup.cancel()
        await self.server.stop(grace)
        await self.store.close()


async def purge_periodically(
    sessions: SessionManager,
    interval_s: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Purge expired sessions and retired keys every interval; failures are logged
    and retried at the next tick (replicas skip a tick another one is doing)."""
    while True:
        await sleep(interval_s)
        try:
            removed, keys = await sessions.purge_expired()
        except StorageUnavailable as error:
            log.warning("purge skipped: storage unavailable: %s", error)
            continue
        if removed or keys:
            log.info("purged %d expired sessions and %d retired signing keys", removed, keys)


async def start_server(
    settings: Settings,
    *,
    clock: Clock | None = None,
    interceptors: Sequence[Any] = (),
    run_cleanup: bool = True,
) -> RunningServer:
    store = open_store(settings.database_url, **settings.store_options())
    await store.open()
    try:
        sessions = await SessionManager.start(settings, store, clock or SystemClock())
        server = grpc.aio.server(
            interceptors=list(interceptors),
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                # A second server on a taken port must fail, not share it silently.
                ("grpc.so_reuseport", 0),
            ],
        )
        pb_grpc.add_SessionServiceServicer_to_server(SessionServicer(sessions), server)
        try:
            port = server.add_insecure_port(settings.listen)
        except RuntimeError:
            port = 0
        if port == 0:
            raise ConfigError(f"{env_name('listen')}: cannot listen on {settings.listen}")
        await server.start()
    except BaseException:
        await store.close()
        raise
    cleanup = (
        asyncio.create_task(purge_periodically(sessions, settings.cleanup_interval))
        if run_cleanup
        else None
    )
    return RunningServer(server, port, store, sessions, cleanup)


async def serve(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    running = await start_server(settings)
    log.info(
        "session authority serving gRPC on %s",
        settings.listen.rsplit(":", 1)[0] + f":{running.port}",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("shutting down: finishing in-flight calls (up to %d s)", settings.shutdown_grace)
    await running.stop(settings.shutdown_grace)
    log.info("stopped")
