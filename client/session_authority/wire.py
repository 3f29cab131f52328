"""Protobuf <-> SDK translations shared by the client and the authority: claim
validators and their failures, and errors (rich_status and its inverse,
error_from_rpc_error). Protobuf types stop here, in client.py and in service.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import grpc
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
    AuthorityUnreachableError,
    ClaimValidationError,
    InvalidArgumentError,
    SessionError,
    error_from_wire,
    status_code_for,
)
from .json_text import compact_json, strict_json_loads
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


def validator_to_wire(validator: ClaimValidator) -> pb.ClaimValidator:
    message = pb.ClaimValidator(
        id=validator.id,
        claim_key=validator.claim_key,
        kind=_KIND_TO_WIRE[validator.kind],
        value_json=compact_json(validator.value),
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
            cached = texts[id(value)] = (value, compact_json(value))
        return cached[1]

    def reason_text(reason: Any) -> str:
        if not isinstance(reason, dict):
            return compact_json(reason)
        return (
            "{"
            + ",".join(f"{compact_json(key)}:{text(value)}" for key, value in reason.items())
            + "}"
        )

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


def error_from_rpc_error(error: grpc.RpcError) -> SessionError:
    """The inverse of rich_status: the SessionError a failed call (a
    grpc.aio.AioRpcError) ended with, rebuilt from its ErrorInfo by the error
    table; AuthorityUnreachableError when no ErrorInfo of ours came back."""
    status = _status_of(error)
    info = _our_error_info(status)
    if status is not None and info is not None:
        return error_from_wire(info.reason, status.message, dict(info.metadata))
    return AuthorityUnreachableError(
        f"the session authority did not answer: {error.code().name}",
        status_code=error.code(),
    )


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo of the authority's domain that rich_status put in a failed
    call's google.rpc.Status, or None when there is none (for checks of the wire
    format itself; callers want error_from_rpc_error)."""
    return _our_error_info(_status_of(error))


def _status_of(error: grpc.RpcError) -> status_pb2.Status | None:
    try:
        return rpc_status.from_call(error)
    except ValueError:  # details that contradict the status code: not from us
        return None


def _our_error_info(status: status_pb2.Status | None) -> error_details_pb2.ErrorInfo | None:
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info) and info.domain == ERROR_DOMAIN:
            return info
    return None
