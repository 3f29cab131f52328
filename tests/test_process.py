"""The real `session-authority` process: start, serve, SIGTERM, restart."""

from __future__ import annotations

import asyncio
import errno
import importlib.metadata
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from session_authority import SessionClient
from session_authority_server.config import FIELD_NAMES, Settings, env_name

from .conftest import POSTGRES_DSN

START_TIMEOUT = 30


def _env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_AUTHORITY_")}
    env["SESSION_AUTHORITY_DATABASE_URL"] = f"sqlite:///{tmp_path}/sessions.db"
    env["SESSION_AUTHORITY_LISTEN"] = "127.0.0.1:0"
    env["SESSION_AUTHORITY_HTTP_LISTEN"] = "127.0.0.1:0"
    env.update({f"SESSION_AUTHORITY_{k.upper()}": v for k, v in settings.items()})
    return env


@asynccontextmanager
async def running_process(tmp_path: Path) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "session_authority_server",
        "serve",
        env=_env(tmp_path),
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        port = None
        async with asyncio.timeout(START_TIMEOUT):
            while port is None:
                line = (await process.stderr.readline()).decode()
                assert line, "the server exited before serving"
                match = re.search(r"serving gRPC on [\d.]+:(\d+)", line)
                port = int(match.group(1)) if match else None
        yield process, port
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _stop(process: asyncio.subprocess.Process) -> str:
    process.send_signal(signal.SIGTERM)
    assert process.stderr is not None
    async with asyncio.timeout(START_TIMEOUT):
        rest = (await process.stderr.read()).decode()
        assert await process.wait() == 0
    return rest


async def test_restart_keeps_sessions_and_signing_keys(tmp_path: Path) -> None:
    async with running_process(tmp_path) as (process, port):
        async with SessionClient(f"127.0.0.1:{port}") as client:
            sessions = [
                await client.create_new_session(f"user-{i}", {"n": i}, {"d": i}) for i in range(3)
            ]
            jwks_before = await client.get_jwks()
        log = await _stop(process)
    assert "stopped" in log
    for session in sessions:  # nothing secret reached the log
        assert session.access_token not in log
        assert session.refresh_token is not None and session.refresh_token not in log

    async with running_process(tmp_path) as (process, port):
        async with SessionClient(f"127.0.0.1:{port}") as client:
            assert await client.get_jwks() == jwks_before
            for i, session in enumerate(sessions):
                verified = await client.get_session(session.access_token, check_database=True)
                assert verified is not None and verified.access_token_payload["n"] == i
                info = await client.get_session_information(session.session_handle)
                assert info is not None and info.session_data_in_database == {"d": i}
                assert session.refresh_token is not None
                refreshed = await client.refresh_session(session.refresh_token)
                assert await client.get_session(refreshed.access_token) is not None
        await _stop(process)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ACCESS_TOKEN_VALIDITY", "an hour"),
        ("ANTI_CSRF", "SOMETIMES"),
        ("SIGNING_ALGORITHM", "HS256"),
        ("LISTEN", "nowhere"),
        ("REFRESH_GRACE_PERIOD", "-1"),
    ],
)
async def test_bad_setting_fails_at_start_with_one_line(
    tmp_path: Path, name: str, value: str
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "session_authority_server",
        "serve",
        env=_env(tmp_path, **{name: value}),
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    assert process.returncode == 2
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1
    assert f"SESSION_AUTHORITY_{name}" in lines[0]


async def test_migrate_command(tmp_path: Path) -> None:
    outputs = []
    for _ in range(2):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "session_authority_server",
            "migrate",
            env=_env(tmp_path),
            stdout=asyncio.subprocess.PIPE,
        )
        stdout, _ = await process.communicate()
        assert process.returncode == 0
        outputs.append(stdout.decode().strip())
    assert outputs == ["applied migrations: 1, 2, 3", "up to date"]


# --- the command line as a new user types it ----------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "session_authority_server", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=False,
    )


@pytest.mark.parametrize("order", ["after", "before"], ids=["command --config", "--config command"])
def test_config_is_accepted_before_and_after_the_command(tmp_path: Path, order: str) -> None:
    config = tmp_path / "authority.toml"
    config.write_text(f'database_url = "sqlite:///{tmp_path}/from-toml.db"\n')
    env = _env(tmp_path)
    del env["SESSION_AUTHORITY_DATABASE_URL"]  # so that the file's URL is the one used
    args = ["migrate", "--config", str(config)]
    if order == "before":
        args = ["--config", str(config), "migrate"]
    completed = _cli(*args, env=env)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "applied migrations: 1, 2, 3\n"
    assert (tmp_path / "from-toml.db").exists()


def test_help_is_plain_text_and_every_command_is_described() -> None:
    completed = _cli("--help")
    assert completed.returncode == 0
    assert "``" not in completed.stdout  # no reStructuredText
    for command in ("serve", "migrate", "purge-expired", "settings"):
        assert re.search(rf"^\s+{command}\s+\w", completed.stdout, flags=re.MULTILINE), command
        sub = _cli(command, "--help")
        assert sub.returncode == 0
        description = sub.stdout.split("\n\n")[1]  # after the usage
        assert description and not description.startswith("options:"), sub.stdout
    assert "session-authority settings" in _cli("serve", "--help").stdout


def test_version() -> None:
    completed = _cli("--version")
    assert completed.returncode == 0
    assert (
        completed.stdout == f"session-authority {importlib.metadata.version('session-authority')}\n"
    )


