"""Fuzzing every RPC of SessionService against a real server, on a real SQLite file
and on a real PostgreSQL database (each test runs on both; PostgreSQL is skipped
without SESSION_AUTHORITY_TEST_POSTGRES_DSN).

Hypothesis builds requests in two families:

- typed: every field drawn from a strategy for its type: text of every size (empty,
  at and past each documented limit, past the gRPC message limit, JSON-looking
  text), Struct and Value fields that are valid, claim-shaped, huge (past each
  JSON limit, past four times it on the wire, past the gRPC limit), nested around
  MAX_JSON_DEPTH and past protobuf's own depth limit, or nasty anywhere in the
  tree (Values without a kind, NaN, infinities, integers no double holds), built
  as protobuf messages directly so that the SDK's checks do not stand in the way,
  Durations with nanos or negative seconds, int64 extremes, unknown enum numbers,
  repeated fields with thousands of items, U+0000 in any string (which PostgreSQL
  text cannot hold), real, mangled or freshly minted tokens and handles so that
  calls get past the first check, and page tokens that are real, mangled,
  another user's or forged (positions far past int64);
- raw: arbitrary bytes as the serialized request, hand-encoded wire messages with
  invalid UTF-8 in string fields, lying lengths, overlong varints, unknown fields
  and nested groups, and valid requests with bytes flipped, inserted or cut.

Every answer must be OK or a status the authority chose: never INTERNAL or
UNKNOWN, always with an ErrorInfo in the "session-authority" domain whose reason
belongs to the status code (and INVALID_ARGUMENT names its field, in the ErrorInfo
and in a BadRequest); OK answers parse, and their Structs and Values (and those of
an InvalidClaims detail) are JSON the SDK reads. Afterwards the server still
serves, logged no error, and the sessions created before the fuzzing are exactly
as they were.

The suite runs 40 examples per method and family, the same examples every run;
`make fuzz` sets SESSION_AUTHORITY_FUZZ_EXAMPLES (2000) and explores at random.
The grpc.aio server runs in the test's event loop, so hypothesis drives it from a
worker thread through a synchronous channel.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import os
import threading
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor as pb_descriptor
from google.protobuf import message_factory, struct_pb2, text_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from session_authority import SessionClient, SessionContainer
from session_authority.errors import ERROR_DOMAIN, ERROR_TABLE, InvalidArgumentError
from session_authority.structs import struct_from_wire, value_from_wire
from session_authority.v1 import session_service_pb2 as pb
from session_authority.verify import PROTECTED_CLAIMS
from session_authority_server.app import MAX_MESSAGE_BYTES, RunningServer

from .conftest import START_MS

FUZZ_EXAMPLES = int(os.environ.get("SESSION_AUTHORITY_FUZZ_EXAMPLES", "40"))
# The default suite replays the same examples every run; a long run explores.
LONG_RUN = "SESSION_AUTHORITY_FUZZ_EXAMPLES" in os.environ
CALL_TIMEOUT_S = 30.0
# A server stream (a watch) that is still open after this long is serving: cancel it.
STREAM_WAIT_S = 0.1
# Repeated fields stop growing here: just past what the server accepts.
OVERSIZED_BYTES = MAX_MESSAGE_BYTES + 64 * 1024

# Each test fuzzes every method: 40 examples each take some 20 s, more when failures
# are being shrunk, and a long run far more than the suite's default timeout.
pytestmark = [
    pytest.mark.timeout(max(300, 2 * FUZZ_EXAMPLES)),
    # Hypothesis warns when it describes our (large, nested) strategies; harmless.
    pytest.mark.filterwarnings("ignore:Generating overly large repr"),
]

SERVICE = pb.DESCRIPTOR.services_by_name["SessionService"]
REASON_CODES = {mapping.error_class.reason: mapping.status_code for mapping in ERROR_TABLE}
FD = pb_descriptor.FieldDescriptor

FUZZ_SETTINGS = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    # The suite keeps no example database; a long run keeps the default one.
    database=settings().database if LONG_RUN else None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)


def message_class(descriptor: pb_descriptor.Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


# --- JSON-ish text ---------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    """JSON text written as is: numbers Python's json module would never write."""

    text: str


@dataclass(frozen=True)
class JsonObject:
    """An object as key/value pairs, so that keys can repeat."""

    pairs: tuple[tuple[str, Any], ...]


def to_json(value: Any, ascii_only: bool) -> str:
    if isinstance(value, Literal):
        return value.text
    if isinstance(value, JsonObject):
        members = (f"{to_json(k, ascii_only)}:{to_json(v, ascii_only)}" for k, v in value.pairs)
        return "{" + ",".join(members) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_json(item, ascii_only) for item in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


def json_document(value: Any, ascii_only: bool) -> str:
    """JSON text; lone surrogates can only travel escaped (a proto string is UTF-8)."""
    text = to_json(value, ascii_only)
    try:
        text.encode()
    except UnicodeEncodeError:
        return to_json(value, True)
    return text


# Claim keys shared by payloads and validators, so that validators find their claims.
# Mostly "k": a validator and a payload meet only when their keys are the same.
CLAIM_KEYS = ("k", "k", "k", "k", "st-ev", "st-role", "v", "t", "")
SOME_PROTECTED_CLAIMS = ("sub", "exp", "sessionHandle")
LONE_SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)
JSON_STRINGS = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["\ud800", "\udfff", "a\udc80b", "\ud83d\ude00", "\x00", "\u2028", "ß水🙂"]),
    st.lists(LONE_SURROGATES | st.characters(), min_size=1, max_size=4).map("".join),
)
# Numbers JSON allows but Python's json module would never write: valid, yet odd.
NUMBER_LITERALS = st.one_of(
    st.sampled_from(
        [
            "-0",
            "-0.0",
            "1e-400",
            "1E+2",
            "1.7976931348623157e308",
            "5e-324",
            "9007199254740993",
            "-9223372036854775809",
            "9223372036854775808",
            "18446744073709551616",
            "1e26",
            "-1e26",
            "100000000000000000000000000",
        ]
    ),
    # Integers past float range, up to Python's 4300-digit parsing limit.
    st.builds(
        lambda sign, digits: sign + "9" * digits,
        st.sampled_from(["", "-"]),
        st.sampled_from([19, 20, 309, 312, 400, 4300]),
    ),
)
JSON_NUMBERS = st.one_of(
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    NUMBER_LITERALS.map(Literal),
)
JSON_KEYS = st.one_of(
    st.sampled_from(CLAIM_KEYS), JSON_STRINGS, st.sampled_from(SOME_PROTECTED_CLAIMS)
)
JSON_SCALARS = st.one_of(st.none(), st.booleans(), JSON_NUMBERS, JSON_STRINGS)


