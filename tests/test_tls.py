"""TLS and mTLS on the gRPC port: certificates made here with `cryptography`, a
real server, real clients with and without certificates and API keys."""

from __future__ import annotations

import asyncio
import datetime
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from session_authority import SessionClient
from session_authority.errors import ApiKeyInvalidError, AuthorityUnreachableError
from session_authority_server.app import RunningServer
from session_authority_server.config import ConfigError, load_settings

from .processes import start_server_process

Start = Callable[..., Awaitable[RunningServer]]
Connect = Callable[..., SessionClient]

API_KEY = "tls-test-api-key-0123456789"
# A refused handshake must fail fast, not wait out the client's default deadline.
REFUSED_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA the server trusts for client certificates; clients trust it too
    server_cert: Path
    server_key: Path
    client_cert: bytes  # signed by ca
    client_key: bytes
    other_client_cert: bytes  # signed by another CA
    other_client_key: bytes
    other_ca: bytes

    @property
    def ca_pem(self) -> bytes:
        return self.ca.read_bytes()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _make_ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_leaf(
    common_name: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    *,
    usage: x509.ObjectIdentifier,
    names: list[x509.GeneralName] | None = None,
) -> tuple[bytes, bytes]:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return _cert_pem(builder.sign(ca_key, hashes.SHA256())), _key_pem(key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = _make_ca("session-authority test CA")
    other_ca = _make_ca("some other CA")
    server_cert, server_key = _make_leaf(
        "session-authority",
        ca,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        names=[x509.IPAddress(IPv4Address("127.0.0.1")), x509.DNSName("localhost")],
    )
    client_cert, client_key = _make_leaf("api-gateway", ca, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    other_cert, other_key = _make_leaf(
        "api-gateway", other_ca, usage=ExtendedKeyUsageOID.CLIENT_AUTH
    )
    paths = {
        "ca": directory / "ca.pem",
        "server_cert": directory / "server.pem",
        "server_key": directory / "server-key.pem",
    }
    paths["ca"].write_bytes(_cert_pem(ca[0]))
    paths["server_cert"].write_bytes(server_cert)
    paths["server_key"].write_bytes(server_key)
    return Pki(
        ca=paths["ca"],
        server_cert=paths["server_cert"],
        server_key=paths["server_key"],
        client_cert=client_cert,
        client_key=client_key,
        other_client_cert=other_cert,
        other_client_key=other_key,
        other_ca=_cert_pem(other_ca[0]),
    )


def tls_settings(pki: Pki, *, mtls: bool = False) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "tls_cert_file": str(pki.server_cert),
        "tls_key_file": str(pki.server_key),
    }
    if mtls:
        settings["tls_client_ca_file"] = str(pki.ca)
    return settings


async def round_trip(client: SessionClient) -> None:
    """Create, verify locally (JWKS over gRPC) and in the database, refresh, revoke."""
    session = await client.create_new_session("user-1", {"role": "admin"})
    verified = await client.get_session(session.access_token)
    assert verified is not None and verified.access_token_payload["role"] == "admin"
    checked = await client.get_session(session.access_token, check_database=True)
    assert checked is not None and checked.session_handle == session.session_handle
    assert session.refresh_token is not None
    refreshed = await client.refresh_session(session.refresh_token)
    assert await client.revoke_session(refreshed.session_handle) is True


async def assert_unreachable(client: SessionClient) -> None:
    async with client:
        with pytest.raises(AuthorityUnreachableError):
            await client.create_new_session("user-1")


# --- TLS -------------------------------------------------------------------------------


async def test_tls_serves_clients_that_trust_the_ca(
    start: Start, connect: Connect, pki: Pki
) -> None:
    server = await start(**tls_settings(pki))
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca_pem)
    async with connect(server, credentials=credentials) as client:
        await round_trip(client)
    # The certificate names localhost too.
    async with SessionClient(
        f"localhost:{server.port}",
        credentials=credentials,
        channel_options=[("grpc.ssl_target_name_override", "localhost")],
    ) as client:
        assert (await client.create_new_session("user-2")).user_id == "user-2"


async def test_tls_refuses_plaintext_and_untrusting_clients(
    start: Start, connect: Connect, pki: Pki
) -> None:
    server = await start(**tls_settings(pki))
    await assert_unreachable(connect(server, timeout=REFUSED_TIMEOUT_S))
    untrusting = grpc.ssl_channel_credentials(root_certificates=pki.other_ca)
    await assert_unreachable(connect(server, credentials=untrusting, timeout=REFUSED_TIMEOUT_S))
    # A name the certificate does not carry.
    trusting = grpc.ssl_channel_credentials(root_certificates=pki.ca_pem)
    await assert_unreachable(
        connect(
            server,
            credentials=trusting,
            timeout=REFUSED_TIMEOUT_S,
            channel_options=[("grpc.ssl_target_name_override", "auth.example.com")],
        )
    )
    # Nothing of the above created a session.
    async with connect(server, credentials=trusting) as client:
        assert await client.get_all_session_handles_for_user("user-1") == []


# --- mTLS ------------------------------------------------------------------------------


