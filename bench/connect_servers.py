"""Which ASGI server carries Connect on the HTTP listener: each candidate serves
the authority's own HTTP application (http.HttpApp with connect.py's Connect
application over the real servicer, SQLite storage), in a process of its own;
a load generator in this process keeps CONNECTIONS keep-alive HTTP/1.1
connections busy with Connect JSON unary calls for DURATION seconds, and the
server process's CPU time is read with psutil around the run.

    python -m bench.connect_servers [--servers uvicorn,aiohttp,hypercorn,granian]
        [--rounds 3] [--duration 8] [--connections 32] [--output FILE.json]

hypercorn and granian are not among the project's dependencies: install them to
compare (pip install hypercorn==0.18.0 granian==2.8.7, the versions measured).

Candidates (the product uses the first; the others exist only here):

* uvicorn: http.start_http itself, uvicorn's httptools protocol behind
  http_limits.ConnectionLimiter;
* aiohttp: aiohttp's low-level web.Server (C parser) with a small ASGI bridge
  written here (what keeping aiohttp would have meant);
* hypercorn: hypercorn.asyncio.serve (h11);
* granian: granian's embedded server (Rust HTTP, the app on this loop).

The load generator sends pre-built requests over raw sockets and parses only
the status line and framing, so its own CPU stays small beside the server's.
Benchmark-only: nothing outside bench/ imports this.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ("uvicorn", "aiohttp", "hypercorn", "granian")
PATH = "/session_authority.v1.SessionService/"


# --- the server process ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _aiohttp_bridge(app: Any) -> Any:
    """An aiohttp low-level handler running an ASGI app (unary calls: the body is
    read whole; a disconnect cancels the handler)."""
    from aiohttp import web

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": "http",
            "path": request.path,
            "raw_path": request.raw_path.encode(),
            "query_string": request.query_string.encode(),
            "root_path": "",
            "headers": [(name.lower(), value) for name, value in request.raw_headers],
            "client": tuple(peer[:2]) if peer else None,
            "server": None,
        }
        body_read = False
        response: web.StreamResponse | None = None

        async def receive() -> dict[str, Any]:
            nonlocal body_read
            if not body_read:
                body_read = True
                return {"type": "http.request", "body": await request.read(), "more_body": False}
            await asyncio.Future()  # until the handler is cancelled
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            nonlocal response
            if message["type"] == "http.response.start":
                response = web.StreamResponse(status=message["status"])
                for name, value in message.get("headers", ()):
                    response.headers.add(name.decode(), value.decode())
                await response.prepare(request)
            elif message["type"] == "http.response.body":
                assert response is not None
                if message.get("body"):
                    await response.write(message["body"])
                if not message.get("more_body"):
                    await response.write_eof()

        await app(scope, receive, send)
        assert response is not None
        return response

    return handle


async def _serve(server_name: str, database: str) -> None:
    from session_authority_server.app import start_server
    from session_authority_server.auth import CallerAuthenticator
    from session_authority_server.config import load_settings
    from session_authority_server.connect import SERVICE_PATH, connect_application
    from session_authority_server.http import HttpApp
    from session_authority_server.rpc_gate import RpcGate
    from session_authority_server.service import SessionServicer

    settings = load_settings(
        None,
        {},
        database_url=f"sqlite:///{database}",
        sqlite_synchronous="NORMAL",
        listen="127.0.0.1:0",
        http_listen="127.0.0.1:0",
        log_level="WARNING",
    )
    running = await start_server(settings, run_background_jobs=False)
    assert running.http_port is not None
    # The same application as the product's listener, for the other servers.
    servicer = SessionServicer(
        running.authority,
        RpcGate(CallerAuthenticator((), allow_remote_without_api_key=False), running.metrics),
        running.metrics,
    )
    app = HttpApp(running.authority.tokens, running.store, running.metrics, SERVICE_PATH)
    app.serve_rpcs(connect_application(servicer, max_message_bytes=4 * 1024 * 1024))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    cleanup: Callable[[], Awaitable[Any]] | None = None
    if server_name == "uvicorn":
        port = running.http_port
    elif server_name == "aiohttp":
        from aiohttp import web

        lowlevel = web.Server(_aiohttp_bridge(app), access_log=None)
        aio = await loop.create_server(lowlevel, "127.0.0.1", 0)
        port = aio.sockets[0].getsockname()[1]
        cleanup = lowlevel.shutdown
    elif server_name == "hypercorn":
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        config = Config()
        port = _free_port()
        config.bind = [f"127.0.0.1:{port}"]
        config.accesslog = None
        config.errorlog = None
        task = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
        cleanup = lambda: task  # noqa: E731
        await asyncio.sleep(0.5)
    elif server_name == "granian":
        from granian.constants import Interfaces
        from granian.server.embed import Server

        port = _free_port()
        granian = Server(app, address="127.0.0.1", port=port, interface=Interfaces.ASGI)
        task = asyncio.create_task(granian.serve())

        async def stop_granian() -> None:
            granian.stop()
            await task

        cleanup = stop_granian
        await asyncio.sleep(0.5)
    else:
        raise SystemExit(f"unknown server {server_name}")
    print(f"PORT {port}", flush=True)
    await stop.wait()
    if cleanup is not None:
        with contextlib.suppress(Exception):
            await cleanup()
    await running.stop(0)


# --- the load generator ------------------------------------------------------------------------


def _request(port: int, method: str, body: bytes) -> bytes:
    return (
        f"POST {PATH}{method} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
    if b"content-length" in headers:
        return status, await reader.readexactly(int(headers[b"content-length"]))
    chunks = []
    while True:  # chunked
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return status, b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def _call(port: int, method: str, body: dict[str, Any]) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_request(port, method, json.dumps(body).encode()))
    status, data = await _read_response(reader)
    writer.close()
    assert status == 200, (status, data)
    result: dict[str, Any] = json.loads(data)
    return result


async def _load(
    port: int, requests: list[bytes], connections: int, duration_s: float
) -> tuple[int, int]:
    """(calls answered 200, other answers) in duration_s."""
    deadline = time.monotonic() + duration_s
    ok = failed = 0

    async def worker(index: int) -> None:
        nonlocal ok, failed
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sent = index
        while time.monotonic() < deadline:
            writer.write(requests[sent % len(requests)])
            sent += connections
            status, _ = await _read_response(reader)
            if status == 200:
                ok += 1
            else:
                failed += 1
        writer.close()

    await asyncio.gather(*(worker(i) for i in range(connections)))
    return ok, failed


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def _measure(server_name: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        child = subprocess.Popen(  # noqa: ASYNC220 (started once, read below)
            [sys.executable, "-m", "bench.connect_servers", "--serve", server_name, scratch],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            line = "?"
            while line and not line.startswith("PORT "):  # granian logs to stdout first
                line = await asyncio.to_thread(child.stdout.readline)
            if not line:
                raise SystemExit(f"{server_name}: did not start")
            port = int(line.split()[1])
            created = await _call(port, "CreateNewSession", {"userId": "bench"})
            token = created["accessToken"]["token"]
            workloads = {
                "GetSession": [
                    _request(port, "GetSession", json.dumps({"accessToken": token}).encode())
                ],
                "CreateNewSession": [
                    _request(
                        port,
                        "CreateNewSession",
                        json.dumps(
                            {"userId": f"user-{i}", "accessTokenPayload": {"role": "admin"}}
                        ).encode(),
                    )
                    for i in range(1000)
                ],
            }
            process = psutil.Process(child.pid)
            result: dict[str, Any] = {"server": server_name}
            for rpc, requests in workloads.items():
                await _load(port, requests, args.connections, 1.0)  # warm-up
                cpu_before, started = _cpu(process), time.monotonic()
                own_before = time.process_time()
                ok, failed = await _load(port, requests, args.connections, args.duration)
                wall, cpu = time.monotonic() - started, _cpu(process) - cpu_before
                own = time.process_time() - own_before
                result[rpc] = {
                    "calls_per_s": round(ok / wall),
                    "server_cpu_us_per_call": round(cpu / max(ok, 1) * 1e6),
                    "server_cpu_cores": round(cpu / wall, 2),
                    "loadgen_cpu_cores": round(own / wall, 2),
                    "failed": failed,
                }
            return result
        finally:
            child.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(child.wait, 30)
            except subprocess.TimeoutExpired:
                child.kill()


def _median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: statistics.median(row[key] for row in rows) for key in rows[0]}


async def _main(args: argparse.Namespace) -> None:
    """ROUNDS rounds, the servers in turn in each (the machine's other load moves
    over minutes, so interleaving shares it out); the median of each figure."""
    names = [name for name in args.servers.split(",") if _available(name)]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for round_number in range(args.rounds):
        for server_name in names:
            result = await _measure(server_name, args)
            runs[server_name].append(result)
            print(json.dumps({"round": round_number + 1, **result}), flush=True)
    results = [
        {
            "server": name,
            **{
                rpc: _median_row([run[rpc] for run in runs[name]])
                for rpc in ("GetSession", "CreateNewSession")
            },
        }
        for name in names
    ]
    print(f"\nmedians of {args.rounds} round(s), {args.connections} connections, {args.duration} s")
    print(f"{'server':<10} {'RPC':<17} {'calls/s':>8} {'CPU us/call':>12} {'CPU cores':>10}")
    for result in results:
        for rpc in ("GetSession", "CreateNewSession"):
            row = result[rpc]
            print(
                f"{result['server']:<10} {rpc:<17} {row['calls_per_s']:>8.0f} "
                f"{row['server_cpu_us_per_call']:>12.0f} {row['server_cpu_cores']:>10.2f}"
            )
    if args.output:
        text = json.dumps({"medians": results, "runs": runs}, indent=2) + "\n"
        await asyncio.to_thread(Path(args.output).write_text, text)


def _available(server_name: str) -> bool:
    module = {"uvicorn": "uvicorn", "aiohttp": "aiohttp"}.get(server_name, server_name)
    if importlib.util.find_spec(module) is None:
        print(f"{server_name}: not installed, skipped (pip install {server_name})")
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output")
    parser.add_argument("--serve", nargs=2, metavar=("SERVER", "SCRATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        os.environ.setdefault("PYTHONUNBUFFERED", "1")
        asyncio.run(_serve(args.serve[0], f"{args.serve[1]}/sessions.db"))
    else:
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