def json_objects(children: st.SearchStrategy[Any]) -> st.SearchStrategy[JsonObject]:
    return st.lists(st.tuples(JSON_KEYS, children), max_size=6).map(
        lambda pairs: JsonObject(tuple(pairs))
    )


def json_containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(children, max_size=6) | json_objects(children)


JSON_VALUES = st.recursive(JSON_SCALARS, json_containers, max_leaves=25)
# A claim as the authority stores it: {"v": value, "t": fetched at}, with odd times.
CLAIM_ENTRIES = st.builds(
    lambda value, fetched: JsonObject((("v", value), ("t", fetched))),
    JSON_VALUES,
    st.one_of(NUMBER_LITERALS.map(Literal), JSON_NUMBERS, st.just(START_MS), st.none(), st.text()),
)
CLAIM_PAYLOADS = st.builds(
    lambda first, rest: JsonObject((("k", first), *rest)),
    CLAIM_ENTRIES,
    st.lists(st.tuples(st.sampled_from(CLAIM_KEYS), CLAIM_ENTRIES | JSON_VALUES), max_size=3),
)
VALID_JSON = st.builds(json_document, JSON_VALUES | json_objects(JSON_VALUES), st.booleans())
VALID_OBJECTS = st.builds(json_document, json_objects(JSON_VALUES) | CLAIM_PAYLOADS, st.booleans())
# Depths around Python's recursion limit (about 1000), below it, and far past it.
NESTING_DEPTHS = st.one_of(
    st.integers(1, 64), st.integers(400, 1100), st.sampled_from([5_000, 8_000, 20_000])
)
NESTED_JSON = st.builds(
    lambda top, opener_closer, depth, closed: (
        top[0]
        + opener_closer[0] * depth
        + "1"
        + (opener_closer[1] * depth if closed else "")
        + top[1]
    ),
    st.sampled_from([("", ""), ('{"k":', "}"), ('{"k":{"v":', ',"t":1}}')]),
    st.sampled_from([("[", "]"), ('{"k":', "}"), ('{"v":', "}"), ('[{"a":[', "]}]")]),
    NESTING_DEPTHS,
    st.booleans(),
)


def padded_object(total_bytes: int, unit: str) -> str:
    """{"k":"xxx..."} of about total_bytes UTF-8 bytes."""
    return '{"k":"' + unit * max(0, (total_bytes - 8) // len(unit.encode())) + '"}'


PADDED_JSON = st.builds(
    padded_object,
    st.sampled_from([16 * 1024, 16 * 1024 + 1, 256 * 1024, 256 * 1024 + 1, 1_000_000]),
    st.sampled_from(["x", "ß", "水", "🙂"]),
)
TRUNCATED_JSON = st.tuples(VALID_JSON, st.integers(0, 2**16)).map(
    lambda pair: pair[0][: pair[1] % (len(pair[0]) + 1)]
)
NASTY_JSON = st.sampled_from(
    [
        "{}",
        "[]",
        "null",
        '""',
        '{"a":1,"a":2}',
        '{"\\ud800":1}',
        '{"k":"\\udfff"}',
        '{"k":{"v":"\\ud800","t":1}}',
        '{"k":{"v":1,"t":1e308}}',
        "NaN",
        '{"k":NaN}',
        '{"k":Infinity}',
        '{"k":-Infinity}',
        '{"k":1e999}',
        '{"k":-1e400}',
        '{"k":{"v":1,"t":1e400}}',
        '{"k":' + "9" * 4301 + "}",
        '{"k":' + "9" * 10_000 + "}",
        ' {"k":1} ',
        '{"k":1}garbage',
        '{"k":1}{"k":2}',
        "{'k':1}",
        '\ufeff{"k":1}',
        '{"k":"\\u0000"}',
        '{"__proto__":{"x":1}}',
        '{"k":01}',
        '{"k":.5}',
        '{"k":+1}',
        '{"k":0x10}',
        '{"k":"\t"}',
        '{"k":1,}',
        "[1,]",
        '{"k"}',
        "{",
        '"',
    ]
)
JSON_TEXT = st.one_of(
    VALID_JSON, VALID_OBJECTS, NESTED_JSON, PADDED_JSON, TRUNCATED_JSON, NASTY_JSON
)

# --- JSON values as google.protobuf.Struct / Value ----------------------------------------
#
# Strategies give JSON values as Python values (dicts, lists, scalars) with markers for
# what no JSON text holds: Values without a kind, NaN and infinities, integers no double
# holds, nesting past every limit, Structs past every size limit. write_value and
# write_struct write them into a request as protobuf messages directly, bypassing the
# SDK's own checks (structs.py), as a client in another language might.


@dataclass(frozen=True)
class NoKind:
    """A Value with no kind set: no JSON value at all."""


@dataclass(frozen=True)
class Nested:
    """A value nested depth levels deep ("list": [[...1...]], "object": {"k":{"k":...}},
    "claim": {"v": [[...]], "t": ...}), built when the request is (a short repr)."""

    depth: int
    shape: str


@dataclass(frozen=True)
class Padded:
    """{"k": "xxx..."} of about total_bytes bytes of JSON."""

    total_bytes: int
    unit: str


@dataclass(frozen=True)
class ManyNumbers:
    """{"k": [0, 1, 2, ...]}: numbers take 11 bytes on the wire, 2 to 7 in JSON."""

    count: int


STRUCT = "google.protobuf.Struct"
VALUE = "google.protobuf.Value"
# A field left unset (for the Struct and Value fields, which are otherwise always set).
ABSENT = "<absent>"
# Doubles at the edges, and integers no double holds (an SDK in another language
# might send them rounded, or overflowing to infinity).
ODD_NUMBERS = st.sampled_from(
    [
        math.nan,
        -math.nan,
        math.inf,
        -math.inf,
        -0.0,
        5e-324,
        1.7976931348623157e308,
        -1.7976931348623157e308,
        2**53 + 1,
        -(2**53) - 1,
        2**63,
        2**64,
        10**26,
        10**400,
        -(10**400),
        float(START_MS) + 0.5,
        1e-300,
    ]
)
SAFE_NUMBERS = st.one_of(
    st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False)
)
SAFE_SCALARS = st.one_of(st.none(), st.booleans(), SAFE_NUMBERS, JSON_STRINGS)
ODD_SCALARS = st.one_of(st.just(NoKind()), ODD_NUMBERS, st.floats())


