"""What is checked before the authority serves: the TLS files, the addresses, the
database and the issuer. Each failure is a ConfigError naming its setting, which
the CLI prints as one line (gRPC, given a bad certificate or a taken port, would
only say "cannot listen")."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import grpc
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from .config import ConfigError, Settings, env_name, host_and_port
from .keys import KeyRing
from .storage import POSTGRES_PREFIXES, SQLITE_PREFIX, SessionStore, StorageUnavailable, open_store

log = logging.getLogger(__name__)


def server_credentials(settings: Settings) -> Any:
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
    host, port = host_and_port(listen)
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
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


async def check_issuer_serves_these_keys(issuer: str, ring: KeyRing) -> None:
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

    ours = identities((await ring.jwks())[0])
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
