"""Bounds on the HTTP side's connections (security issue: idle and half-open
connections were kept for minutes): the header-read timeout, the idle timeout,
the connection cap, and requests in progress that none of them may cut."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from session_authority_server.app import RunningServer
from session_authority_server.config import ConfigError, load_settings
from session_authority_server.http import MAX_HEAD_BYTES, Receive, Scope, Send, start_http
from session_authority_server.http_limits import ConnectionLimits

Start = Callable[..., Awaitable[RunningServer]]
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
MARGIN_S = 2.0  # beyond a timeout, before a test gives up waiting for the close


# --- helpers ---------------------------------------------------------------------------


async def connect(port: int) -> Connection:
    return await asyncio.open_connection("127.0.0.1", port)


async def closed_after(reader: asyncio.StreamReader, wait_s: float) -> float:
    """Seconds until the server closes the connection (read gives EOF); fails if it
    is still open after wait_s or sends anything."""
    started = time.monotonic()
    try:
        data = await asyncio.wait_for(reader.read(), wait_s)
    except ConnectionResetError:
        data = b""
    except TimeoutError:
        pytest.fail(f"the connection is still open after {wait_s} s")
    assert data == b"", f"expected the connection closed, got {data!r}"
    return time.monotonic() - started


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines if line)
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split()[1]), body


async def get(connection: Connection, request: bytes = HEALTHZ) -> tuple[int, bytes]:
    reader, writer = connection
    writer.write(request)
    await writer.drain()
    return await read_response(reader)


def close_all(*connections: Connection) -> None:
    for _, writer in connections:
        writer.close()


def rejected(server: RunningServer) -> float:
    value = server.metrics.registry.get_sample_value(
        "session_authority_http_connections_rejected_total"
    )
    return value or 0.0


# --- the header-read timeout -----------------------------------------------------------


async def test_a_connection_that_sends_nothing_is_closed(start: Start) -> None:
    server = await start(http_header_timeout=1, http_idle_timeout=5)
    assert server.http_port is not None
    reader, writer = await connect(server.http_port)
    elapsed = await closed_after(reader, 1 + MARGIN_S)
    assert elapsed > 0.5  # by the header timeout, not the idle one
    writer.close()


async def test_half_a_request_head_is_closed(start: Start) -> None:
    server = await start(http_header_timeout=1, http_idle_timeout=5)
    assert server.http_port is not None
    reader, writer = await connect(server.http_port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # no blank line
    await writer.drain()
    assert await closed_after(reader, 1 + MARGIN_S) > 0.5
    writer.close()


async def test_a_head_trickled_in_is_closed_at_the_deadline(start: Start) -> None:
    # Sending a byte now and then does not extend the header timeout (slowloris).
    server = await start(http_header_timeout=1, http_idle_timeout=5)
    assert server.http_port is not None
    reader, writer = await connect(server.http_port)
    started = time.monotonic()
    for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"x" * 200:
        if reader.at_eof():
            break
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except ConnectionError:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the connection stayed open for the whole trickle")
    assert 0.5 < time.monotonic() - started < 1 + MARGIN_S
    writer.close()


async def test_a_slow_but_steady_client_is_served(start: Start) -> None:
    server = await start(http_header_timeout=1, http_idle_timeout=5)
    assert server.http_port is not None
    reader, writer = await connect(server.http_port)
    for piece in (b"\r\nGET /heal", b"thz HTTP/1.1\r", b"\nHost: x\r\n", b"\r", b"\n"):
        await asyncio.sleep(0.15)
        writer.write(piece)
        await writer.drain()
    assert await read_response(reader) == (200, b"ok\n")
    writer.close()


async def test_a_head_too_large_is_refused(start: Start) -> None:
    # Within the header timeout, but larger than any real head: 431, then closed,
    # whether it is a connection's first head or a later one.
    server = await start(http_header_timeout=5, http_idle_timeout=5)
    assert server.http_port is not None
    huge = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 1)
    for earlier in (b"", HEALTHZ):
        reader, writer = await connect(server.http_port)
        if earlier:
            assert await get((reader, writer)) == (200, b"ok\n")
        writer.write(huge)
        await writer.drain()
        assert (await read_response(reader))[0] == 431
        assert await closed_after(reader, 1) < 1
        writer.close()


# --- the idle timeout ------------------------------------------------------------------


async def test_a_silent_keep_alive_connection_is_closed_after_the_idle_timeout(
    start: Start,
) -> None:
    server = await start(http_header_timeout=5, http_idle_timeout=1)
    assert server.http_port is not None
    connection = await connect(server.http_port)
    assert await get(connection) == (200, b"ok\n")
    assert await closed_after(connection[0], 1 + MARGIN_S) > 0.5
    close_all(connection)


async def test_a_later_head_left_unfinished_is_closed_by_the_idle_timeout(
    start: Start,
) -> None:
    # After a response, the next head must be complete within the idle timeout:
    # starting one does not stop the clock (http_limits.py relies on this).
    server = await start(http_header_timeout=5, http_idle_timeout=1)
    assert server.http_port is not None
    connection = await connect(server.http_port)
    assert await get(connection) == (200, b"ok\n")
    connection[1].write(b"GET /healthz HTTP/1.1\r\n")
    assert await closed_after(connection[0], 1 + MARGIN_S) > 0.5
    close_all(connection)


# --- requests in progress --------------------------------------------------------------


async def test_a_slow_response_is_not_cut(start: Start, monkeypatch: pytest.MonkeyPatch) -> None:
    server = await start(http_header_timeout=1, http_idle_timeout=1)
    assert server.http_port is not None

    async def slow_ping() -> None:
        await asyncio.sleep(2.5)

    monkeypatch.setattr(server.store, "ping", slow_ping)
    connection = await connect(server.http_port)
    request = b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"
    assert await get(connection, request) == (200, b"ready\n")
    close_all(connection)


@pytest.fixture
async def streaming_port() -> AsyncIterator[int]:
    """An HTTP side whose /stream sends a chunk, stays silent longer than both
    timeouts, then sends another."""

    async def stream(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["path"] == "/stream"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first\n", "more_body": True})
        await asyncio.sleep(2.5)
        await send({"type": "http.response.body", "body": b"second\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    limits = ConnectionLimits(header_timeout=1, idle_timeout=1, max_connections=10)
    listener = await start_http(stream, "127.0.0.1:0", limits=limits)
    yield listener.port
    await listener.stop()


async def test_a_streaming_response_is_not_cut(streaming_port: int) -> None:
    reader, writer = await connect(streaming_port)
    writer.write(b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    received = await asyncio.wait_for(reader.read(), 10)
    assert received.startswith(b"HTTP/1.1 200")
    assert b"first\n" in received
    assert b"second\n" in received
    writer.close()


# --- the connection cap ----------------------------------------------------------------


async def test_connections_over_the_cap_are_closed_at_once(
    start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start(http_max_connections=3, http_header_timeout=5, http_idle_timeout=1)
    assert server.http_port is not None
    first_three = [await connect(server.http_port) for _ in range(3)]
    for connection in first_three:
        assert await get(connection) == (200, b"ok\n")

    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            reader, writer = await connect(server.http_port)
            assert await closed_after(reader, 1) < 0.5
            writer.close()
    assert rejected(server) == 2
    limit_lines = [r for r in caplog.records if r.name.endswith(".http_limits")]
    assert len(limit_lines) == 1  # not one line per rejected connection

    for connection in first_three:  # untouched by the rejections
        assert await get(connection) == (200, b"ok\n")

    # Once they close (here by the idle timeout), new connections are served again.
    for reader, _ in first_three:
        await closed_after(reader, 1 + MARGIN_S)
    close_all(*first_three)
    await asyncio.sleep(0.1)
    next_three = [await connect(server.http_port) for _ in range(3)]
    for connection in next_three:
        assert await get(connection) == (200, b"ok\n")
    close_all(*next_three)
    assert rejected(server) == 2


async def test_a_connection_closed_by_its_client_frees_its_place(start: Start) -> None:
    server = await start(http_max_connections=1)
    assert server.http_port is not None
    for _ in range(3):
        connection = await connect(server.http_port)
        assert await get(connection) == (200, b"ok\n")
        connection[1].close()
        await connection[1].wait_closed()
        await asyncio.sleep(0.1)  # for the server to see the close
    assert rejected(server) == 0


# --- settings --------------------------------------------------------------------------


def test_the_limits_have_defaults_and_must_be_whole_and_positive(database_url: str) -> None:
    settings = load_settings(None, {}, database_url=database_url)
    assert settings.http_header_timeout == 10
    assert settings.http_idle_timeout == 75
    assert settings.http_max_connections == 512
    settings = load_settings(
        None,
        {"SESSION_AUTHORITY_HTTP_IDLE_TIMEOUT": "30"},
        database_url=database_url,
    )
    assert settings.http_idle_timeout == 30
    for name in ("http_header_timeout", "http_idle_timeout", "http_max_connections"):
        for bad in (0, -1, "ten", 1.5j):
            with pytest.raises(ConfigError, match=name):
                load_settings(None, {}, database_url=database_url, **{name: bad})