def json_trees(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=6) | st.dictionaries(JSON_KEYS, children, max_size=6)
        ),
        max_leaves=25,
    )


# Values an SDK could send, and values with something hostile anywhere in the tree.
VALID_VALUES = json_trees(SAFE_SCALARS)
HOSTILE_VALUES = json_trees(st.one_of(SAFE_SCALARS, ODD_SCALARS))
# Depths around MAX_JSON_DEPTH (32), around protobuf's parsing limit (about 100
# messages: 33 objects or 49 lists), and far past it.
NESTED_VALUES = st.builds(
    Nested,
    st.one_of(st.integers(1, 64), st.sampled_from([100, 1_000, 3_000])),
    st.sampled_from(["list", "object", "claim"]),
)
PADDED_VALUES = st.builds(
    Padded,
    st.sampled_from([16 * 1024, 16 * 1024 + 1, 64 * 1024, 64 * 1024 + 1, 256 * 1024 + 1, 10**6]),
    st.sampled_from(["x", "ß", "水", "🙂"]),
)
# Around 16 KiB of JSON (about 5000 numbers), four times that on the wire, and past
# the gRPC message limit.
MANY_NUMBERS = st.builds(ManyNumbers, st.sampled_from([1_500, 5_000, 8_188, 30_000, 400_000]))
# A claim as the authority stores it: {"v": value, "t": fetched at}, with odd times.
CLAIM_ENTRY_VALUES = st.fixed_dictionaries(
    {
        "v": VALID_VALUES | HOSTILE_VALUES,
        "t": st.one_of(SAFE_NUMBERS, ODD_SCALARS, st.just(START_MS), st.none(), st.text()),
    }
)
CLAIM_STRUCTS = st.builds(
    lambda first, rest: {**dict(rest), "k": first},
    CLAIM_ENTRY_VALUES,
    st.lists(st.tuples(st.sampled_from(CLAIM_KEYS), CLAIM_ENTRY_VALUES | VALID_VALUES), max_size=3),
)
VALID_STRUCTS = st.dictionaries(JSON_KEYS, VALID_VALUES, max_size=6)
HOSTILE_STRUCTS = st.dictionaries(JSON_KEYS, HOSTILE_VALUES, min_size=1, max_size=6)
# For Struct fields: mostly objects that get past the first checks.
STRUCT_VALUES = st.one_of(
    VALID_STRUCTS,
    VALID_STRUCTS,
    CLAIM_STRUCTS,
    CLAIM_STRUCTS,
    HOSTILE_STRUCTS,
    NESTED_VALUES,
    PADDED_VALUES,
    MANY_NUMBERS,
)
# For Value fields (a claim's value, a validator's expected value): any of those, or
# any value at all.
ANY_VALUES = st.one_of(
    VALID_VALUES, VALID_VALUES, VALID_VALUES, HOSTILE_VALUES, st.just(NoKind()), STRUCT_VALUES
)


def utf8(text: str) -> str:
    """The text as protobuf can carry it: lone surrogates become "?" (invalid UTF-8
    on the wire is the raw family's)."""
    return text.encode("utf-8", "replace").decode("utf-8")


def as_double(number: int | float) -> float:
    try:
        return float(number)
    except OverflowError:
        return math.inf if number > 0 else -math.inf


def write_value(message: struct_pb2.Value, value: Any) -> None:
    """Write a JSON value (with the markers above) into a Value, in place: copying a
    deeply nested message would go through this process' parser and its depth limit."""
    if isinstance(value, NoKind):
        message.Clear()
    elif value is None:
        message.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, bool):
        message.bool_value = value
    elif isinstance(value, int | float):
        message.number_value = as_double(value)
    elif isinstance(value, str):
        message.string_value = utf8(value)
    elif isinstance(value, list):
        message.list_value.SetInParent()
        for item in value:
            write_value(message.list_value.values.add(), item)
    elif isinstance(value, Nested) and value.shape == "list":
        for _ in range(value.depth - 1):
            message = message.list_value.values.add()
        message.number_value = 1
    else:
        message.struct_value.SetInParent()
        write_struct(message.struct_value, value)


