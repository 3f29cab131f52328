"""JSON text as the API carries it (the ``*_json`` fields): the one compact
serialisation, and the strict parser both sides apply to what they receive."""

from __future__ import annotations

import json
import math
import re
from typing import Any

# Deeper JSON is refused: real payloads are a few levels deep, and every walk over
# a value (claim checks, serialisation) stays far from Python's recursion limit.
MAX_JSON_DEPTH = 32


def compact_json(value: Any) -> str:
    """The JSON text of a value: no spaces, non-ASCII characters kept as they are."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def strict_json_loads(text: str) -> Any:
    """json.loads accepting only what JSON can spell back as UTF-8: no NaN, no
    Infinity, no lone surrogate escapes ("\\ud800"), and at most MAX_JSON_DEPTH
    levels of nesting."""
    value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    if _nested_deeper_than(text, MAX_JSON_DEPTH):
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    if _SURROGATE_ESCAPE.search(text):  # only an escape can smuggle in a lone surrogate
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a string holds a lone surrogate") from None
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    # 1e999 parses to inf, which has no JSON spelling: refuse it like Infinity.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


_BRACKETS_AND_STRINGS = b'[]{}"\\'
_OTHER_BYTES = bytes(c for c in range(256) if c not in _BRACKETS_AND_STRINGS)
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_AS_PARENTHESES = bytes.maketrans(b"[{]}", b"(())")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _nested_deeper_than(text: str, limit: int) -> bool:
    """Whether valid JSON text nests deeper than limit, found with a few C-speed
    passes over the text (a walk over the parsed value costs far more)."""
    if text.count("[") + text.count("{") <= limit:
        return False
    skeleton = text.encode("utf-8", "surrogatepass").translate(None, _OTHER_BYTES)
    brackets = _JSON_STRING.sub(b"", skeleton).translate(_AS_PARENTHESES)
    for _ in range(limit):  # each pass removes the innermost level everywhere
        brackets = brackets.replace(b"()", b"")
        if not brackets:
            return False
    return True
