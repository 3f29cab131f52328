"""The real `session-authority` process: start, serve, SIGTERM, restart."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from session_authority import SessionClient

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