def write_struct(message: struct_pb2.Struct, value: Any) -> None:
    """Write a JSON object (or a marker that stands for one) into a Struct, in place."""
    if isinstance(value, Padded):
        count = max(0, (value.total_bytes - 8) // len(value.unit.encode()))
        message.fields["k"].string_value = value.unit * count
    elif isinstance(value, ManyNumbers):
        numbers = message.fields["k"].list_value
        for number in range(value.count):
            numbers.values.add().number_value = number
    elif isinstance(value, Nested) and value.shape == "claim":
        entry = message.fields["k"].struct_value
        entry.fields["t"].number_value = START_MS
        write_value(entry.fields["v"], Nested(max(1, value.depth - 2), "list"))
    elif isinstance(value, Nested) and value.shape == "list":
        write_value(message.fields["k"], Nested(max(1, value.depth - 1), "list"))
    elif isinstance(value, Nested):
        for _ in range(value.depth - 1):
            message = message.fields["k"].struct_value
        message.fields["k"].number_value = 1
    elif isinstance(value, dict):
        for key, item in value.items():
            write_value(message.fields[utf8(key)], item)
    else:  # a value that is no object: inside a Struct field it goes under "k"
        write_value(message.fields["k"], value)


# --- other field values ----------------------------------------------------------------

# Around every documented limit, past the gRPC message limit, and a few in between.
BOUNDARY_LENGTHS = [
    127,
    128,
    129,
    511,
    512,
    513,
    16 * 1024,
    16 * 1024 + 1,
    128 * 1024 + 1,
    256 * 1024 + 1,
    1_000_000,
    MAX_MESSAGE_BYTES + 1,
]
HUGE_TEXT = st.builds(
    lambda unit, length: (unit * (length // len(unit) + 1))[:length],
    st.text(min_size=1, max_size=3),
    st.sampled_from(BOUNDARY_LENGTHS),
)
INT_RANGES = {
    FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FD.TYPE_INT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FD.TYPE_UINT64: (0, 2**64 - 1),
    FD.TYPE_FIXED64: (0, 2**64 - 1),
    FD.TYPE_UINT32: (0, 2**32 - 1),
    FD.TYPE_FIXED32: (0, 2**32 - 1),
}
INTERESTING_INTS = [
    -(2**63),
    -(2**63) + 1,
    -(2**31),
    -1,
    0,
    1,
    50,
    199,
    200,
    201,
    1000,
    2**31 - 1,
    2**31,
    2**32 - 1,
    2**53 + 1,
    START_MS,
    3_153_600_000,  # ten times the default JWT validity, in seconds
    3_153_600_001,
    2**63 - 1,
    2**64 - 1,
]


def int_strategy(field_type: int) -> st.SearchStrategy[int]:
    low, high = INT_RANGES[field_type]
    extremes = [n for n in INTERESTING_INTS if low <= n <= high]
    return st.one_of(st.integers(low, high), st.sampled_from(extremes))


def choice(values: Sequence[str]) -> st.SearchStrategy[str]:
    """sampled_from, without reprs of whole tokens in hypothesis' reports."""
    return st.integers(0, len(values) - 1).map(lambda i: values[i])


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def with_nul(strings: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """The strings with U+0000 put in somewhere (PostgreSQL text cannot hold it)."""
    return st.builds(
        lambda text, at: text[: at % (len(text) + 1)] + "\x00" + text[at % (len(text) + 1) :],
        strings,
        st.integers(0, 4096),
    )


# Positions (created_ms) at and past what either store binds as an integer.
HUGE_POSITIONS = [
    10**26,
    -(10**26),
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) - 1,
    2**64 - 1,
    2**64,
]
POSITIONS = st.one_of(st.sampled_from(HUGE_POSITIONS), st.integers(), st.just(START_MS))


def forged_page_tokens(handles: Sequence[str]) -> st.SearchStrategy[str]:
    """Page tokens the authority never issued: the old unauthenticated JSON layout
    (base64url of [created_ms, handle]) and the binary one, with made-up MACs."""
    json_layout = st.builds(
        lambda position, handle: b64url(json.dumps([position, handle]).encode()),
        POSITIONS | JSON_NUMBERS.filter(lambda n: not isinstance(n, Literal)),
        choice(handles) | st.text(max_size=8) | with_nul(choice(handles)),
    )
    binary_layout = st.builds(
        lambda version, position, handle, mac: b64url(
            bytes([version]) + (position % 2**64).to_bytes(8, "big") + handle + mac
        ),
        st.sampled_from([1, 1, 1, 0, 2, 255]),
        POSITIONS,
        choice(handles).map(lambda h: uuid.UUID(h).bytes) | st.binary(min_size=16, max_size=16),
        st.binary(min_size=32, max_size=32),
    )
    return json_layout | binary_layout


# --- sessions to aim at ------------------------------------------------------------------


@dataclass(frozen=True)
class Pool:
    """Sessions created for the fuzzer to hit, revoke and refresh (never the witnesses)."""

    sessions: tuple[SessionContainer, ...]
    jwt: str
    kid: str
    # Genuine ListSessions page tokens, one per pool user (each has one session).
    page_tokens: tuple[str, ...] = ()

    def part(self, name: str, index: int = 0) -> str:
        session = self.sessions[index % len(self.sessions)]
        value = {
            "access_token": session.access_token,
            "refresh_token": session.refresh_token,
            "anti_csrf_token": session.anti_csrf_token,
            "session_handle": session.session_handle,
            "user_id": session.user_id,
        }[name]
        return value or ""

    def strings(self) -> list[str]:
        parts = ("access_token", "refresh_token", "anti_csrf_token", "session_handle", "user_id")
        return [self.part(part, index) for part in parts for index in range(len(self.sessions))] + [
            self.jwt
        ]


# Payloads the pool sessions carry, so that validators meet odd claims.
POOL_PAYLOADS: list[dict[str, Any]] = [
    {},
    {"k": {"v": [1, "two", None], "t": START_MS}, "st-role": {"v": ["admin"], "t": 0}},
    {"k": {"v": 2**53, "t": -1}, "v": {"t": 1.5}, "t": "x"},
    {"k": {"v": {"deep": [[[[[]]]]]}, "t": 1e30}, "st-ev": {"v": True}},
]


@dataclass(frozen=True)
class Fresh:
    """Part of a session the caller creates with this payload just before the call
    (every Fresh of one example shares the first such session)."""

    part: str
    payload: Any  # for the access-token payload: anything STRUCT_VALUES gives


TOKEN_PARTS = ("access_token", "refresh_token", "anti_csrf_token")


def string_strategy(name: str, pool: Pool) -> st.SearchStrategy[Any]:
    pool_strings = pool.strings()

    def mangled(values: Sequence[str]) -> st.SearchStrategy[str]:
        return st.builds(
            lambda text, at, cut, insert: (
                text[: at % (len(text) + 1)] + insert + text[at % (len(text) + 1) + cut :]
            ),
            choice(values),
            st.integers(0, 4096),
            st.integers(0, 2),
            st.text(max_size=2),
        )

    token_ish = st.builds(
        lambda header, payload, signature: (
            f"{b64url(header.encode())}.{b64url(payload.encode())}.{b64url(signature)}"
        ),
        st.builds(
            lambda alg, kid, version: json.dumps(
                {"alg": alg, "kid": kid, "typ": "JWT", "version": version}
            ),
            st.sampled_from(["RS256", "ES256", "EdDSA", "HS256", "none", ""]),
            st.just(pool.kid) | st.text(max_size=8),
            st.sampled_from(["5", "4", 5, None]),
        )
        | VALID_JSON,
        VALID_OBJECTS,
        st.binary(max_size=300),
    )
    generic: list[st.SearchStrategy[Any]] = [
        st.just(""),
        st.text(max_size=64),
        HUGE_TEXT,
        JSON_TEXT,
        choice(pool_strings),
        mangled(pool_strings),
        with_nul(st.text(max_size=16) | choice(pool_strings)),
    ]
    specific: list[st.SearchStrategy[Any]] = []
    fresh_payloads = STRUCT_VALUES
    if name in TOKEN_PARTS:
        tokens = [pool.part(name, i) for i in range(len(pool.sessions))]
        specific = [
            st.builds(Fresh, st.just(name), fresh_payloads),
            choice(tokens),
            mangled(tokens),
        ]
        if name == "access_token":
            specific += [token_ish, choice([pool.jwt])]
    elif "handle" in name:
        handles = [pool.part("session_handle", i) for i in range(len(pool.sessions))]
        specific = [
            st.builds(Fresh, st.just("session_handle"), fresh_payloads),
            choice(handles),
            st.uuids().map(str),
            with_nul(choice(handles)),
        ]
    elif name == "user_id":
        user_ids = [pool.part("user_id", i) for i in range(len(pool.sessions))]
        specific = [
            st.builds(Fresh, st.just("user_id"), fresh_payloads),
            choice(user_ids),
            with_nul(choice(user_ids)),
        ]
    elif name in ("claim_key", "id"):
        keys = st.sampled_from(CLAIM_KEYS + SOME_PROTECTED_CLAIMS)
        specific = [keys, with_nul(keys)]
    elif name == "page_token":
        handles = [pool.part("session_handle", i) for i in range(len(pool.sessions))]
        specific = [forged_page_tokens(handles)]
        if pool.page_tokens:
            specific += [choice(pool.page_tokens), mangled(pool.page_tokens)]
    return st.one_of(*specific, *specific, *generic)


def value_strategy(
    field_descriptor: pb_descriptor.FieldDescriptor, pool: Pool, depth: int
) -> st.SearchStrategy[Any]:
    kind = field_descriptor.type
    if kind == FD.TYPE_MESSAGE:
        assert field_descriptor.message_type is not None
        if field_descriptor.message_type.full_name == STRUCT:
            return STRUCT_VALUES
        if field_descriptor.message_type.full_name == VALUE:
            return ANY_VALUES
        return message_strategy(field_descriptor.message_type, pool, depth + 1)
    if kind == FD.TYPE_STRING:
        return string_strategy(field_descriptor.name, pool)
    if kind == FD.TYPE_BYTES:
        return st.binary(max_size=256)
    if kind == FD.TYPE_BOOL:
        return st.booleans()
    if kind == FD.TYPE_ENUM:
        assert field_descriptor.enum_type is not None
        known = [value.number for value in field_descriptor.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-(2**31), 2**31 - 1))
    if kind in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return st.floats(width=64 if kind == FD.TYPE_DOUBLE else 32)
    return int_strategy(kind)


def field_strategy(
    field_descriptor: pb_descriptor.FieldDescriptor, pool: Pool, depth: int
) -> st.SearchStrategy[Any]:
    item = value_strategy(field_descriptor, pool, depth)
    if not field_descriptor.is_repeated:
        return item
    many: list[st.SearchStrategy[Any]] = [
        st.lists(item, max_size=4),
        st.lists(item, min_size=1, max_size=3),
        st.tuples(item, st.sampled_from([100, 999, 1000, 1001, 5000])).map(
            lambda pair: [pair[0]] * pair[1]
        ),
    ]
    if field_descriptor.type == FD.TYPE_STRING:
        many.append(
            st.builds(
                lambda count, prefix: [f"{prefix}{i}" for i in range(count)],
                st.sampled_from([999, 1000, 1001, 20_000]),
                st.sampled_from(["", "handle-", str(uuid.UUID(int=0))]),
            )
        )
    return st.one_of(*many)


def message_strategy(
    descriptor: pb_descriptor.Descriptor, pool: Pool, depth: int = 0
) -> st.SearchStrategy[dict[str, Any]]:
    """Field name -> value; fields with presence are sometimes left unset (JSON
    values only in one case out of four: most calls need theirs)."""
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field_descriptor in descriptor.fields:
        if depth > 3 and field_descriptor.type == FD.TYPE_MESSAGE:
            continue
        strategy = field_strategy(field_descriptor, pool, depth)
        sub = field_descriptor.message_type
        if sub is not None and sub.full_name in (STRUCT, VALUE):
            required[field_descriptor.name] = st.one_of(
                strategy, strategy, strategy, st.just(ABSENT)
            )
        elif field_descriptor.has_presence:
            optional[field_descriptor.name] = strategy
        else:
            required[field_descriptor.name] = strategy
    fields = st.fixed_dictionaries(required, optional=optional)
    if descriptor.full_name == pb.ClaimValidator.DESCRIPTOR.full_name:
        # Random fields rarely make a validator that runs, and one bad validator
        # fails the whole call: most are well-formed.
        well_formed = well_formed_validators()
        return st.one_of(fields, well_formed, well_formed, well_formed)
    return fields


def well_formed_validators() -> st.SearchStrategy[dict[str, Any]]:
    def validator(key: str, kind: int, value: Any, max_age: int | None) -> dict[str, Any]:
        fields = {"claim_key": key, "kind": kind, "value": value}
        return fields if max_age is None else {**fields, "max_age": {"seconds": max_age}}

    max_ages = st.one_of(st.none(), st.integers(0, 10**6), int_strategy(FD.TYPE_INT64))
    one_value = st.builds(
        validator, st.sampled_from(CLAIM_KEYS), st.integers(1, 3), VALID_VALUES, max_ages
    )
    many_values = st.builds(
        validator,
        st.sampled_from(CLAIM_KEYS),
        st.integers(4, 6),
        st.lists(VALID_VALUES | HOSTILE_VALUES, max_size=4),
        max_ages,
    )
    return one_value | many_values


# --- raw wire bytes ----------------------------------------------------------------------


def varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        if number:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint((number << 3) | wire_type)


INVALID_UTF8 = st.sampled_from(
    [
        b"\xff",
        b"\xfe\xff",
        b"\xc3\x28",
        b"\xa0\xa1",
        b"\xe2\x28\xa1",
        b"\xf0\x28\x8c\xbc",
        b"\xed\xa0\x80",  # an encoded surrogate
        b"\xf4\x90\x80\x80",  # past U+10FFFF
        b"\xc0\xaf",  # overlong
        b"\xe0\x80\xaf",
        b"\xf8\x88\x80\x80\x80",
        b"abc\x80",
    ]
)
STRING_BYTES = st.one_of(
    st.binary(max_size=64),
    INVALID_UTF8,
    st.builds(
        lambda before, bad, after: before.encode() + bad + after.encode(),
        st.text(max_size=20),
        INVALID_UTF8,
        st.text(max_size=20),
    ),
    st.text(max_size=40).map(str.encode),
    VALID_OBJECTS.map(str.encode),
)
VARINT_BYTES = st.one_of(
    st.integers(0, 2**64 - 1).map(varint),
    st.integers(9, 12).map(lambda n: b"\xff" * n + b"\x01"),  # overlong
    st.just(b"\x80"),  # cut short
)


def length_delimited(number: int, payload: bytes, lie: int) -> bytes:
    return tag(number, 2) + varint(max(0, len(payload) + lie)) + payload


LIES = st.sampled_from([0, 0, 0, 0, -1, 1, 2**20])


def wire_field(
    field_descriptor: pb_descriptor.FieldDescriptor, depth: int
) -> st.SearchStrategy[bytes]:
    number = field_descriptor.number
    kind = field_descriptor.type
    if kind in (FD.TYPE_STRING, FD.TYPE_BYTES):
        proper = st.builds(length_delimited, st.just(number), STRING_BYTES, LIES)
    elif kind == FD.TYPE_MESSAGE:
        assert field_descriptor.message_type is not None
        inner = (
            wire_message(field_descriptor.message_type, depth + 1)
            if depth < 3
            else st.binary(max_size=32)
        )
        proper = st.builds(length_delimited, st.just(number), inner, LIES)
    elif kind in (FD.TYPE_DOUBLE, FD.TYPE_FIXED64, FD.TYPE_SFIXED64):
        proper = st.binary(min_size=8, max_size=8).map(lambda b: tag(number, 1) + b)
    elif kind in (FD.TYPE_FLOAT, FD.TYPE_FIXED32, FD.TYPE_SFIXED32):
        proper = st.binary(min_size=4, max_size=4).map(lambda b: tag(number, 5) + b)
    else:
        proper = VARINT_BYTES.map(lambda b: tag(number, 0) + b)
        if field_descriptor.is_repeated:  # packed
            packed = st.lists(VARINT_BYTES, max_size=8).map(b"".join)
            proper |= st.builds(length_delimited, st.just(number), packed, LIES)
    wrong_wire_type = st.builds(
        lambda wire_type, payload: tag(number, wire_type) + payload,
        st.integers(0, 7),
        st.binary(max_size=12),
    )
    return st.one_of(proper, proper, wrong_wire_type)


UNKNOWN_FIELDS = st.one_of(
    st.builds(
        lambda number, wire_type, payload: tag(number, wire_type) + payload,
        st.integers(0, 2**29 - 1),
        st.integers(0, 7),
        st.binary(max_size=16),
    ),
    # Groups nested deeper than any parser's recursion limit, closed or not.
    st.builds(
        lambda number, depth, closed: tag(number, 3) * depth + (tag(number, 4) * depth) * closed,
        st.integers(100, 200),
        st.sampled_from([1, 50, 99, 100, 101, 1000, 50_000]),
        st.booleans(),
    ),
)


def wire_message(descriptor: pb_descriptor.Descriptor, depth: int = 0) -> st.SearchStrategy[bytes]:
    parts = [wire_field(f, depth) for f in descriptor.fields]
    return st.lists(st.one_of(*parts, *parts, UNKNOWN_FIELDS), max_size=8).map(b"".join)


MUTATIONS = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "delete", "truncate"]),
        st.integers(0, 2**20),
        st.binary(min_size=1, max_size=8),
    ),
    min_size=1,
    max_size=4,
)


