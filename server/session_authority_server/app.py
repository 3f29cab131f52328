"""Assembling the service: storage, key ring, recipe logic, the gRPC server (with
health and reflection), the HTTP side, and the background jobs."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import logging
import signal
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import grpc
from aiohttp import web
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from session_authority.v1 import session_service_pb2 as pb

from .auth import CallerAuthenticator
from .clock import Clock, SystemClock
from .config import ConfigError, Settings, derived_issuer, env_name
from .http import build_http_app, start_http
from .http_limits import ConnectionLimits
from .metrics import Metrics
from .service import SessionServicer, register
from .sessions import SessionManager
from .storage import POSTGRES_PREFIXES, SQLITE_PREFIX, SessionStore, StorageUnavailable, open_store

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
    # The iss of its tokens: the configured issuer, or the one derived at start.
    issuer: str = ""
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


# --- what is checked before the database is touched -------------------------------------
# Each failure is a ConfigError naming its setting, which the CLI prints as one line
# (gRPC, given a bad certificate or a taken port, would only say "cannot listen").


def _server_credentials(settings: Settings) -> Any:
    """gRPC's TLS credentials, after checking that each file holds what it should."""

    def read(name: str) -> bytes:
        path = getattr(settings, name)
        try:
            return Path(path).read_bytes()
        except OSError as error:
            raise ConfigError(f"{env_name(name)}: cannot read {path} ({error.strerror})") from None

    def certificates(name: str, data: bytes) -> list[x509.Certificate]:
        try:
            return x509.load_pem_x509_certificates(data)
        except ValueError:
            path = getattr(settings, name)
            raise ConfigError(f"{env_name(name)}: {path} holds no PEM certificate") from None

    cert_pem, key_pem = read("tls_cert_file"), read("tls_key_file")
    chain = certificates("tls_cert_file", cert_pem)
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:  # encrypted: gRPC has no way to ask for its password
        raise ConfigError(
            f"{env_name('tls_key_file')}: {settings.tls_key_file} is encrypted; "
            "give the key unencrypted (readable by this service's user only)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(
            f"{env_name('tls_key_file')}: {settings.tls_key_file} holds no PEM private key"
        ) from None
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*spki) != chain[0].public_key().public_bytes(*spki):
        raise ConfigError(
            f"{env_name('tls_key_file')}: not the key of the certificate in "
            f"{env_name('tls_cert_file')}"
        )
    client_ca = None
    if settings.tls_client_ca_file:
        client_ca = read("tls_client_ca_file")
        certificates("tls_client_ca_file", client_ca)
    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem)],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def check_can_listen(name: str, listen: str, *, reuse_port: bool, every_address: bool) -> None:
    """Bind (and release) host:port as the server will, so that a taken port, an
    address not on this machine or an unknown host name is named with its reason.
    every_address: the server binds each address the host resolves to (aiohttp),
    rather than any one of them (gRPC)."""
    host, _, port = listen.rpartition(":")
    try:
        addresses = socket.getaddrinfo(
            host.strip("[]"), int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as error:
        raise ConfigError(
            f"{env_name(name)}: cannot listen on {listen} ({error.strerror})"
        ) from None
    failures: list[OSError] = []
    for family, kind, protocol, _, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            try:
                probe.bind(address)
            except OSError as error:
                failures.append(error)
    if failures and (every_address or len(failures) == len(addresses)):
        reason = failures[0].strerror or str(failures[0])
        raise ConfigError(f"{env_name(name)}: cannot listen on {listen} ({reason})")


def check_addresses(settings: Settings, *, reuse_port: bool = False) -> None:
    """The gRPC and HTTP addresses can be listened on (workers check them once,
    before starting any)."""
    check_can_listen("listen", settings.listen, reuse_port=reuse_port, every_address=False)
    if settings.http_listen:
        check_can_listen(
            "http_listen", settings.http_listen, reuse_port=reuse_port, every_address=True
        )


async def open_database(settings: Settings) -> tuple[SessionStore, list[int]]:
    """Open the configured database and apply pending migrations; returns the store
    and the migrations applied. What the database refuses for good (an unknown
    role, a wrong password, a missing database, a SQLite folder that cannot be
    made) is a ConfigError naming the setting; the URL itself is never shown (it
    may hold a password), only the database's own message."""
    url = settings.database_url
    store = open_store(url, **settings.store_options())
    try:
        return store, await store.open()
    except StorageUnavailable:
        raise
    except OSError as error:
        if not url.startswith(SQLITE_PREFIX):
            raise
        with contextlib.suppress(Exception):
            await store.close()
        reason = error.strerror or str(error)
        if error.filename:  # the SQLite file's folder: made on start if missing
            reason = f"cannot create the folder {error.filename} ({reason})"
        raise ConfigError(f"{env_name('database_url')}: {reason}") from None
    except Exception as error:
        if not url.startswith(POSTGRES_PREFIXES):
            raise
        import asyncpg

        if not isinstance(error, asyncpg.PostgresError):
            raise
        with contextlib.suppress(Exception):
            await store.close()
        message = " ".join(str(error).split())  # one line whatever the server sent
        raise ConfigError(f"{env_name('database_url')}: PostgreSQL: {message}") from None


# --- the issuer ------------------------------------------------------------------------------

ISSUER_CHECK_TIMEOUT_S = 2.0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _check_issuer_serves_these_keys(issuer: str, sessions: SessionManager) -> None:
    """An issuer on this machine must point at this authority's JWKS: one that
    serves another authority's keys is refused (verifiers following it would
    reject every token, or trust the other's); one where nothing answers gets a
    warning. An issuer elsewhere is not fetched: it is usually a public URL in
    front of the authority (a gateway or load balancer) that the authority itself
    need not be able to reach."""
    url = f"{issuer}/.well-known/jwks.json"
    host = urlsplit(issuer).hostname
    if host is None or not _is_loopback(host):
        return

    def identities(keys: list[Any]) -> set[str]:  # whole keys: kids are only timestamps
        return {json.dumps(key, sort_keys=True) for key in keys if isinstance(key, dict)}

    ours = identities((await sessions.keys.jwks())[0])
    theirs: set[str] | None = None
    try:
        timeout = aiohttp.ClientTimeout(total=ISSUER_CHECK_TIMEOUT_S)
        async with (
            aiohttp.ClientSession(timeout=timeout) as client,
            client.get(url, allow_redirects=False) as response,
        ):
            if response.status == 200:
                document = await response.json(content_type=None)
                keys = document.get("keys") if isinstance(document, dict) else None
                if isinstance(keys, list):
                    theirs = identities(keys)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        pass
    if theirs is None:
        log.warning(
            "%s: no JWKS answers at %s: verifiers that follow the issuer will not find "
            "this authority's keys",
            env_name("issuer"),
            url,
        )
    elif not theirs & ours:
        raise ConfigError(
            f"{env_name('issuer')}: {url} serves another authority's keys, not this one's"
        )


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
    credentials = _server_credentials(settings) if settings.tls_cert_file else None
    check_addresses(settings, reuse_port=reuse_port)
    store, _ = await open_database(settings)
    server: grpc.aio.Server | None = None
    http_runner: web.AppRunner | None = None
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
            if credentials is not None:
                port = server.add_secure_port(settings.listen, credentials)
            else:
                port = server.add_insecure_port(settings.listen)
        except RuntimeError:
            port = 0
        if port == 0:
            raise ConfigError(f"{env_name('listen')}: cannot listen on {settings.listen}")
        running = RunningServer(server, port, store, sessions, metrics)
        if settings.http_listen:
            try:
                http_runner, running.http_port = await start_http(
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
                raise ConfigError(
                    f"{env_name('http_listen')}: cannot listen on {settings.http_listen} "
                    f"({error.strerror})"
                ) from None
            running.http_runner = http_runner
        if settings.issuer:
            await _check_issuer_serves_these_keys(settings.issuer, sessions)
        else:
            # Derived from the port the HTTP side did bind (0 included), so that
            # jwks_uri can only be this authority's. config._check_issuer refused the
            # cases with nothing to derive from. The manager reads its settings on
            # every token, and none has been minted: RPCs start below.
            if running.http_port is None:  # Settings made without load_settings' checks
                raise ConfigError(
                    f"{env_name('issuer')}: must be set when {env_name('http_listen')} is empty"
                )
            settings = dataclasses.replace(
                settings, issuer=derived_issuer(settings.http_listen, running.http_port)
            )
            sessions._settings = settings
        running.issuer = settings.issuer
        await server.start()
    except BaseException:
        if http_runner is not None:
            await http_runner.cleanup()
        if server is not None:
            await server.stop(None)
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
