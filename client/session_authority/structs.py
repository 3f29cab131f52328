"""JSON values <-> google.protobuf.Struct / Value, by the API's rules (both edges).

Numbers travel as IEEE doubles, as in JSON and JavaScript. Out of the wire an
integral number within +-2^53 comes back as an int (so Python callers get the
ints they sent); onto the wire an int beyond +-2^53 is refused, since a double
would round it. NaN and infinities, lone surrogates, values without a kind and
nesting deeper than MAX_JSON_DEPTH are refused too. Every refusal is an
InvalidArgumentError naming the request field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from google.protobuf import struct_pb2

from .errors import InvalidArgumentError
from .json_text import MAX_JSON_DEPTH

MAX_SAFE_INTEGER = 2**53


def struct_to_wire(value: Mapping[str, Any], field: str) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    _fill_struct(message, value, field, 1)
    return message


def value_to_wire(value: Any, field: str) -> struct_pb2.Value:
    message = struct_pb2.Value()
    _fill_value(message, value, field, 0)
    return message


def struct_from_wire(message: struct_pb2.Struct, field: str) -> dict[str, Any]:
    return _from_struct(message, field, 1)


def value_from_wire(message: struct_pb2.Value, field: str, *, nested_in: int = 0) -> Any:
    """nested_in: the levels the value will sit under where it is kept (a claim
    value is stored two deep, a validator's value is quoted one deep in a reason),
    which count against MAX_JSON_DEPTH."""
    return _from_value(message, field, nested_in)


def _refuse(field: str, why: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"{field} {why}", field=field)


def _fill_struct(
    message: struct_pb2.Struct, value: Mapping[str, Any], field: str, depth: int
) -> None:
    if depth > MAX_JSON_DEPTH:
        raise _refuse(field, f"is nested deeper than {MAX_JSON_DEPTH} levels")
    fields = message.fields
    for key, item in value.items():
        if not isinstance(key, str):
            raise _refuse(field, "has an object key that is not a string")
        try:
            _fill_value(fields[key], item, field, depth)
        except ValueError as error:  # protobuf refuses a key that is not UTF-8
            if isinstance(error, InvalidArgumentError):
                raise
            raise _refuse(field, "holds a string that is not valid Unicode") from None


def _fill_value(message: struct_pb2.Value, value: Any, field: str, depth: int) -> None:
    if value is None:
        message.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, bool):
        message.bool_value = value
    elif isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise _refuse(field, "holds an integer beyond +-2^53, which a JSON number rounds")
        message.number_value = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _refuse(field, "holds a number that JSON cannot spell (NaN or infinite)")
        message.number_value = value
    elif isinstance(value, str):
        try:
            message.string_value = value
        except ValueError:
            raise _refuse(field, "holds a string that is not valid Unicode") from None
    elif isinstance(value, Mapping):
        message.struct_value.SetInParent()  # {} too is an object, not a value without kind
        _fill_struct(message.struct_value, value, field, depth + 1)
    elif isinstance(value, list | tuple):
        if depth + 1 > MAX_JSON_DEPTH:
            raise _refuse(field, f"is nested deeper than {MAX_JSON_DEPTH} levels")
        message.list_value.SetInParent()  # [] too is a list, not a value without kind
        values = message.list_value.values
        for item in value:
            _fill_value(values.add(), item, field, depth + 1)
    else:
        raise _refuse(field, f"holds a {type(value).__name__}, which is not a JSON value")


def _from_struct(message: struct_pb2.Struct, field: str, depth: int) -> dict[str, Any]:
    if depth > MAX_JSON_DEPTH:
        raise _refuse(field, f"is nested deeper than {MAX_JSON_DEPTH} levels")
    return {key: _from_value(item, field, depth) for key, item in message.fields.items()}


def _from_value(message: struct_pb2.Value, field: str, depth: int) -> Any:
    kind = message.WhichOneof("kind")
    if kind == "string_value":
        return message.string_value
    if kind == "number_value":
        number = message.number_value
        if not math.isfinite(number):
            raise _refuse(field, "holds a number that JSON cannot spell (NaN or infinite)")
        if number.is_integer() and -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER:
            return int(number)
        return number
    if kind == "bool_value":
        return message.bool_value
    if kind == "null_value":
        return None
    if kind == "struct_value":
        return _from_struct(message.struct_value, field, depth + 1)
    if kind == "list_value":
        if depth + 1 > MAX_JSON_DEPTH:
            raise _refuse(field, f"is nested deeper than {MAX_JSON_DEPTH} levels")
        return [_from_value(item, field, depth + 1) for item in message.list_value.values]
    raise _refuse(field, "holds a value with no kind (not null, number, string, ...)")