def mutate(data: bytes, mutations: Sequence[tuple[str, int, bytes]]) -> bytes:
    for operation, position, extra in mutations:
        at = position % (len(data) + 1)
        if operation == "flip" and data:
            at %= len(data)
            data = data[:at] + bytes([data[at] ^ (extra[0] or 1)]) + data[at + 1 :]
        elif operation == "insert":
            data = data[:at] + extra + data[at:]
        elif operation == "delete":
            data = data[:at] + data[at + len(extra) :]
        else:
            data = data[:at]
    return data


@dataclass(frozen=True)
class RawBytes:
    data: bytes


@dataclass(frozen=True)
class Mutated:
    values: dict[str, Any]
    mutations: list[tuple[str, int, bytes]]


# --- calling and judging ---------------------------------------------------------------


@dataclass
class Outcome:
    code: grpc.StatusCode
    responses: list[bytes] = field(default_factory=list)
    error: grpc.RpcError | None = None


def shorten(text: str, limit: int = 600) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def describe(request: Message) -> str:
    try:
        return shorten(text_format.MessageToString(request, as_one_line=True))
    except RecursionError:  # text_format recurses once per level of nesting
        return f"{type(request).__name__} nested too deep to print"


def error_details(error: grpc.RpcError) -> list[Any]:
    """The error's details we know: ErrorInfo, BadRequest, RetryInfo, InvalidClaims."""
    try:
        status = rpc_status.from_call(error)
    except ValueError:
        return []
    found: list[Any] = []
    for detail in status.details if status is not None else ():
        for kind in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.BadRequest,
            error_details_pb2.RetryInfo,
            pb.InvalidClaims,
        ):
            message = kind()
            if detail.Unpack(message):
                found.append(message)
                break
    return found