def test_settings_lists_every_setting_with_its_default_variable_and_toml_key() -> None:
    completed = _cli("settings")
    assert completed.returncode == 0
    defaults = Settings()
    for name in FIELD_NAMES:
        line = next(
            (
                line
                for line in completed.stdout.splitlines()
                if line.startswith(env_name(name) + " ")
            ),
            None,
        )
        assert line is not None, name
        assert f"(TOML: {name})" in line
        default = getattr(defaults, name)
        if isinstance(default, int) and not isinstance(default, bool):
            assert line.endswith(f"default: {default}")


# --- startup failures: one line naming the setting, never a traceback -------------------


def _postgres_url(user: str | None = None, database: str | None = None) -> str:
    if not POSTGRES_DSN:
        pytest.skip("SESSION_AUTHORITY_TEST_POSTGRES_DSN is not set (CI sets it; see .ci/run)")
    parts = urlsplit(POSTGRES_DSN)
    netloc = parts.netloc
    if user is not None:
        netloc = f"{user}:hunter2@{netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc, path=f"/{database or parts.path[1:]}"))


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port some other process is listening on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def _garbage_tls(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "cert.pem").write_text("not a certificate\n")
    (tmp_path / "key.pem").write_text("not a key\n")
    return {"tls_cert_file": str(tmp_path / "cert.pem"), "tls_key_file": str(tmp_path / "key.pem")}


def _mismatched_tls(tmp_path: Path) -> dict[str, str]:
    """A good certificate, and the key of another one."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return {"tls_cert_file": str(tmp_path / "cert.pem"), "tls_key_file": str(tmp_path / "key.pem")}


STARTUP_FAILURES: dict[str, tuple[str, Callable[..., dict[str, str]], str]] = {
    # case: (the setting named, settings, what the line says)
    "postgres-unknown-role": (
        "DATABASE_URL",
        lambda tmp_path, port: {"database_url": _postgres_url(user="no_such_role_sa")},
        'PostgreSQL: role "no_such_role_sa" does not exist',
    ),
    "postgres-missing-database": (
        "DATABASE_URL",
        lambda tmp_path, port: {"database_url": _postgres_url(database="no_such_database_sa")},
        'PostgreSQL: database "no_such_database_sa" does not exist',
    ),
    "sqlite-folder-cannot-be-made": (
        "DATABASE_URL",
        lambda tmp_path, port: {"database_url": f"sqlite:///{tmp_path}/a-file/sessions.db"},
        "cannot create the folder",
    ),
    "garbage-tls-certificate": (
        "TLS_CERT_FILE",
        lambda tmp_path, port: _garbage_tls(tmp_path),
        "holds no PEM certificate",
    ),
    "tls-key-of-another-certificate": (
        "TLS_KEY_FILE",
        lambda tmp_path, port: _mismatched_tls(tmp_path),
        "not the key of the certificate",
    ),
    "grpc-port-in-use": (
        "LISTEN",
        lambda tmp_path, port: {"listen": f"127.0.0.1:{port}"},
        f"cannot listen on 127.0.0.1:{{port}} ({os.strerror(errno.EADDRINUSE)})",
    ),
    "http-port-in-use": (
        "HTTP_LISTEN",
        lambda tmp_path, port: {"http_listen": f"127.0.0.1:{port}"},
        f"cannot listen on 127.0.0.1:{{port}} ({os.strerror(errno.EADDRINUSE)})",
    ),
    "unknown-host": (
        "LISTEN",
        lambda tmp_path, port: {"listen": "no-such-host.invalid:50051"},
        "cannot listen on no-such-host.invalid:50051 (",
    ),
    "misspelt-variable": (
        "LISEN",
        lambda tmp_path, port: {"lisen": "127.0.0.1:50051"},
        "unknown setting (did you mean SESSION_AUTHORITY_LISTEN?)",
    ),
    "zero-workers": ("WORKERS", lambda tmp_path, port: {"workers": "0"}, "must be at least 1,"),
    "issuer-from-every-interface": (
        "ISSUER",
        lambda tmp_path, port: {"http_listen": "0.0.0.0:0"},
        "must be set when SESSION_AUTHORITY_HTTP_LISTEN listens on every interface",
    ),
}


@pytest.mark.parametrize("case", list(STARTUP_FAILURES))
async def test_a_startup_failure_is_one_line_naming_the_setting(
    tmp_path: Path, taken_port: int, case: str
) -> None:
    named, settings, says = STARTUP_FAILURES[case]
    (tmp_path / "a-file").write_text("")  # where a folder would have to be
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "session_authority_server",
        "serve",
        env=_env(tmp_path, **settings(tmp_path, taken_port)),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(START_TIMEOUT):
        _, raw = await process.communicate()
    stderr = raw.decode()
    assert process.returncode == 2, stderr
    assert "Traceback" not in stderr
    assert "hunter2" not in stderr  # a database URL's password is never shown
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(
        f"session-authority: configuration error: SESSION_AUTHORITY_{named}: "
    )
    assert says.format(port=taken_port) in lines[0]


async def test_an_unreachable_database_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    url = f"postgresql://authority:hunter2@127.0.0.1:{port}/sessions"
    completed = _cli(
        "migrate", env=_env(tmp_path, database_url=url, database_statement_timeout="1")
    )
    assert completed.returncode == 1
    assert completed.stderr.startswith(
        "session-authority: SESSION_AUTHORITY_DATABASE_URL: storage unavailable: "
    )
    assert len(completed.stderr.splitlines()) == 1, completed.stderr
    assert "hunter2" not in completed.stderr
