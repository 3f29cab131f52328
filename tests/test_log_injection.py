"""Log injection (CWE-117): text a caller sent (user ids, handles, error text...)
can never start, end or fake a log line, in either log format."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from session_authority import TokenTheftDetectedError
from session_authority_server.logs import configure_logging

from .processes import start_server_process

FORGED = "2026-01-01 00:00:00,000 CRITICAL forged"
HOSTILE = [
    f"\n{FORGED}",
    f"\r{FORGED}",
    f"\r\n{FORGED}",
    "\x1b[2J\x1b[1;31mred",
    f"\u2028{FORGED}",
    f"\u2029{FORGED}",
    f"\x85{FORGED}",
    f"\x0b\x0c\x1c\x1d\x1e{FORGED}",
    "\x00\x07\x08\t\x7f\x9b",
    "a lone \\ backslash, a literal \\n and a trailing \\",
    "plain text, ünïcödé and emoji 🙂",
]
# A record line starts with its timestamp; a traceback line with this marker.
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")
CONTINUATION = "  | "
# Characters that some reader or terminal takes as the end of a line, or obeys.
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _unescape(text: str) -> str:
    """The inverse of the text format's escaping."""
    named = {"\\": "\\", "n": "\n", "r": "\r", "t": "\t"}
    return re.sub(
        r"\\(x[0-9a-f]{2}|u[0-9a-f]{4}|.)",
        lambda m: named.get(m[1]) or chr(int(m[1][1:], 16)),
        text,
    )