def check_json_fields(message: Message, fail: Callable[[str], None]) -> None:
    """Every Struct and Value of an answer is JSON as the SDK reads it: every Value
    has a kind, no NaN or infinity, no nesting deeper than MAX_JSON_DEPTH."""
    for field_descriptor, value in message.ListFields():
        values = value if field_descriptor.is_repeated else [value]
        sub = field_descriptor.message_type
        for item in values:
            if sub is None:
                continue
            try:
                if sub.full_name == STRUCT:
                    struct_from_wire(item, field_descriptor.name)
                elif sub.full_name == VALUE:
                    value_from_wire(item, field_descriptor.name)
                else:
                    check_json_fields(item, fail)
            except InvalidArgumentError as error:
                fail(f"answered {field_descriptor.name} that is not JSON: {error.message}")


class Caller:
    """Calls the server synchronously (from hypothesis' worker thread) and judges."""

    def __init__(self, channel: grpc.Channel, pool: Pool) -> None:
        self.pool = pool
        self._fresh: dict[str, str] | None = None
        self._calls: dict[str, Any] = {}
        for method in SERVICE.methods:
            path = f"/{SERVICE.full_name}/{method.name}"
            make = {
                (False, False): channel.unary_unary,
                (False, True): channel.unary_stream,
                (True, False): channel.stream_unary,
                (True, True): channel.stream_stream,
            }[(method.client_streaming, method.server_streaming)]
            self._calls[method.name] = make(path)  # bytes in, bytes out
        self.calls = 0

    # One call, whatever its shape; a server stream is read until its first message
    # or until it has stayed open STREAM_WAIT_S (then it is serving: cancelled here).
    def invoke(self, method: pb_descriptor.MethodDescriptor, request: bytes) -> Outcome:
        self.calls += 1
        call = self._calls[method.name]
        argument: Any = iter([request]) if method.client_streaming else request
        if not method.server_streaming:
            try:
                return Outcome(grpc.StatusCode.OK, [call(argument, timeout=CALL_TIMEOUT_S)])
            except grpc.RpcError as error:
                return Outcome(error.code(), [], error)
        stream = call(argument, timeout=CALL_TIMEOUT_S)
        gave_up = threading.Event()

        def give_up() -> None:
            gave_up.set()
            stream.cancel()

        timer = threading.Timer(STREAM_WAIT_S, give_up)
        timer.start()
        responses: list[bytes] = []
        try:
            for response in stream:
                responses.append(response)
                break
        except grpc.RpcError as error:
            if gave_up.is_set() and error.code() == grpc.StatusCode.CANCELLED:
                return Outcome(grpc.StatusCode.OK, responses)
            return Outcome(error.code(), responses, error)
        finally:
            timer.cancel()
            stream.cancel()
        return Outcome(grpc.StatusCode.OK, responses)

    def judge(
        self,
        method: pb_descriptor.MethodDescriptor,
        request: bytes,
        outcome: Outcome,
        describe: Callable[[], str],
    ) -> None:
        def fail(problem: str) -> None:
            raise AssertionError(
                f"{method.name} <- {describe()} ({len(request)} bytes)\n-> {problem}"
            )

        code = outcome.code
        details = outcome.error.details() if outcome.error is not None else ""
        if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
            fail(f"{code.name}: {details}")
        output = message_class(method.output_type)
        for response in outcome.responses:
            check_json_fields(output.FromString(response), fail)
        if code == grpc.StatusCode.OK:
            return
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED and len(request) > MAX_MESSAGE_BYTES:
            return  # gRPC refuses an oversized request before any of our code runs
        assert outcome.error is not None
        found = error_details(outcome.error)
        infos = [d for d in found if isinstance(d, error_details_pb2.ErrorInfo)]
        if not infos:
            fail(f"{code.name} without an ErrorInfo: {details}")
            return
        info = infos[0]
        if info.domain != ERROR_DOMAIN:
            fail(f"{code.name} with ErrorInfo domain {info.domain!r}: {details}")
        if REASON_CODES.get(info.reason) != code:
            fail(f"{code.name} with reason {info.reason!r}, which maps to another code")
        if info.reason == "INVALID_ARGUMENT":
            field_name = info.metadata.get("field")
            if not field_name:
                fail(f"INVALID_ARGUMENT that names no field: {details}")
            violations = [
                [v.field for v in d.field_violations]
                for d in found
                if isinstance(d, error_details_pb2.BadRequest)
            ]
            if violations != [[field_name]]:
                fail(f"INVALID_ARGUMENT ({field_name}) with BadRequest fields {violations}")
        for detail in found:
            if isinstance(detail, pb.InvalidClaims):
                check_json_fields(detail, fail)

    # Typed requests: values from message_strategy, Fresh markers resolved first.
    def fresh(self, payload: Any) -> dict[str, str]:
        """The parts of a session created now with this payload, or of a pool session
        if that is refused. Not judged here: CreateNewSession has its own fuzzing
        (and anything unexpected is logged, which the test checks at the end)."""
        if self._fresh is None:
            request = pb.CreateNewSessionRequest(user_id=f"fuzz-fresh-{uuid.uuid4()}")
            write_struct(request.access_token_payload, payload)
            outcome = self.invoke(
                SERVICE.methods_by_name["CreateNewSession"], request.SerializeToString()
            )
            parts = ("access_token", "refresh_token", "anti_csrf_token", "session_handle")
            self._fresh = {part: self.pool.part(part) for part in (*parts, "user_id")}
            if outcome.code == grpc.StatusCode.OK:
                created = pb.CreateNewSessionResponse.FromString(outcome.responses[0])
                self._fresh = {
                    "access_token": created.access_token.token,
                    "refresh_token": created.refresh_token.token,
                    "anti_csrf_token": created.anti_csrf_token,
                    "session_handle": created.session.session_handle,
                    "user_id": created.session.user_id,
                }
        return self._fresh

    def resolve(self, value: Any) -> Any:
        if isinstance(value, Fresh):
            return self.fresh(value.payload)[value.part]
        return value

    def build(self, descriptor: pb_descriptor.Descriptor, values: dict[str, Any]) -> Message:
        message = message_class(descriptor)()
        self.fill(message, descriptor, values)
        return message

    def fill(self, message: Any, descriptor: pb_descriptor.Descriptor, values: Any) -> None:
        """Write values into message in place (a copy of a deeply nested message would
        go through this process' parser, and its depth limit)."""
        if descriptor.full_name == STRUCT:
            write_struct(message, values)
            return
        if descriptor.full_name == VALUE:
            write_value(message, values)
            return
        for name, value in values.items():
            if value is ABSENT:
                continue
            field_descriptor = descriptor.fields_by_name[name]
            sub = field_descriptor.message_type
            if field_descriptor.is_repeated:
                # Items are added until the field alone is past the gRPC limit: 5000
                # copies of a megabyte would only measure this machine's memory.
                items, size = getattr(message, name), 0
                for item in value:
                    if size > OVERSIZED_BYTES:
                        break
                    if sub is not None:
                        built = items.add()
                        self.fill(built, sub, item)
                        size += built.ByteSize() + 2
                    else:
                        resolved = self.resolve(item)
                        items.append(resolved)
                        size += len(resolved.encode()) + 2 if isinstance(resolved, str) else 8
            elif sub is not None:
                getattr(message, name).SetInParent()
                self.fill(getattr(message, name), sub, value)
            else:
                setattr(message, name, self.resolve(value))

    def typed(self, method: pb_descriptor.MethodDescriptor, values: dict[str, Any]) -> None:
        self._fresh = None
        request = self.build(method.input_type, values)
        data = request.SerializeToString()
        outcome = self.invoke(method, data)
        self.judge(method, data, outcome, lambda: describe(request))

    def raw(self, method: pb_descriptor.MethodDescriptor, item: RawBytes | Mutated) -> None:
        self._fresh = None
        if isinstance(item, Mutated):
            valid = self.build(method.input_type, item.values).SerializeToString()
            data = mutate(valid, item.mutations)
        else:
            data = item.data
        outcome = self.invoke(method, data)
        self.judge(method, data, outcome, lambda: shorten(repr(data)))


