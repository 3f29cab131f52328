"""Real `session-authority serve` processes for tests, started from the environment
as an operator would, each on an ephemeral port read from its log."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from session_authority import SessionClient

START_TIMEOUT = 30
STOP_TIMEOUT = 30
_SERVING = re.compile(r"serving gRPC on [\d.]+:(\d+)")


def server_env(settings: Mapping[str, str]) -> dict[str, str]:
    """This environment without any SESSION_AUTHORITY_* variable, then the given
    settings (``database_url="..."`` -> SESSION_AUTHORITY_DATABASE_URL)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_AUTHORITY_")}
    env["SESSION_AUTHORITY_LISTEN"] = "127.0.0.1:0"
    env["SESSION_AUTHORITY_HTTP_LISTEN"] = "127.0.0.1:0"
    env.update({f"SESSION_AUTHORITY_{k.upper()}": v for k, v in settings.items()})
    return env


@dataclass
class ServerProcess:
    """A running server process; its stderr is collected in ``log`` as it comes,
    so that a chatty server never blocks on a full pipe."""

    process: asyncio.subprocess.Process
    port: int
    log: list[str] = field(default_factory=list)
    _drain: asyncio.Task[None] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self, **options: Any) -> SessionClient:
        return SessionClient(self.target, **options)

    def log_text(self) -> str:
        return "".join(self.log)

    async def stop(self) -> int:
        """SIGTERM, then wait for a graceful exit; returns the exit status."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                status = await self.process.wait()
                if self._drain is not None:
                    await self._drain
        finally:
            await self.kill()
        return status

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        if self._drain is not None and not self._drain.done():
            self._drain.cancel()
            with suppress(asyncio.CancelledError):
                await self._drain


async def _collect(stream: asyncio.StreamReader, log: list[str]) -> None:
    while line := await stream.readline():
        log.append(line.decode(errors="replace"))


async def start_server_process(settings: Mapping[str, str]) -> ServerProcess:
    """Start `python -m session_authority_server serve` and wait until it serves."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "session_authority_server",
        "serve",
        env=server_env(settings),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    server = ServerProcess(process, port=0)
    try:
        async with asyncio.timeout(START_TIMEOUT):
            while not server.port:
                line = (await process.stderr.readline()).decode(errors="replace")
                assert line, f"the server exited before serving:\n{server.log_text()}"
                server.log.append(line)
                match = _SERVING.search(line)
                if match:
                    server.port = int(match.group(1))
    except BaseException:
        await server.kill()
        raise
    server._drain = asyncio.create_task(_collect(process.stderr, server.log))
    return server


@asynccontextmanager
async def server_processes(*settings: Mapping[str, str]) -> AsyncIterator[list[ServerProcess]]:
    """Start one server per settings mapping, all at once; kill any still running
    on exit (a test that wants a graceful stop calls ``stop()`` itself)."""
    started = await asyncio.gather(
        *(start_server_process(s) for s in settings), return_exceptions=True
    )
    servers = [s for s in started if isinstance(s, ServerProcess)]
    try:
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome
        yield servers
    finally:
        for server in servers:
            await server.kill()
