"""Protobuf <-> SDK translations needed by both edges (client.py and service.py).

Nothing else imports this module: protobuf types stop at those two files.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from .claims import (
    EXCLUDES,
    EXCLUDES_ALL,
    HAS_VALUE,
    INCLUDES,
    INCLUDES_ALL,
    INCLUDES_ANY,
    ClaimValidator,
)
from .errors import (
    ERROR_DOMAIN,
    ClaimValidationError,
    InvalidArgumentError,
    SessionError,
    status_code_for,
)
from .v1 import session_service_pb2 as pb

_KIND_TO_WIRE = {
    HAS_VALUE: pb.CLAIM_VALIDATOR_KIND_HAS_VALUE,
    INCLUDES: pb.CLAIM_VALIDATOR_KIND_INCLUDES,
    EXCLUDES: pb.CLAIM_VALIDATOR_KIND_EXCLUDES,
    INCLUDES_ALL: pb.CLAIM_VALIDATOR_KIND_INCLUDES_ALL,
    INCLUDES_ANY: pb.CLAIM_VALIDATOR_KIND_INCLUDES_ANY,
    EXCLUDES_ALL: pb.CLAIM_VALIDATOR_KIND_EXCLUDES_ALL,
}
_KIND_FROM_WIRE = {wire: kind for kind, wire in _KIND_TO_WIRE.items()}

# The expected values of all validators of one call together (as JSON text). With
# the 16 KiB payload limit this bounds the work of one call's claim checks.
MAX_VALIDATOR_VALUES_BYTES = 16 * 1024
# Validators in one call: enough for any real policy, and it bounds the size of
# the failures (and of the INVALID_CLAIMS error) a call can produce.
MAX_VALIDATORS_PER_CALL = 64


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    # 1e999 parses to inf, which has no JSON spelling: refuse it like Infinity.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


# Deeper JSON is refused: real payloads are a few levels deep, and every walk over
# a value (claim checks, serialisation) stays far from Python's recursion limit.
MAX_JSON_DEPTH = 32
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


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def validator_to_wire(validator: ClaimValidator) -> pb.ClaimValidator:
    message = pb.ClaimValidator(
        id=validator.id,
        claim_key=validator.claim_key,
        kind=_KIND_TO_WIRE[validator.kind],
        value_json=dumps(validator.value),
    )
    if validator.max_age_in_seconds is not None:
        message.max_age_seconds = validator.max_age_in_seconds
    return message


def validator_from_wire(message: pb.ClaimValidator) -> ClaimValidator:
    kind = _KIND_FROM_WIRE.get(message.kind)
    if kind is None:
        raise InvalidArgumentError("unknown claim validator kind", field="kind")
    try:
        value = strict_json_loads(message.value_json)
    except (ValueError, RecursionError):
        raise InvalidArgumentError(
            "validator value is not valid JSON", field="value_json"
        ) from None
    return ClaimValidator(
        message.claim_key,
        kind,
        value,
        message.max_age_seconds if message.HasField("max_age_seconds") else None,
        message.id,
    )


def validators_from_wire(messages: Sequence[pb.ClaimValidator]) -> list[ClaimValidator]:
    if len(messages) > MAX_VALIDATORS_PER_CALL:
        raise InvalidArgumentError(
            f"at most {MAX_VALIDATORS_PER_CALL} claim validators per call",
            field="claim_validators",
        )
    if sum(len(message.value_json) for message in messages) > MAX_VALIDATOR_VALUES_BYTES:
        raise InvalidArgumentError(
            f"the values of one call's claim validators are at most "
            f"{MAX_VALIDATOR_VALUES_BYTES} bytes together",
            field="claim_validators",
        )
    return [validator_from_wire(message) for message in messages]


def failures_to_wire(failures: Iterable[ClaimValidationError]) -> list[pb.ClaimValidationError]:
    # Several failures of one call often quote the same (possibly large) claim value:
    # each value is serialised once.
    texts: dict[int, tuple[Any, str]] = {}

    def text(value: Any) -> str:
        cached = texts.get(id(value))
        if cached is None:
            cached = texts[id(value)] = (value, dumps(value))
        return cached[1]

    def reason_text(reason: Any) -> str:
        if not isinstance(reason, dict):
            return dumps(reason)
        return "{" + ",".join(f"{dumps(key)}:{text(value)}" for key, value in reason.items()) + "}"

    return [pb.ClaimValidationError(id=f.id, reason_json=reason_text(f.reason)) for f in failures]


def failures_from_wire(messages: Iterable[pb.ClaimValidationError]) -> list[ClaimValidationError]:
    return [ClaimValidationError(m.id, json.loads(m.reason_json)) for m in messages]


def rich_status(error: SessionError) -> Any:
    """The grpc.Status for an error: code per the error table, message, and a
    google.rpc.ErrorInfo detail (domain, reason, metadata). For abort_with_status."""
    detail = any_pb2.Any()
    detail.Pack(
        error_details_pb2.ErrorInfo(
            reason=error.reason, domain=ERROR_DOMAIN, metadata=error.wire_metadata()
        )
    )
    status = status_pb2.Status(
        code=status_code_for(error).value[0], message=error.message, details=[detail]
    )
    return rpc_status.to_status(status)