# --- the sessions that must survive --------------------------------------------------------

WITNESS_PAYLOAD: dict[str, Any] = {
    "w": 2**53 - 1,
    "nested": {"k": [1, "two", None]},
    "k": {"v": ["admin"], "t": START_MS},
}
WITNESS_DATA: dict[str, Any] = {"d": -(2**53 - 1), "text": "zß水🙂", "list": [True, 0.5, [], {}]}


@dataclass(frozen=True)
class Witness:
    session: SessionContainer
    payload: dict[str, Any]
    data: dict[str, Any]


def custom_claims(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in PROTECTED_CLAIMS}


async def create_witnesses(client: SessionClient) -> list[Witness]:
    witnesses = []
    for i in range(3):
        payload = {**WITNESS_PAYLOAD, "i": i}
        data = {**WITNESS_DATA, "i": i}
        session = await client.create_new_session(f"witness-{uuid.uuid4()}", payload, data)
        witnesses.append(Witness(session, payload, data))
    return witnesses


async def create_pool(client: SessionClient) -> Pool:
    sessions = [
        await client.create_new_session(f"fuzz-pool-{uuid.uuid4()}", payload, {"pool": i})
        for i, payload in enumerate(POOL_PAYLOADS)
    ]
    jwt = await client.create_jwt({"sub": "someone"}, use_static_signing_key=False)
    header = json.loads(base64.urlsafe_b64decode(sessions[0].access_token.split(".")[0] + "=="))
    page_tokens = []
    for session in sessions:  # one session each: a page of one has a next token
        page = await client.list_sessions(session.user_id, page_size=1)
        assert page.next_page_token is not None
        page_tokens.append(page.next_page_token)
    return Pool(tuple(sessions), jwt, header["kid"], tuple(page_tokens))