@pytest.fixture
def formatter(request: pytest.FixtureRequest) -> Iterator[logging.Formatter]:
    """The formatter that configure_logging(format) installs (the root logger is
    restored afterwards)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("DEBUG", request.param)
        installed = root.handlers[0].formatter
        assert installed is not None
        yield installed
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def _exception(message: str) -> BaseException:
    try:
        raise ValueError(message)
    except ValueError as error:
        error.add_note(f"note\n{FORGED}")
        return error


def _records() -> list[logging.LogRecord]:
    def record(
        msg: str, *args: object, exc_info: Any = None, sinfo: str | None = None
    ) -> logging.LogRecord:
        name, level = "session_authority_server.sessions", logging.WARNING
        return logging.LogRecord(name, level, __file__, 1, msg, args, exc_info, sinfo=sinfo)

    records = [
        record("refresh token reuse: session %s of user %s revoked", "h", v) for v in HOSTILE
    ]
    records.append(record(f"not %-formatted: {HOSTILE[0]}"))
    error = _exception(f"bad input\n{FORGED}\r\x1b[2J\u2028")
    records.append(
        record(
            "%s failed unexpectedly",
            f"Create\n{FORGED}",
            exc_info=(ValueError, error, error.__traceback__),
        )
    )
    records.append(record("with a stack", sinfo=f"Stack (most recent call last):\n{FORGED}"))
    return records


def _emit(formatter: logging.Formatter, records: list[logging.LogRecord]) -> str:
    """What a StreamHandler writes: each formatted record and a newline."""
    return "".join(formatter.format(record) + "\n" for record in records)


@pytest.mark.parametrize("formatter", ["text"], indirect=True)
def test_text_format_writes_exactly_one_line_per_record(formatter: logging.Formatter) -> None:
    records = _records()
    output = _emit(formatter, records)

    lines = output.split("\n")[:-1]
    assert output.splitlines() == lines  # no other line boundary: \r, \x85, \u2028...
    assert not RAW_CONTROL.search(output)
    record_lines = [line for line in lines if TIMESTAMP.match(line)]
    assert len(record_lines) == len(records)
    for line in lines:
        assert TIMESTAMP.match(line) or line.startswith(CONTINUATION), line
    # Each message can be read back exactly: escaping loses nothing.
    for record, line in zip(records, record_lines, strict=True):
        assert _unescape(line.split(": ", 1)[1]) == record.getMessage()

    assert "of user \\n2026-01-01 00:00:00,000 CRITICAL forged revoked" in output
    assert "\\x1b[2J\\x1b[1;31mred" in output
    assert "\\u2028" in output and "\\u2029" in output and "\\x85" in output
    assert "a lone \\\\ backslash, a literal \\\\n and a trailing \\\\ revoked" in output


@pytest.mark.parametrize("formatter", ["text"], indirect=True)
def test_text_format_keeps_tracebacks_readable_behind_a_marker(
    formatter: logging.Formatter,
) -> None:
    error = _exception(f"bad input\n{FORGED}")
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), None)
    record.exc_info = (ValueError, error, error.__traceback__)
    record.stack_info = "Stack (most recent call last):\n  File here"

    lines = formatter.format(record).split("\n")

    assert TIMESTAMP.match(lines[0]) and lines[0].endswith("x: failed")
    assert lines[1:] == [
        f"{CONTINUATION}Traceback (most recent call last):",
        f'{CONTINUATION}  File "{__file__}", line {_exception.__code__.co_firstlineno + 2},'
        " in _exception",
        f"{CONTINUATION}    raise ValueError(message)",
        f"{CONTINUATION}ValueError: bad input",
        f"{CONTINUATION}{FORGED}",
        f"{CONTINUATION}note",
        f"{CONTINUATION}{FORGED}",
        f"{CONTINUATION}Stack (most recent call last):",
        f"{CONTINUATION}  File here",
    ]


@pytest.mark.parametrize("formatter", ["json"], indirect=True)
def test_json_format_writes_exactly_one_object_per_record(formatter: logging.Formatter) -> None:
    records = _records()
    output = _emit(formatter, records)

    lines = output.split("\n")[:-1]
    assert output.splitlines() == lines
    assert not RAW_CONTROL.search(output)
    entries = [json.loads(line) for line in lines]
    assert len(entries) == len(records)
    for record, entry in zip(records, entries, strict=True):
        assert entry["message"] == record.getMessage()  # escaped, not altered
    assert "ValueError: bad input\n" + FORGED in entries[-2]["exception"]
    assert f"note\n{FORGED}" in entries[-2]["exception"]
    assert entries[-1]["stack"] == f"Stack (most recent call last):\n{FORGED}"


HOSTILE_USER = "u\n2030-01-01 00:00:00,000 CRITICAL root: forged"


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_a_user_id_cannot_forge_a_line_in_the_server_log(
    tmp_path: Path, log_format: str
) -> None:
    server = await start_server_process(
        {"database_url": f"sqlite:///{tmp_path}/sessions.db", "log_format": log_format}
    )
    try:
        async with server.client() as client:
            t0 = await client.create_new_session(HOSTILE_USER)
            assert t0.refresh_token is not None
            t1 = await client.refresh_session(t0.refresh_token)
            assert t1.refresh_token is not None
            await client.refresh_session(t1.refresh_token)
            with pytest.raises(TokenTheftDetectedError) as raised:
                await client.refresh_session(t0.refresh_token)  # an ancestor: theft
            assert raised.value.user_id == HOSTILE_USER
    finally:
        assert await server.stop() == 0
    log = server.log_text()

    lines = log.split("\n")
    assert not any(line.startswith("2030-") for line in lines), log
    assert log.splitlines() == lines[:-1]
    if log_format == "json":
        messages = [json.loads(line)["message"] for line in lines[:-1]]
    else:
        assert all(TIMESTAMP.match(line) for line in lines[:-1]), log
        messages = lines
    [theft] = [m for m in messages if "refresh token reuse" in m]
    if log_format == "json":
        assert theft.endswith(f"of user {HOSTILE_USER} revoked"), theft
    else:
        assert " WARNING session_authority_server.sessions: refresh token reuse: " in theft
        escaped = "u\\n2030-01-01 00:00:00,000 CRITICAL root: forged"
        assert theft.endswith(f"of user {escaped} revoked"), theft


def test_the_hostile_strings_really_are_hostile() -> None:
    """Without escaping, each of these would end a line for some reader."""
    for text in HOSTILE[:3] + HOSTILE[4:8]:
        assert len(text.splitlines()) > 1, repr(text)