async def test_mtls_serves_only_clients_with_a_certificate_from_the_ca(
    start: Start, connect: Connect, pki: Pki
) -> None:
    server = await start(**tls_settings(pki, mtls=True))
    no_certificate = grpc.ssl_channel_credentials(root_certificates=pki.ca_pem)
    await assert_unreachable(connect(server, credentials=no_certificate, timeout=REFUSED_TIMEOUT_S))
    foreign = grpc.ssl_channel_credentials(
        root_certificates=pki.ca_pem,
        private_key=pki.other_client_key,
        certificate_chain=pki.other_client_cert,
    )
    await assert_unreachable(connect(server, credentials=foreign, timeout=REFUSED_TIMEOUT_S))
    await assert_unreachable(connect(server, timeout=REFUSED_TIMEOUT_S))  # plaintext

    ours = grpc.ssl_channel_credentials(
        root_certificates=pki.ca_pem,
        private_key=pki.client_key,
        certificate_chain=pki.client_cert,
    )
    async with connect(server, credentials=ours) as client:
        await round_trip(client)
        assert await client.get_all_session_handles_for_user("user-1") == []


async def test_mtls_and_api_key_together(start: Start, connect: Connect, pki: Pki) -> None:
    server = await start(api_keys=(API_KEY,), **tls_settings(pki, mtls=True))
    ours = grpc.ssl_channel_credentials(
        root_certificates=pki.ca_pem,
        private_key=pki.client_key,
        certificate_chain=pki.client_cert,
    )
    async with connect(server, credentials=ours, api_key=API_KEY) as client:
        await round_trip(client)
    # A certificate is not enough without the key ...
    async with connect(server, credentials=ours) as client:
        with pytest.raises(ApiKeyInvalidError) as caught:
            await client.create_new_session("user-1")
        assert API_KEY not in str(caught.value)
    async with connect(server, credentials=ours, api_key=API_KEY[::-1]) as client:
        with pytest.raises(ApiKeyInvalidError):
            await client.create_new_session("user-1")
    # ... and the key is not enough without a certificate.
    no_certificate = grpc.ssl_channel_credentials(root_certificates=pki.ca_pem)
    await assert_unreachable(
        connect(server, credentials=no_certificate, api_key=API_KEY, timeout=REFUSED_TIMEOUT_S)
    )
    await assert_unreachable(connect(server, api_key=API_KEY, timeout=REFUSED_TIMEOUT_S))


# --- settings --------------------------------------------------------------------------


def test_tls_settings_are_checked_at_load(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SESSION_AUTHORITY_TLS_CERT_FILE"):
        load_settings(None, {}, tls_cert_file=str(pki.server_cert))
    with pytest.raises(ConfigError, match="SESSION_AUTHORITY_TLS_KEY_FILE"):
        load_settings(None, {}, tls_key_file=str(pki.server_key))
    with pytest.raises(ConfigError, match="SESSION_AUTHORITY_TLS_CLIENT_CA_FILE"):
        load_settings(None, {}, tls_client_ca_file=str(pki.ca))
    with pytest.raises(ConfigError, match="SESSION_AUTHORITY_TLS_CERT_FILE"):
        load_settings(
            None, {}, tls_cert_file=str(tmp_path / "missing.pem"), tls_key_file=str(pki.server_key)
        )
    with pytest.raises(ConfigError, match="SESSION_AUTHORITY_TLS_CLIENT_CA_FILE"):
        load_settings(
            None,
            {},
            tls_client_ca_file=str(tmp_path / "missing.pem"),
            **tls_settings(pki),
        )
    settings = load_settings(
        None,
        {
            "SESSION_AUTHORITY_TLS_CERT_FILE": str(pki.server_cert),
            "SESSION_AUTHORITY_TLS_KEY_FILE": str(pki.server_key),
            "SESSION_AUTHORITY_TLS_CLIENT_CA_FILE": str(pki.ca),
        },
    )
    assert settings.tls_client_ca_file == str(pki.ca)


# --- the real process, as an operator runs it --------------------------------------------


async def test_process_with_api_keys_over_mtls(pki: Pki, tmp_path: Path) -> None:
    """Done-when of issue 5: the JWKS over plain HTTP, a client without the API
    key refused, a client with it over mTLS served; keys rotate (two at once)."""
    other_key = "tls-test-api-key-rotated-9876"
    server = await start_server_process(
        {
            "database_url": f"sqlite:///{tmp_path}/sessions.db",
            "http_listen": "127.0.0.1:0",
            "api_keys": f"{API_KEY},{other_key}",
            "tls_cert_file": str(pki.server_cert),
            "tls_key_file": str(pki.server_key),
            "tls_client_ca_file": str(pki.ca),
        }
    )
    try:
        http_port = None
        async with asyncio.timeout(10):
            while http_port is None:
                match = re.search(r"serving HTTP \(.*\) on [\d.]+:(\d+)", server.log_text())
                http_port = int(match.group(1)) if match else None
                if http_port is None:
                    await asyncio.sleep(0.02)
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{http_port}/.well-known/jwks.json") as response,
        ):
            assert response.status == 200
            http_jwks = json.loads(await response.read())

        ours = grpc.ssl_channel_credentials(
            root_certificates=pki.ca_pem,
            private_key=pki.client_key,
            certificate_chain=pki.client_cert,
        )
        async with server.client(credentials=ours) as client:
            with pytest.raises(ApiKeyInvalidError):
                await client.create_new_session("user-1")
        for key in (API_KEY, other_key):
            async with server.client(credentials=ours, api_key=key) as client:
                await round_trip(client)
                grpc_jwks = await client.get_jwks()
                assert {k["kid"] for k in grpc_jwks["keys"]} == {
                    k["kid"] for k in http_jwks["keys"]
                }
        assert await server.stop() == 0
    finally:
        await server.kill()
    log = server.log_text()
    assert API_KEY not in log and other_key not in log
    assert "SESSION_AUTHORITY_API_KEYS" not in log  # keys are set: no missing-key warning