async def assert_witnesses_intact(client: SessionClient, witnesses: list[Witness]) -> None:
    for witness in witnesses:
        session = witness.session
        verified = await client.get_session(
            session.access_token, session.anti_csrf_token, check_database=True
        )
        assert verified is not None
        assert verified.session_handle == session.session_handle
        assert verified.user_id == session.user_id
        assert custom_claims(verified.access_token_payload) == witness.payload
        info = await client.get_session_information(session.session_handle)
        assert info is not None
        assert info.user_id == session.user_id
        assert info.session_data_in_database == witness.data
        assert info.custom_claims_in_access_token_payload == witness.payload
        assert info.expiry == session.refresh_token_expiry
        handles = await client.get_all_session_handles_for_user(session.user_id)
        assert handles == [session.session_handle]
        assert session.refresh_token is not None
        refreshed = await client.refresh_session(session.refresh_token, session.anti_csrf_token)
        assert refreshed.session_handle == session.session_handle
        assert custom_claims(refreshed.access_token_payload) == witness.payload
        again = await client.get_session(
            refreshed.access_token, refreshed.anti_csrf_token, check_database=True
        )
        assert again is not None and again.session_handle == session.session_handle


async def assert_still_serves(client: SessionClient) -> None:
    created = await client.create_new_session(f"after-{uuid.uuid4()}", {"n": 1}, {"d": 2})
    verified = await client.get_session(
        created.access_token, created.anti_csrf_token, check_database=True
    )
    assert verified is not None and verified.access_token_payload["n"] == 1
    assert created.refresh_token is not None
    refreshed = await client.refresh_session(created.refresh_token, created.anti_csrf_token)
    assert refreshed.refresh_token not in (None, created.refresh_token)
    again = await client.get_session(
        refreshed.access_token, refreshed.anti_csrf_token, check_database=True
    )
    assert again is not None and again.session_handle == created.session_handle


# --- the tests ------------------------------------------------------------------------------


def fuzzer(
    caller: Caller,
    method: pb_descriptor.MethodDescriptor,
    strategy: st.SearchStrategy[Any],
    typed: bool,
) -> Callable[[], None]:
    @FUZZ_SETTINGS
    @given(item=strategy)
    def fuzz(item: Any) -> None:
        if typed:
            caller.typed(method, item)
        else:
            caller.raw(method, item)

    if LONG_RUN:
        return fuzz
    # The suite replays the same examples every run, different ones for each method.
    return seed(zlib.crc32(f"{method.name} {typed}".encode()))(fuzz)


async def fuzz_every_method(
    server: RunningServer,
    client: SessionClient,
    caplog: pytest.LogCaptureFixture,
    make_strategy: Callable[[pb_descriptor.MethodDescriptor, Pool], st.SearchStrategy[Any]],
    typed: bool,
) -> None:
    """Fuzz each RPC in turn on one server, then check that it still serves and
    lost nothing. Every problem is reported, not only the first."""
    caplog.set_level(logging.WARNING)
    witnesses = await create_witnesses(client)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    problems: list[Exception] = []
    try:
        for method in SERVICE.methods:
            # A new pool for each method: the previous one may be revoked by now.
            caller = Caller(channel, await create_pool(client))
            strategy = make_strategy(method, caller.pool)

            fuzz = fuzzer(caller, method, strategy, typed)

            try:
                await asyncio.to_thread(fuzz)
                assert caller.calls > 0, f"{method.name} was never called"
            except Exception as problem:
                problem.add_note(f"while fuzzing {method.name}")
                problems.append(problem)
    finally:
        channel.close()
    if not problems:  # an INTERNAL above is logged too: no need to say it twice
        errors = {
            r.getMessage()
            + (f" ({type(r.exc_info[1]).__name__})" if r.exc_info and r.exc_info[1] else "")
            for r in caplog.records
            if r.levelno >= logging.ERROR
        }
        if errors:
            problems.append(AssertionError(f"the server logged errors: {sorted(errors)}"))
    for check in (assert_witnesses_intact(client, witnesses), assert_still_serves(client)):
        try:
            await check
        except Exception as problem:
            problem.add_note("after the fuzzing")
            problems.append(problem)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise ExceptionGroup(f"{len(problems)} problems", problems)


def typed_requests(
    method: pb_descriptor.MethodDescriptor, pool: Pool
) -> st.SearchStrategy[dict[str, Any]]:
    return message_strategy(method.input_type, pool)


def raw_requests(
    method: pb_descriptor.MethodDescriptor, pool: Pool
) -> st.SearchStrategy[RawBytes | Mutated]:
    return st.one_of(
        st.binary(max_size=4096).map(RawBytes),
        wire_message(method.input_type).map(RawBytes),
        st.builds(Mutated, message_strategy(method.input_type, pool), MUTATIONS),
    )


@pytest.fixture
def database_url(any_database_url: str) -> str:
    """Both backends: an input PostgreSQL cannot store (NUL, say) must not reach it."""
    return any_database_url


@pytest.fixture
async def fuzz_server(start: Callable[..., Any]) -> RunningServer:
    # VIA_TOKEN: anti-CSRF tokens are issued and checked, the most code to reach.
    server: RunningServer = await start(anti_csrf="VIA_TOKEN")
    return server


async def test_typed_requests_to_every_rpc_never_break_the_authority(
    fuzz_server: RunningServer,
    connect: Callable[..., SessionClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with connect(fuzz_server) as client:
        await fuzz_every_method(fuzz_server, client, caplog, typed_requests, typed=True)


async def test_raw_bytes_to_every_rpc_never_break_the_authority(
    fuzz_server: RunningServer,
    connect: Callable[..., SessionClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with connect(fuzz_server) as client:
        await fuzz_every_method(fuzz_server, client, caplog, raw_requests, typed=False)
