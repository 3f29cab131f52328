"""The load generator: grpc.aio clients in processes of their own (never the
server's), keeping many calls in flight, sending pre-serialised requests and
keeping the response bytes unparsed, so that its CPU per call is the same for
the product and the ceiling.

Connect jobs (Job.protocol CONNECT_PROTO or CONNECT_JSON) go to the server's
HTTP listener instead: unary Connect POSTs over HTTP/1.1 keep-alive
connections, one per call in flight (HTTP/1.1 has one call per connection at a
time), the request bodies pre-serialised (protobuf bytes, or their JSON) and
the responses kept as bytes. The client is a few lines over asyncio streams
(the status line and the framing parsed, nothing else), so that its own CPU per
call stays near the gRPC client's and the comparison is of the servers.

A run is one Job split over the processes. Each process connects and warms up,
then all start together on a signal; the server's CPU time is read just before
the signal and just after the last process reports, so it covers exactly the
calls counted (every call started in the window is awaited before reporting).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import multiprocessing
import statistics
import time
import traceback
from array import array
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any, Self

from . import rpcs
from .servers import ServerProcess

CYCLE = "cycle"  # requests reused round-robin
ONCE = "once"  # each request sent once (revocations); the run ends when all are sent
CHAIN = "chain"  # each in-flight slot refreshes its own sessions, with the newest token

GRPC = "grpc"
CONNECT_PROTO = "connect+proto"  # Connect unary, application/proto
CONNECT_JSON = "connect+json"  # Connect unary, application/json
CONTENT_TYPES = {CONNECT_PROTO: "application/proto", CONNECT_JSON: "application/json"}

CALL_TIMEOUT_S = 30.0
STREAMS_PER_CHANNEL = 64  # in-flight calls per connection; more get another channel
_REPORT_SLACK_S = 120.0


@dataclass
class Job:
    method: str  # SessionService method name
    requests: list[bytes]
    concurrency: int
    duration_s: float
    warmup_s: float = 0.5
    mode: str = CYCLE
    collect: int = 0  # keep up to this many response bodies
    max_calls: int | None = None  # stop after this many calls (within duration_s)
    connections: int | None = None  # in all; default one per STREAMS_PER_CHANNEL in flight
    protocol: str = GRPC  # or CONNECT_PROTO, CONNECT_JSON (one connection per call in flight)


@dataclass
class PartResult:
    calls: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies: array[float] = field(default_factory=lambda: array("d"))
    cpu_s: float = 0.0
    wall_s: float = 0.0
    responses: list[bytes] = field(default_factory=list)
    sample: tuple[bytes, bytes] | None = None


@dataclass
class Measurement:
    """One job's outcome, the server's CPU over it included."""

    concurrency: int
    calls: int
    errors: dict[str, int]
    wall_s: float
    latencies: list[float]
    server_cpu_s: float
    server_main_cpu_s: float
    loadgen_cpu_s: float
    responses: list[bytes]
    sample: tuple[bytes, bytes] | None

    def summary(self) -> dict[str, Any]:
        calls = max(self.calls, 1)
        wall = max(self.wall_s, 1e-9)
        ordered = sorted(self.latencies)
        request, response = self.sample or (b"", b"")
        return {
            "concurrency": self.concurrency,
            "calls": self.calls,
            "errors": self.errors,
            "wall_s": round(self.wall_s, 3),
            "rps": round(self.calls / wall, 1),
            "p50_ms": round(_percentile(ordered, 0.50) * 1000, 3),
            "p99_ms": round(_percentile(ordered, 0.99) * 1000, 3),
            "server_cpu_s": round(self.server_cpu_s, 3),
            "server_cpu_us_per_call": round(self.server_cpu_s / calls * 1e6, 1),
            "server_main_thread_cpu_us_per_call": round(self.server_main_cpu_s / calls * 1e6, 1),
            "server_cores": round(self.server_cpu_s / wall, 2),
            "loadgen_cpu_s": round(self.loadgen_cpu_s, 3),
            "loadgen_cpu_us_per_call": round(self.loadgen_cpu_s / calls * 1e6, 1),
            "loadgen_cores": round(self.loadgen_cpu_s / wall, 2),
            "request_bytes": len(request),
            "response_bytes": len(response),
        }


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return math.nan
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=1000, method="inclusive")[round(q * 1000) - 1]


# --- the worker processes ------------------------------------------------------------


class _Feed:
    """Hands each in-flight slot its next request."""

    def __init__(self, job: Job, slots: int) -> None:
        self.job = job
        self.slots = slots
        self.counted = 0  # calls started in the measured window (for max_calls)
        self.limit = len(job.requests)  # ONCE: how far requests may be used up
        self._next = 0
        # CHAIN: slot k owns requests k, k + slots, ...; a success replaces the
        # request it used with the one for the token just issued.
        self._own = [job.requests[k::slots] for k in range(slots)]
        self._turn = [0] * slots

    def take(self, slot: int) -> tuple[bytes, int] | None:
        job = self.job
        if job.max_calls is not None and self.counted >= job.max_calls:
            return None
        if job.mode == CHAIN:
            own = self._own[slot]
            index = self._turn[slot] % len(own)
            self._turn[slot] += 1
            request = own[index]
        elif job.mode == ONCE:
            if self._next >= self.limit:
                return None
            index = self._next
            request = job.requests[index]
            self._next += 1
        else:
            index = self._next % len(job.requests)
            request = job.requests[index]
            self._next += 1
        self.counted += 1
        return request, index

    def answered(self, slot: int, index: int, response: bytes) -> None:
        if self.job.mode == CHAIN:
            self._own[slot][index] = rpcs.next_refresh_request(response)


class CallFailed(Exception):
    """A Connect call that did not succeed; code as the error counts name it."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class _ConnectCaller:
    """One keep-alive HTTP/1.1 connection making unary Connect calls, one at a time."""

    def __init__(self, target: str, method: str, protocol: str) -> None:
        self.host, _, port = target.rpartition(":")
        self.port = int(port)
        self.head = (
            f"POST {rpcs.path(method)} HTTP/1.1\r\nHost: {target}\r\n"
            f"Content-Type: {CONTENT_TYPES[protocol]}\r\nConnect-Protocol-Version: 1\r\n"
            f"Connect-Timeout-Ms: {int(CALL_TIMEOUT_S * 1000)}\r\nContent-Length: "
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.close()
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def __call__(self, request: bytes, timeout: float) -> bytes:  # noqa: ASYNC109 (as grpc.aio calls)
        try:
            async with asyncio.timeout(timeout):
                if self.writer is None:
                    await self.connect()
                assert self.reader is not None and self.writer is not None
                self.writer.write(self.head + b"%d\r\n\r\n" % len(request) + request)
                status, close, body = await _read_response(self.reader)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as error:
            self.close()
            raise CallFailed(f"connection: {type(error).__name__}") from None
        except TimeoutError:
            self.close()
            raise CallFailed("DEADLINE_EXCEEDED") from None
        if close:
            self.close()
        if status != 200:
            raise CallFailed(_connect_code(status, body))
        return body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """(status, whether the server closes the connection, body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(None, 2)[1])
    length = None
    chunked = close = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            close = b"close" in value.lower()
    if not chunked:
        return status, close, await reader.readexactly(length or 0)
    chunks = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers from a unary Connect answer
            return status, close, b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _connect_code(status: int, body: bytes) -> str:
    """A Connect error's code, upper-cased as gRPC names codes (or the HTTP status)."""
    import json

    try:
        return str(json.loads(body)["code"]).upper()
    except (ValueError, KeyError, TypeError):
        return f"HTTP {status}"


async def _drive(
    job: Job, calls: list[Any], feed: _Feed, seconds: float, result: PartResult | None
) -> None:
    import grpc

    deadline = time.perf_counter() + seconds

    async def slot(k: int) -> None:
        call = calls[k % len(calls)]
        while time.perf_counter() < deadline:
            taken = feed.take(k)
            if taken is None:
                return
            request, index = taken
            started = time.perf_counter()
            try:
                response = await call(request, timeout=CALL_TIMEOUT_S)
            except grpc.aio.AioRpcError as error:
                if result is not None:
                    result.errors[error.code().name] += 1
                continue
            except CallFailed as error:
                if result is not None:
                    result.errors[error.code] += 1
                continue
            feed.answered(k, index, response)
            if result is None:
                continue
            result.latencies.append(time.perf_counter() - started)
            result.calls += 1
            if len(result.responses) < job.collect:
                result.responses.append(response)
            if result.sample is None:
                result.sample = (request, response)

    await asyncio.gather(*(slot(k) for k in range(feed.slots)))


async def _run_part(conn: Connection, target: str, job: Job) -> PartResult | None:
    if job.protocol != GRPC:
        return await _run_connect_part(conn, target, job)
    import grpc

    slots = job.concurrency if job.mode != CHAIN else min(job.concurrency, len(job.requests))
    connections = job.connections or math.ceil(slots / STREAMS_PER_CHANNEL)
    channels = [
        # A connection of its own each (grpc shares subchannels between channels
        # with equal arguments unless told not to).
        grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(max(1, min(connections, slots)))
    ]
    calls = [channel.unary_unary(rpcs.path(job.method)) for channel in channels]
    try:
        for channel in channels:
            await asyncio.wait_for(channel.channel_ready(), CALL_TIMEOUT_S)
        return await _measure_part(conn, job, calls, slots)
    finally:
        for channel in channels:
            await channel.close()


async def _run_connect_part(conn: Connection, target: str, job: Job) -> PartResult | None:
    slots = job.concurrency if job.mode != CHAIN else min(job.concurrency, len(job.requests))
    callers = [_ConnectCaller(target, job.method, job.protocol) for _ in range(max(slots, 1))]
    try:
        await asyncio.wait_for(
            asyncio.gather(*(caller.connect() for caller in callers)), CALL_TIMEOUT_S
        )
        return await _measure_part(conn, job, callers, slots)
    finally:
        for caller in callers:
            caller.close()


async def _measure_part(
    conn: Connection, job: Job, calls: list[Any], slots: int
) -> PartResult | None:
    """Warm up, report ready, wait for the signal, then the measured window."""
    feed = _Feed(job, max(slots, 1))
    if job.warmup_s > 0:
        # ONCE: warming up may use a tenth of the requests, no more.
        feed.limit = len(job.requests) // 10
        await _drive(job, calls, feed, job.warmup_s, None)
        feed.limit = len(job.requests)
    feed.counted = 0
    conn.send("ready")
    if conn.recv() != "go":  # nothing is in flight while this blocks
        return None  # the run was called off
    result = PartResult()
    cpu, wall = time.process_time(), time.perf_counter()
    await _drive(job, calls, feed, job.duration_s, result)
    result.wall_s = time.perf_counter() - wall
    result.cpu_s = time.process_time() - cpu
    return result


def _worker_main(conn: Connection) -> None:
    while True:
        message = conn.recv()
        if message is None:
            return
        target, job = message
        try:
            result = asyncio.run(_run_part(conn, target, job))
        except Exception:
            conn.send(("error", traceback.format_exc()))
            continue
        if result is None:
            return
        conn.send(("done", result))


# --- the coordinator --------------------------------------------------------------------


def split(job: Job, processes: int) -> list[Job]:
    """One part per process that gets in-flight calls; ONCE and CHAIN requests
    are dealt out, so that no two processes send the same one."""
    count = max(1, min(processes, job.concurrency))

    def share(total: int, i: int) -> int:
        return total // count + (1 if i < total % count else 0)

    parts = []
    for i in range(count):
        requests = job.requests if job.mode == CYCLE else job.requests[i::count]
        parts.append(
            dataclasses.replace(
                job,
                concurrency=share(job.concurrency, i),
                requests=requests,
                collect=share(job.collect, i),
                max_calls=None if job.max_calls is None else share(job.max_calls, i),
                connections=None if job.connections is None else share(job.connections, i),
            )
        )
    return [part for part in parts if part.requests and part.concurrency]


class LoadGenerator:
    """A pool of client processes (spawned, so that no gRPC state is inherited)."""

    def __init__(self, processes: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._workers: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
        for _ in range(processes):
            parent, child = context.Pipe()
            process = context.Process(target=_worker_main, args=(child,), daemon=True)
            process.start()
            child.close()
            self._workers.append((process, parent))

    def close(self) -> None:
        for _, conn in self._workers:
            with contextlib.suppress(OSError):
                conn.send(None)
        for process, _ in self._workers:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _expect(
        self, worker: tuple[Any, Connection], what: str, timeout_s: float, server: ServerProcess
    ) -> Any:
        process, conn = worker
        deadline = time.monotonic() + timeout_s
        while not conn.poll(1.0):
            server.check_alive()
            if not process.is_alive():
                raise RuntimeError("a load generator process died")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {what!r} from a load generator in {timeout_s:.0f} s")
        message = conn.recv()
        if isinstance(message, tuple) and message[0] == "error":
            raise RuntimeError(f"load generator failed:\n{message[1]}")
        if what == "ready" and message != "ready":
            raise RuntimeError(f"load generator: expected ready, got {message!r}")
        return message[1] if what == "done" else message

    def run(self, server: ServerProcess, job: Job) -> Measurement:
        parts = split(job, len(self._workers))
        if not parts:
            raise ValueError(f"{job.method}: nothing to send")
        active = self._workers[: len(parts)]
        target = server.target if job.protocol == GRPC else server.http_target
        for (_, conn), part in zip(active, parts, strict=True):
            conn.send((target, part))
        for worker in active:
            self._expect(worker, "ready", job.warmup_s + _REPORT_SLACK_S, server)
        before = server.cpu()
        started = time.perf_counter()
        for _, conn in active:
            conn.send("go")
        results: list[PartResult] = [
            self._expect(worker, "done", job.duration_s + _REPORT_SLACK_S, server)
            for worker in active
        ]
        used = server.cpu() - before
        elapsed = time.perf_counter() - started
        errors: Counter[str] = Counter()
        latencies: list[float] = []
        responses: list[bytes] = []
        for part in results:
            errors.update(part.errors)
            latencies.extend(part.latencies)
            responses.extend(part.responses)
        return Measurement(
            concurrency=job.concurrency,
            calls=sum(part.calls for part in results),
            errors=dict(errors),
            wall_s=max((part.wall_s for part in results), default=elapsed),
            latencies=latencies,
            server_cpu_s=used.total_s,
            server_main_cpu_s=used.main_threads_s,
            loadgen_cpu_s=sum(part.cpu_s for part in results),
            responses=responses,
            sample=next((part.sample for part in results if part.sample), None),
        )
