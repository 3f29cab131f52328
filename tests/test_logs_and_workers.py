"""Structured logs that never carry a secret, and `serve --workers N`."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import sys
from pathlib import Path

import pytest
from session_authority import SessionClient, TokenTheftDetectedError

API_KEY = "test-api-key-0123456789abcdef"
MASTER_KEY = base64.b64encode(bytes(range(32))).decode()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_AUTHORITY_")}
    env["SESSION_AUTHORITY_DATABASE_URL"] = f"sqlite:///{tmp_path}/sessions.db"
    env["SESSION_AUTHORITY_LISTEN"] = "127.0.0.1:0"
    env["SESSION_AUTHORITY_HTTP_LISTEN"] = "127.0.0.1:0"
    env.update({f"SESSION_AUTHORITY_{k.upper()}": v for k, v in settings.items()})
    return env


async def _start(env: dict[str, str], *args: str) -> tuple[asyncio.subprocess.Process, int]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "session_authority_server",
        "serve",
        *args,
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    async with asyncio.timeout(30):
        while True:
            line = (await process.stderr.readline()).decode()
            assert line, "the server exited before serving"
            if "serving gRPC on" in line:
                text = json.loads(line)["message"] if line.startswith("{") else line
                return process, int(text.rsplit(":", 1)[1].split()[0])


async def test_json_logs_of_a_full_run_hold_no_secret(tmp_path: Path) -> None:
    env = _env(
        tmp_path, log_level="DEBUG", log_format="json", api_keys=API_KEY, master_key=MASTER_KEY
    )
    process, port = await _start(env)
    secrets: list[str] = [API_KEY, MASTER_KEY]
    try:
        async with SessionClient(f"127.0.0.1:{port}", api_key=API_KEY) as client:
            created = await client.create_new_session("user-1", {"role": "x"}, {"d": 1})
            assert created.refresh_token is not None
            first = await client.refresh_session(created.refresh_token)
            assert first.refresh_token is not None
            await client.refresh_session(first.refresh_token)
            with pytest.raises(TokenTheftDetectedError):
                await client.refresh_session(created.refresh_token)  # an ancestor: theft
            await client.get_session(first.access_token, check_database=False)
            jwt = await client.create_jwt({"a": 1})
            for session in (created, first):
                assert session.refresh_token is not None
                secrets += [session.access_token, session.refresh_token]
                secrets.append(session.access_token_payload["refreshTokenHash1"])
            secrets.append(jwt)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.stderr is not None
        rest = (await process.stderr.read()).decode()
        await process.wait()
    lines = [line for line in rest.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert {"time", "level", "logger", "message"} <= records[0].keys()
    assert any("refresh token reuse" in r["message"] for r in records)
    for secret in secrets:
        assert secret not in rest
        assert secret[:24] not in rest  # not even a prefix
    assert "PRIVATE KEY" not in rest and "sealed:v1" not in rest


async def test_workers_share_one_port(tmp_path: Path) -> None:
    port, http_port = _free_port(), _free_port()
    env = _env(tmp_path, listen=f"127.0.0.1:{port}", http_listen=f"127.0.0.1:{http_port}")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "session_authority_server",
        "serve",
        "--workers",
        "2",
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        async with asyncio.timeout(30):
            served = 0
            while served < 2:  # both workers announce the same port
                line = (await process.stderr.readline()).decode()
                assert line, "the workers exited before serving"
                if f"serving gRPC on 127.0.0.1:{port}" in line:
                    served += 1
        tokens = []
        for _ in range(20):  # new connections spread over the workers
            async with SessionClient(f"127.0.0.1:{port}") as client:
                created = await client.create_new_session("user-1")
                tokens.append(created)
        async with SessionClient(f"127.0.0.1:{port}") as client:
            for created in tokens:  # one database, one key ring: any worker verifies
                assert await client.get_session(created.access_token, check_database=True)
        kids = {t.access_token.split(".")[0] for t in tokens}
        assert len(kids) == 1
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            rest = (await process.stderr.read()).decode()
            code = await process.wait()
    assert code == 0
    assert rest.count("stopped") == 2
