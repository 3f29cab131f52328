"""The process: the checks before serving, the database, the authority's parts
(assembly.py), the gRPC server (with health and reflection), the HTTP listener
(the same servicer over Connect and gRPC-Web, JWKS, discovery, probes, metrics),
the background jobs, and a graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from session_authority.v1 import session_service_pb2 as pb

from .assembly import Authority, assemble
from .auth import CallerAuthenticator
from .clock import Clock, SystemClock
from .config import ConfigError, Settings, derived_issuer, env_name
from .connect import SERVICE_PATH, connect_application
from .http import HttpApp, HttpListener, server_ssl_context, start_http
from .http_limits import ConnectionLimits
from .metrics import Metrics
from .rpc_gate import RpcGate
from .service import SessionServicer, register
from .startup_checks import (
    check_addresses,
    check_issuer_serves_these_keys,
    open_database,
    server_credentials,
)
from .storage import SessionStore, StorageUnavailable

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SessionService"].full_name
READINESS_INTERVAL_S = 5.0


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    store: SessionStore
    authority: Authority
    metrics: Metrics
    http_port: int | None = None
    http_listener: HttpListener | None = None
    # The iss of its tokens: the configured issuer, or the one derived at start.
    issuer: str = ""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting RPCs, let in-flight ones finish within grace, close storage."""
        for task in self.tasks:
            task.cancel()
        listener, self.http_listener = self.http_listener, None
        await asyncio.gather(
            self.server.stop(grace), *([listener.stop(grace)] if listener is not None else [])
        )
        await self.store.close()


def http_rpc_refusal(settings: Settings) -> str | None:
    """Why the HTTP listener may not serve RPCs, or None. Callers reach them under
    the gRPC port's own transport security or not at all: with TLS configured
    (and so perhaps client certificates required), a plain-HTTP listener serves
    only what needs no caller authentication (JWKS, discovery, probes, metrics)."""
    if settings.tls_cert_file and not settings.http_tls:
        return (
            f"TLS is configured ({env_name('tls_cert_file')}): RPCs over HTTP need "
            f"{env_name('http_tls')}=true, which serves HTTPS with the same certificate "
            "and client CA"
        )
    return None


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


async def start_server(
    settings: Settings,
    *,
    clock: Clock | None = None,
    interceptors: Sequence[Any] = (),
    run_background_jobs: bool = True,
    reuse_port: bool = False,
) -> RunningServer:
    """Check the TLS files and addresses, open the database, bind the gRPC and HTTP
    ports, settle the issuer, and only then start serving RPCs (so that no token
    is minted with an issuer that is not yet known)."""
    credentials = server_credentials(settings) if settings.tls_cert_file else None
    check_addresses(settings, reuse_port=reuse_port)
    store, _ = await open_database(settings)
    server: grpc.aio.Server | None = None
    http_listener: HttpListener | None = None
    http_app: HttpApp | None = None
    try:
        metrics = Metrics()
        authority = await assemble(settings, store, clock or SystemClock(), metrics)
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
        # One servicer, for gRPC here and for Connect and gRPC-Web on the HTTP listener.
        servicer = SessionServicer(authority, RpcGate(authenticator, metrics), metrics)
        register(servicer, server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        try:
            if credentials is not None:
                port = server.add_secure_port(settings.listen, credentials)
            else:
                port = server.add_insecure_port(settings.listen)
        except RuntimeError:
            port = 0
        if port == 0:
            raise ConfigError(f"{env_name('listen')}: cannot listen on {settings.listen}")
        running = RunningServer(server, port, store, authority, metrics)
        if settings.http_listen:
            try:
                http_app = HttpApp(authority.tokens, store, metrics, rpc_path=SERVICE_PATH)
                http_listener = await start_http(
                    http_app,
                    settings.http_listen,
                    limits=ConnectionLimits(
                        header_timeout=settings.http_header_timeout,
                        idle_timeout=settings.http_idle_timeout,
                        max_connections=settings.http_max_connections,
                    ),
                    ssl_context=(
                        server_ssl_context(
                            settings.tls_cert_file,
                            settings.tls_key_file,
                            settings.tls_client_ca_file,
                        )
                        if settings.http_tls
                        else None
                    ),
                    reuse_port=reuse_port,
                    on_reject=metrics.http_connections_rejected.inc,
                )
            except OSError as error:
                raise ConfigError(
                    f"{env_name('http_listen')}: cannot listen on {settings.http_listen} "
                    f"({error.strerror})"
                ) from None
            running.http_listener = http_listener
            running.http_port = http_listener.port
        if settings.issuer:
            await check_issuer_serves_these_keys(settings.issuer, authority.keys)
        else:
            # Derived from the port the HTTP side did bind (0 included), so that
            # jwks_uri can only be this authority's. config._check_issuer refused the
            # cases with nothing to derive from. No token has been minted yet: RPCs
            # start below.
            if running.http_port is None:  # Settings made without load_settings' checks
                raise ConfigError(
                    f"{env_name('issuer')}: must be set when {env_name('http_listen')} is empty"
                )
            settings = dataclasses.replace(
                settings,
                issuer=derived_issuer(
                    settings.http_listen, running.http_port, https=settings.http_tls
                ),
            )
            authority.tokens.issuer = settings.issuer
        running.issuer = settings.issuer
        if http_app is not None:
            http_app.serve_rpcs(
                connect_application(servicer, max_message_bytes=MAX_MESSAGE_BYTES),
                refusal=http_rpc_refusal(settings),
            )
        await server.start()
    except BaseException:
        if http_listener is not None:
            await http_listener.stop(None)
        if server is not None:
            await server.stop(None)
        await store.close()
        raise
    if run_background_jobs:
        running.tasks.append(asyncio.create_task(report_readiness(store, health_servicer)))
        running.tasks.append(
            asyncio.create_task(
                authority.housekeeping.purge_periodically(settings.cleanup_interval)
            )
        )
        running.tasks.append(asyncio.create_task(authority.revocations.poll()))
    return running


async def serve(settings: Settings, *, reuse_port: bool = False) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    running = await start_server(settings, reuse_port=reuse_port)
    host = settings.listen.rsplit(":", 1)[0]
    log.info("session authority serving gRPC on %s:%d", host, running.port)
    if running.http_port is not None:
        http_host = settings.http_listen.rsplit(":", 1)[0]
        log.info("serving HTTP (JWKS, health, metrics) on %s:%d", http_host, running.http_port)
        refusal = http_rpc_refusal(settings)
        if refusal is None:
            scheme = "https" if settings.http_tls else "http"
            log.info(
                "serving SessionService over Connect and gRPC-Web at %s://%s:%d%s/",
                scheme,
                http_host,
                running.http_port,
                SERVICE_PATH,
            )
        else:
            log.info("not serving RPCs over HTTP: %s", refusal)
    log.info("issuer (iss of every token): %s", running.issuer)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("shutting down: finishing in-flight calls (up to %d s)", settings.shutdown_grace)
    with contextlib.suppress(asyncio.CancelledError):
        await running.stop(settings.shutdown_grace)
    log.info("stopped")
