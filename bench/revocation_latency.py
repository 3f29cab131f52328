"""How soon does a service verifying tokens locally reject a revoked session?

Starts real server processes (one on a fresh SQLite file; or two replicas on a
fresh PostgreSQL database), a watching client (``watch_revocations=True``,
verifying locally) and a revoking client, and measures, over N revocations, the
time from ``revoke_session`` returning to the watcher's local ``get_session``
raising UnauthorisedError. On PostgreSQL the watcher is connected to replica A
and the revoker to replica B, so each revocation crosses replicas.

Targets (issue 7): p99 < 100 ms on one SQLite server, p99 < 1 s across two
PostgreSQL replicas.

    python -m bench.revocation_latency --backend sqlite --count 200
    python -m bench.revocation_latency --backend postgresql --dsn postgresql://postgres@127.0.0.1/test
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from session_authority import SessionClient, SessionContainer, UnauthorisedError

RESULTS = Path(__file__).parent / "results"
TARGET_S = {"sqlite": 0.1, "postgresql": 1.0}
# How often the watcher's get_session is retried while waiting for the rejection:
# the resolution of every sample.
POLL_S = 0.001
# A random pause before each revocation, so that samples do not lock onto the
# phase of the replicas' 200 ms log poll (which would report its worst case only).
MAX_PAUSE_S = 0.25
GIVE_UP_S = 10.0
START_TIMEOUT_S = 30.0
_SERVING = re.compile(r"serving gRPC on [\d.]+:(\d+)")


@dataclass
class Server:
    process: asyncio.subprocess.Process
    port: int = 0
    log: list[str] = field(default_factory=list)
    drain: asyncio.Task[None] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), START_TIMEOUT_S)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self.drain is not None:
            self.drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.drain


async def _collect(stream: asyncio.StreamReader, log: list[str]) -> None:
    while line := await stream.readline():
        log.append(line.decode(errors="replace"))


async def start_server(database_url: str) -> Server:
    """`python -m session_authority_server serve`, configured as an operator would,
    on ephemeral ports read back from its log."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_AUTHORITY_")}
    env |= {
        "SESSION_AUTHORITY_DATABASE_URL": database_url,
        "SESSION_AUTHORITY_LISTEN": "127.0.0.1:0",
        "SESSION_AUTHORITY_HTTP_LISTEN": "127.0.0.1:0",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "session_authority_server",
        "serve",
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    server = Server(process)
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            while not server.port:
                line = (await process.stderr.readline()).decode(errors="replace")
                if not line:
                    raise RuntimeError("the server exited before serving:\n" + "".join(server.log))
                server.log.append(line)
                match = _SERVING.search(line)
                if match:
                    server.port = int(match.group(1))
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    server.drain = asyncio.create_task(_collect(process.stderr, server.log))
    return server


@asynccontextmanager
async def database(backend: str, dsn: str | None) -> AsyncIterator[str]:
    """A fresh database URL, removed afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="sa-revocation-") as folder:
            yield f"sqlite:///{folder}/sessions.db"
        return
    import asyncpg

    if not dsn:
        raise SystemExit("postgresql needs --dsn or SESSION_AUTHORITY_TEST_POSTGRES_DSN")
    name = f"sa_revocation_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield f"{dsn.rpartition('/')[0]}/{name}"
    finally:
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def rejection_latency(
    watcher: SessionClient, revoker: SessionClient, session: SessionContainer
) -> float:
    """Revoke through one client; seconds until the other rejects the token locally."""
    if not await revoker.revoke_session(session.session_handle):
        raise RuntimeError("revoke_session found no session")
    returned = time.perf_counter()
    while True:
        try:
            await watcher.get_session(session.access_token)
        except UnauthorisedError:
            return time.perf_counter() - returned
        if time.perf_counter() - returned > GIVE_UP_S:
            raise RuntimeError(f"the token was still accepted after {GIVE_UP_S:.0f} s")
        await asyncio.sleep(POLL_S)


async def connected(watcher: SessionClient) -> None:
    """Wait until the watcher has heard from its stream (its first message)."""
    started = time.perf_counter()
    while watcher.revocations is None or not watcher.revocations.is_fresh():
        if time.perf_counter() - started > START_TIMEOUT_S:
            raise RuntimeError("the revocation stream did not connect")
        await asyncio.sleep(POLL_S)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def run(backend: str, dsn: str | None, count: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    async with database(backend, dsn) as url, AsyncExitStack() as stack:
        replicas = 1 if backend == "sqlite" else 2
        servers = await asyncio.gather(*(start_server(url) for _ in range(replicas)))
        for server in servers:
            stack.push_async_callback(server.stop)
        watching, revoking = servers[0], servers[-1]
        watcher = await stack.enter_async_context(
            SessionClient(watching.target, watch_revocations=True)
        )
        revoker = await stack.enter_async_context(SessionClient(revoking.target))

        sessions = [await revoker.create_new_session(f"user-{i}") for i in range(count)]
        for session in sessions:  # JWKS fetched; every token valid before its revocation
            await watcher.get_session(session.access_token)
        await connected(watcher)

        latencies = []
        for session in sessions:
            await asyncio.sleep(rng.uniform(0, MAX_PAUSE_S))
            latencies.append(await rejection_latency(watcher, revoker, session))

    target = TARGET_S[backend]
    p99 = percentile(latencies, 0.99)
    return {
        "backend": backend,
        "servers": replicas,
        "path": (
            "revoke on the server, watcher on the same server"
            if replicas == 1
            else "revoke on replica B, watcher on replica A"
        ),
        "count": count,
        "poll_interval_ms": POLL_S * 1000,
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(p99 * 1000, 2),
        "max_ms": round(max(latencies) * 1000, 2),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2),
        "target_p99_ms": target * 1000,
        "pass": p99 < target,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--count", type=int, default=100, help="revocations to measure")
    parser.add_argument("--dsn", default=os.environ.get("SESSION_AUTHORITY_TEST_POSTGRES_DSN"))
    parser.add_argument("--seed", type=int, default=7, help="for the pauses between samples")
    args = parser.parse_args()
    if args.count < 1:
        parser.error("--count must be at least 1")
    result = asyncio.run(run(args.backend, args.dsn, args.count, args.seed))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"revocation-{args.backend}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    verdict = "PASS" if result["pass"] else "FAIL"
    print(
        f"{args.backend} ({result['path']}), {result['count']} revocations: "
        f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
        f"max {result['max_ms']:.1f} ms; target p99 < {result['target_p99_ms']:.0f} ms: {verdict}"
    )
    print(f"written to {out}")
    sys.exit(0 if result["pass"] else 1)


if __name__ == "__main__":
    main()
