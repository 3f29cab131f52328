"""Log output: plain text for people, or one JSON object a line for collectors.

Nothing here filters secrets: the code never logs a token, hash or key in the
first place, and no library it uses logs statement parameters; a test captures a
whole create/refresh/theft run at DEBUG to hold it to that.

Log messages carry text from callers (user ids, handles, error text), so neither
format lets a message end a line or fake one (CWE-117):

- text: in each record line, a backslash becomes ``\\\\``; newline, carriage
  return and tab become ``\\n``, ``\\r``, ``\\t``; every other C0/C1 control
  character and DEL becomes ``\\xNN`` (so ESC, the start of a terminal escape
  sequence, is ``\\x1b``, and NEL is ``\\x85``); the line and paragraph separators
  become ``\\u2028`` and ``\\u2029``. Escaping the backslash keeps this reversible:
  a caller's literal ``\\n`` is logged as ``\\\\n``. A traceback or stack, the only
  multi-line text, follows its record with every line escaped the same way and
  prefixed with ``CONTINUATION`` ("  | "), so only record lines begin with a timestamp.
- json: ``json.dumps`` escapes the C0 controls; DEL, the C1 controls and U+2028/
  U+2029 are escaped too (``\\u0085``...), so one object is one line for any reader.
"""

from __future__ import annotations

import json
import logging
import time

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONTINUATION = "  | "

_C0, _DEL_C1, _SEPARATORS = range(0x20), range(0x7F, 0xA0), (0x2028, 0x2029)
_TEXT_ESCAPES = {code: f"\\x{code:02x}" for code in (*_C0, *_DEL_C1)}
_TEXT_ESCAPES.update(
    {ord(c): e for c, e in [("\\", "\\\\"), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")]}
)
_TEXT_ESCAPES.update({code: f"\\u{code:04x}" for code in _SEPARATORS})
# json.dumps has already escaped the C0 controls, backslash and quote.
_JSON_ESCAPES = {code: f"\\u{code:04x}" for code in (*_DEL_C1, *_SEPARATORS)}


def escape(text: str) -> str:
    """One line of text, with no character that ends a line or drives a terminal."""
    return text.translate(_TEXT_ESCAPES)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        lines = [escape(self.formatMessage(record))]
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        for block in (record.exc_text, record.stack_info and self.formatStack(record.stack_info)):
            if block:
                lines += [CONTINUATION + escape(line) for line in block.split("\n")]
        return "\n".join(lines)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False).translate(_JSON_ESCAPES)


def configure_logging(level: str, log_format: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
