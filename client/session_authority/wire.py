"""Protobuf <-> SDK translations shared by the client and the authority: times,
claim validators and their failures, and errors (rich_status and its inverse,
error_from_rpc_error). JSON values are in structs.py. Protobuf types stop here,
in client.py and in service.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2, struct_pb2, timestamp_pb2
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
    InvalidClaimsError,
    SessionError,
    StorageUnavailableError,
    error_from_wire,
    status_code_for,
)
from .json_text import compact_json
from .structs import value_from_wire, value_to_wire
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
# Binary Values carry a number in 11 bytes where JSON may take 2: six times the
# JSON limit is refused before anything is converted.
_MAX_VALIDATOR_VALUES_WIRE_BYTES = 6 * MAX_VALIDATOR_VALUES_BYTES
# The InvalidClaims detail rides in a trailer, which gRPC peers cap at 8 KiB by
# default: past this the reasons keep only their message, then the list is cut.
MAX_INVALID_CLAIMS_DETAIL_BYTES = 4096
# The values that the failures of one answer quote, as JSON, together.
MAX_QUOTED_JSON_BYTES = 64 * 1024
# What UNAVAILABLE (storage down) asks callers to wait before a retry.
STORAGE_RETRY_DELAY_S = 1


def timestamp_to_wire(ms: int) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromMilliseconds(ms)
    return message


def timestamp_from_wire(message: timestamp_pb2.Timestamp) -> int:
    """Milliseconds since the epoch."""
    return int(message.ToMilliseconds())


def whole_seconds_from_wire(message: duration_pb2.Duration, field: str) -> int:
    if message.nanos or message.seconds < 0:
        raise InvalidArgumentError(f"{field} must be whole seconds, not negative", field=field)
    return int(message.seconds)


# Validators in one call: enough for any real policy, and it bounds the size of
# the failures (and of the INVALID_CLAIMS error) a call can produce.
MAX_VALIDATORS_PER_CALL = 64


def validator_to_wire(validator: ClaimValidator) -> pb.ClaimValidator:
    message = pb.ClaimValidator(
        id=validator.id,
        claim_key=validator.claim_key,
        kind=_KIND_TO_WIRE[validator.kind],
        value=value_to_wire(validator.value, "claim_validators.value"),
    )
    if validator.max_age_in_seconds is not None:
        message.max_age.seconds = validator.max_age_in_seconds
    return message


def validator_from_wire(message: pb.ClaimValidator) -> ClaimValidator:
    kind = _KIND_FROM_WIRE.get(message.kind)
    if kind is None:
        raise InvalidArgumentError("unknown claim validator kind", field="claim_validators.kind")
    if not message.HasField("value"):
        raise InvalidArgumentError("a validator needs a value", field="claim_validators.value")
    return ClaimValidator(
        message.claim_key,
        kind,
        # Quoted one level deep in a failure's reason.
        value_from_wire(message.value, "claim_validators.value", nested_in=1),
        (
            whole_seconds_from_wire(message.max_age, "claim_validators.max_age")
            if message.HasField("max_age")
            else None
        ),
        message.id,
    )


def validators_from_wire(messages: Sequence[pb.ClaimValidator]) -> list[ClaimValidator]:
    if len(messages) > MAX_VALIDATORS_PER_CALL:
        raise InvalidArgumentError(
            f"at most {MAX_VALIDATORS_PER_CALL} claim validators per call",
            field="claim_validators",
        )
    too_large = InvalidArgumentError(
        f"the values of one call's claim validators are at most "
        f"{MAX_VALIDATOR_VALUES_BYTES} bytes of JSON together",
        field="claim_validators",
    )
    if sum(message.value.ByteSize() for message in messages) > _MAX_VALIDATOR_VALUES_WIRE_BYTES:
        raise too_large
    validators = [validator_from_wire(message) for message in messages]
    if sum(len(compact_json(v.value)) for v in validators) > MAX_VALIDATOR_VALUES_BYTES:
        raise too_large
    return validators


def failures_to_wire(failures: Iterable[ClaimValidationError]) -> list[pb.ClaimValidationError]:
    """The failures of one call. Several may quote the same (possibly large) claim
    value: each value is converted once, then copied. Past MAX_QUOTED_JSON_BYTES of
    quoted values in one answer, a reason keeps only its message: that bounds the
    answer's size and the work of building it, whatever the validators quote."""
    converted: dict[int, tuple[Any, struct_pb2.Value, int]] = {}
    budget = MAX_QUOTED_JSON_BYTES

    def reason_value(reason: Any) -> struct_pb2.Value:
        nonlocal budget
        if not isinstance(reason, dict):
            return value_to_wire(reason, "reason")
        cost = 0
        for item in reason.values():
            if id(item) not in converted:
                converted[id(item)] = (item, struct_pb2.Value(), len(compact_json(item)))
            cost += converted[id(item)][2]
        if cost > budget:
            return value_to_wire(_message_only(reason), "reason")
        budget -= cost
        message = struct_pb2.Value()
        fields = message.struct_value.fields
        for key, item in reason.items():
            _, wire_value, _ = converted[id(item)]
            if not wire_value.WhichOneof("kind"):
                wire_value.CopyFrom(value_to_wire(item, "reason"))
            fields[key].CopyFrom(wire_value)
        return message

    return [pb.ClaimValidationError(id=f.id, reason=reason_value(f.reason)) for f in failures]


