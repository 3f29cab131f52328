"""Assembling the service: storage, key ring, recipe logic, the gRPC server (with
health and reflection), the HTTP side, and the background jobs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from session_authority.v1 import session_service_pb2 as pb

from .auth import CallerAuthenticator
from .clock import Clock, SystemClock
from .config import ConfigError, Settings, env_name
from .http import build_http_app, start_http
from .http_limits import ConnectionLimits
from .metrics import Metrics
from .service import SessionServicer, register
from .sessions import SessionManager
from .storage import SessionStore, StorageUnavailable, open_store

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SessionService"].full_name
READINESS_INTERVAL_S = 5.0


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    store: SessionStore
    sessions: SessionManager
    metrics: Metrics
    http_port: int | None = None
    http_runner: web.AppRunner | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting RPCs, let in-flight ones finish within grace, close storage."""
        for task in self.tasks:
            task.cancel()
        if self.http_runner is not None:
            await self.http_runner.cleanup()
            self.http_runner = None
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


async def report_readiness(
    store: SessionStore,
    health_servicer: Any,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Keep the gRPC health status in step with whether the database answers."""
    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    while True:
        try:
            await store.ping()
            status = serving
        except StorageUnavailable:
            status = not_serving
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, status)
        await sleep(READINESS_INTERVAL_S)


def _server_credentials(settings: Settings) -> Any:
    def read(path: str) -> bytes:
        return Path(path).read_bytes()

    client_ca = read(settings.tls_client_ca_file) if settings.tls_client_ca_file else None
    return grpc.ssl_server_credentials(
        [(read(settings.tls_key_file), read(settings.tls_cert_file))],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


async def start_server(
    settings: Settings,
    *,
    clock: Clock | None = None,
    interceptors: Sequence[Any] = (),
    run_background_jobs: bool = True,
    reuse_port: bool = False,
) -> RunningServer:
    store = open_store(settings.database_url, **settings.store_options())
    await store.open()
    try:
        sessions = await SessionManager.start(settings, store, clock or SystemClock())
        metrics = Metrics()
        server = grpc.aio.server(
            interceptors=list(interceptors),
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                # One port for several worker processes only when asked: otherwise a
                # second server on a taken port must fail, not share it silently.
                ("grpc.so_reuseport", 1 if reuse_port else 0),
            ],
        )
        authenticator = CallerAuthenticator(
            settings.api_keys,
            allow_remote_without_api_key=settings.allow_remote_without_api_key,
        )
        register(SessionServicer(sessions, authenticator, metrics), server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        try:
            if settings.tls_cert_file:
                port = server.add_secure_port(settings.listen, _server_credentials(settings))
            else:
                port = server.add_insecure_port(settings.listen)
        except RuntimeError:
            port = 0
        if port == 0:
            raise ConfigError(f"{env_name('listen')}: cannot listen on {settings.listen}")
        await server.start()
        running = RunningServer(server, port, store, sessions, metrics)
        if settings.http_listen:
            try:
                running.http_runner, running.http_port = await start_http(
                    build_http_app(sessions, store, metrics),
                    settings.http_listen,
                    limits=ConnectionLimits(
                        header_timeout=settings.http_header_timeout,
                        idle_timeout=settings.http_idle_timeout,
                        max_connections=settings.http_max_connections,
                    ),
                    reuse_port=reuse_port,
                    on_reject=metrics.http_connections_rejected.inc,
                )
            except OSError as error:
                await server.stop(None)
                raise ConfigError(
                    f"{env_name('http_listen')}: cannot listen on {settings.http_listen} "
                    f"({error.strerror})"
                ) from None
    except BaseException:
        await store.close()
        raise
    if run_background_jobs:
        running.tasks.append(asyncio.create_task(report_readiness(store, health_servicer)))
        running.tasks.append(
            asyncio.create_task(purge_periodically(sessions, settings.cleanup_interval))
        )
        running.tasks.append(asyncio.create_task(sessions.revocations.poll()))
    return running


async def serve(settings: Settings, *, reuse_port: bool = False) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    running = await start_server(settings, reuse_port=reuse_port)
    host = settings.listen.rsplit(":", 1)[0]
    log.info("session authority serving gRPC on %s:%d", host, running.port)
    if running.http_port is not None:
        http_host = settings.http_listen.rsplit(":", 1)[0]
        log.info("serving HTTP (JWKS, health, metrics) on %s:%d", http_host, running.http_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("shutting down: finishing in-flight calls (up to %d s)", settings.shutdown_grace)
    with contextlib.suppress(asyncio.CancelledError):
        await running.stop(settings.shutdown_grace)
    log.info("stopped")