def failures_from_wire(messages: Iterable[pb.ClaimValidationError]) -> list[ClaimValidationError]:
    return [
        ClaimValidationError(
            m.id, value_from_wire(m.reason, "reason") if m.HasField("reason") else None
        )
        for m in messages
    ]


def _invalid_claims_detail(failures: list[ClaimValidationError]) -> pb.InvalidClaims:
    """Every failure, within MAX_INVALID_CLAIMS_DETAIL_BYTES."""
    detail = pb.InvalidClaims(invalid_claims=failures_to_wire(failures))
    if detail.ByteSize() <= MAX_INVALID_CLAIMS_DETAIL_BYTES:
        return detail
    brief = [ClaimValidationError(f.id[:128], _message_only(f.reason)) for f in failures]
    detail = pb.InvalidClaims(invalid_claims=failures_to_wire(brief))
    while detail.ByteSize() > MAX_INVALID_CLAIMS_DETAIL_BYTES:
        del detail.invalid_claims[-1]
    return detail


def _message_only(reason: Any) -> Any:
    if isinstance(reason, dict) and isinstance(reason.get("message"), str):
        return {"message": reason["message"][:256]}
    return None


def status_details(error: SessionError) -> list[Any]:
    """The google.rpc detail messages of an error: ErrorInfo (domain, reason,
    metadata) always, then the standard detail that fits, or ours for
    INVALID_CLAIMS."""
    details: list[Any] = [
        error_details_pb2.ErrorInfo(
            reason=error.reason, domain=ERROR_DOMAIN, metadata=error.wire_metadata()
        )
    ]
    if isinstance(error, InvalidArgumentError):
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=error.field, description=error.message
        )
        details.append(error_details_pb2.BadRequest(field_violations=[violation]))
    elif isinstance(error, StorageUnavailableError):
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.seconds = STORAGE_RETRY_DELAY_S
        details.append(retry)
    elif isinstance(error, InvalidClaimsError):
        details.append(_invalid_claims_detail(error.invalid_claims))
    return details


def rich_status(error: SessionError) -> Any:
    """The grpc.Status for an error: code per the error table, message, and the
    details of status_details. For abort_with_status."""
    packed = []
    for detail in status_details(error):
        any_detail = any_pb2.Any()
        any_detail.Pack(detail)
        packed.append(any_detail)
    status = status_pb2.Status(
        code=status_code_for(error).value[0], message=error.message, details=packed
    )
    return rpc_status.to_status(status)


def error_from_rpc_error(error: grpc.RpcError) -> SessionError:
    """The inverse of rich_status: the SessionError a failed call (a
    grpc.aio.AioRpcError) ended with, rebuilt from its ErrorInfo by the error
    table; AuthorityUnreachableError when no ErrorInfo of ours came back."""
    status = _status_of(error)
    info = _our_error_info(status)
    if status is not None and info is not None:
        rebuilt = error_from_wire(info.reason, status.message, dict(info.metadata))
        if isinstance(rebuilt, InvalidClaimsError):
            rebuilt.invalid_claims = _invalid_claims_of(status)
        return rebuilt
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


def _invalid_claims_of(status: status_pb2.Status) -> list[ClaimValidationError]:
    for detail in status.details:
        invalid = pb.InvalidClaims()
        if detail.Unpack(invalid):
            try:
                return failures_from_wire(invalid.invalid_claims)
            except InvalidArgumentError:  # a reason we cannot read: keep the ids
                return [ClaimValidationError(f.id, None) for f in invalid.invalid_claims]
    return []
