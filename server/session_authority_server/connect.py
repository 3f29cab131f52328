"""SessionService on the HTTP listener: Connect (JSON and binary, unary and
server-streaming) and gRPC-Web, by the official ``connectrpc`` runtime, at the
gRPC paths (POST /session_authority.v1.SessionService/CreateNewSession).

connectrpc speaks the protocols; this module only hands it the servicer's
methods (service.py, the ones gRPC calls) with the Connect side of the gate:
``ConnectCall`` (who the caller is, from the TCP peer and the HTTP headers) and
``connect_error`` (a SessionError as a ConnectError: the Connect code of the same
gRPC status code, the message, and the same google.rpc details as gRPC sends).
The endpoints are built from the proto's descriptor, as service.register builds
gRPC's, so the google.protobuf classes stay the only generated code.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, NoReturn

from connectrpc.code import Code
from connectrpc.errors import ConnectError, ErrorDetail
from connectrpc.method import IdempotencyLevel, MethodInfo, StreamType
from connectrpc.request import RequestContext
from connectrpc.server import ConnectASGIApplication, Endpoint
from google.protobuf import descriptor_pb2, json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2
from protobuf.wkt import Any as AnyDetail
from protobuf.wkt import FileDescriptorSet
from protobuf.wkt.google.protobuf import descriptor_pb
from session_authority.errors import SessionError, status_code_for
from session_authority.v1 import session_service_pb2 as pb
from session_authority.wire import status_details

from .rpc_gate import DeferredRequest, UndecodableRequest
from .service import CONVERT_OFF_LOOP_BYTES, SessionServicer

SERVICE = pb.DESCRIPTOR.services_by_name["SessionService"]
# Where the service's methods are: /session_authority.v1.SessionService/<Method>.
SERVICE_PATH = f"/{SERVICE.full_name}"
CONNECT = "connect"
GRPC_WEB = "grpc-web"
_GRPC_WEB_CONTENT_TYPE = "application/grpc-web"
_TYPE_URL_PREFIX = "type.googleapis.com/"
# connectrpc spells gRPC's CANCELLED with one L, as the Connect protocol does.
_CONNECT_CODES = {"CANCELLED": Code.CANCELED} | {code.name: code for code in Code}


def _json_name(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _descriptor_set(*files: Any) -> FileDescriptorSet:
    """protobuf-py's view of google.protobuf file descriptors (dependencies first)."""
    ordered: list[descriptor_pb.FileDescriptorProto] = []
    seen: set[str] = set()

    def add(file: Any) -> None:
        if file.name in seen:
            return
        seen.add(file.name)
        for dependency in file.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        messages = list(proto.message_type)
        while messages:  # CopyToProto leaves json_name out; protoc's rule
            message = messages.pop()
            messages.extend(message.nested_type)
            for field in message.field:
                field.json_name = field.json_name or _json_name(field.name)
        ordered.append(descriptor_pb.FileDescriptorProto.from_binary(proto.SerializeToString()))

    for file in files:
        add(file)
    return FileDescriptorSet(file=ordered)


# connectrpc runs on protobuf-py; with descriptors of our details it adds each
# one's JSON ("debug") to a Connect error, beside the base64 bytes, so that a JSON
# caller reads the reason without protobuf (the bytes are what clients decode).
_DETAILS = _descriptor_set(error_details_pb2.DESCRIPTOR, pb.DESCRIPTOR).to_registry()


def _error_detail(detail: Message) -> ErrorDetail:
    packed = AnyDetail(
        type_url=_TYPE_URL_PREFIX + detail.DESCRIPTOR.full_name, value=detail.SerializeToString()
    )
    described = _DETAILS.message(detail.DESCRIPTOR.full_name)
    unpacked = None if described is None else packed.unpack(described)
    return ErrorDetail(packed if unpacked is None else unpacked)


def connect_error(error: SessionError) -> ConnectError:
    """The ConnectError for a SessionError: what wire.rich_status is to gRPC."""
    details = [_error_detail(detail) for detail in status_details(error)]
    return ConnectError(_CONNECT_CODES[status_code_for(error).name], error.message, details)


def grpc_peer(client_address: str | None) -> str:
    """connectrpc's "host:port" (from the ASGI scope's client: the TCP peer) as
    gRPC spells a peer, which is what auth.is_loopback reads."""
    if not client_address:
        return ""
    host, _, port = client_address.rpartition(":")
    if ":" in host:
        return f"ipv6:[{host.strip('[]')}]:{port}"
    return f"ipv4:{host}:{port}"


class ConnectCall:
    """The Connect adapter of the gate: a connectrpc RequestContext as a Call."""

    __slots__ = ("_context", "transport")

    def __init__(self, context: RequestContext[Any, Any]) -> None:
        self._context = context
        content_type = context.request_headers.get("content-type", "")
        self.transport = GRPC_WEB if content_type.startswith(_GRPC_WEB_CONTENT_TYPE) else CONNECT

    def peer(self) -> str:
        return grpc_peer(self._context.client_address)

    def invocation_metadata(self) -> Sequence[tuple[str, Any]]:
        return tuple(self._context.request_headers.allitems())  # names in lower case

    async def fail(self, error: SessionError) -> NoReturn:
        raise connect_error(error)


# --- codecs: google.protobuf messages; an undecodable request reaches the gate -----------


class BinaryCodec:
    """The binary protobuf codec ("proto"), as gRPC's deserializer in service.py:
    a request that does not decode becomes an UndecodableRequest, which the gate
    refuses (INVALID_ARGUMENT with our details) after authenticating the caller."""

    def name(self) -> str:
        return "proto"

    def encode(self, message: Message) -> bytes:
        return message.SerializeToString()

    def decode(self, data: bytes | bytearray, message_class: type[Message]) -> Any:
        try:
            return message_class.FromString(bytes(data))
        except DecodeError:
            return UndecodableRequest()


_MAX_SAFE_INTEGER = 2**53
# Proto JSON is parsed in Python (about 2 us a value): a body larger than this
# is parsed after authentication on a worker thread (rpc_gate.DeferredRequest),
# as service.py converts large Structs.
DECODE_OFF_LOOP_BYTES = CONVERT_OFF_LOOP_BYTES


def _whole_numbers(value: Any) -> Any:
    """Struct numbers are doubles, which MessageToDict gives as floats ("iat":
    1796108198.0): whole ones are written as integers, as JavaScript and
    protojson write them. JSON has one number type, so nothing changes but the
    spelling."""
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) <= _MAX_SAFE_INTEGER else value
    if isinstance(value, dict):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    return value


_FIELD = re.compile(r"Failed to parse (\w+) field")


class JsonCodec:
    """Proto JSON ("json"): lowerCamelCase names, Structs as JSON objects,
    Timestamps as RFC 3339 strings. Responses are compact and show fields that
    hold their default (`"revoked": false` rather than nothing). Unknown fields
    are ignored, as in binary protobuf and Connect's other runtimes."""

    def name(self) -> str:
        return "json"

    def encode(self, message: Message) -> bytes:
        document = json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
        return json.dumps(
            _whole_numbers(document), ensure_ascii=False, separators=(",", ":")
        ).encode()

    def decode(self, data: bytes | bytearray, message_class: type[Message]) -> Any:
        body = bytes(data)
        if len(body) > DECODE_OFF_LOOP_BYTES:
            return DeferredRequest(lambda: self._parse(body, message_class))
        return self._parse(body, message_class)

    @staticmethod
    def _parse(body: bytes, message_class: type[Message]) -> Any:
        message = message_class()
        try:
            json_format.Parse(body, message, ignore_unknown_fields=True)
        except (json_format.ParseError, ValueError, RecursionError) as error:
            # The parser's own words may quote the value, which may be a token: only
            # the field's path is passed on.
            path = ".".join(_FIELD.findall(str(error)))
            if path:
                return UndecodableRequest(
                    f"{path}: not a valid value for this field in proto JSON", field=path
                )
            return UndecodableRequest(
                f"the request is not a JSON object of {message_class.DESCRIPTOR.name}"
            )
        return message


# --- the ASGI application ------------------------------------------------------------------


def _method_info(method: Any) -> MethodInfo[Any, Any]:
    return MethodInfo(
        name=method.name,
        service_name=SERVICE.full_name,
        input=getattr(pb, method.input_type.name),
        output=getattr(pb, method.output_type.name),
        idempotency_level=IdempotencyLevel.UNKNOWN,
        stream_type=StreamType.SERVER_STREAM if method.server_streaming else StreamType.UNARY,
    )


def _endpoint(method: Any, gated: Callable[..., Any]) -> Any:
    info = _method_info(method)
    if method.server_streaming:

        def stream(request: Any, context: RequestContext[Any, Any]) -> AsyncIterator[Any]:
            responses: AsyncIterator[Any] = gated(request, ConnectCall(context))
            return responses

        return Endpoint.server_stream(info, stream)

    async def unary(request: Any, context: RequestContext[Any, Any]) -> Any:
        return await gated(request, ConnectCall(context))

    return Endpoint.unary(info, unary)


def endpoints(servicer: SessionServicer) -> Mapping[str, Any]:
    """Every method of the proto's SessionService, at /<service>/<method>."""
    return {
        f"{SERVICE_PATH}/{method.name}": _endpoint(method, getattr(servicer, method.name))
        for method in SERVICE.methods
    }


class SessionServiceApplication(ConnectASGIApplication[SessionServicer]):
    """The servicer as an ASGI application (Connect, gRPC-Web)."""

    @property
    def path(self) -> str:
        return SERVICE_PATH


def connect_application(
    servicer: SessionServicer, *, max_message_bytes: int
) -> SessionServiceApplication:
    """The ASGI application serving the servicer; request messages beyond
    max_message_bytes (after decompression) are refused RESOURCE_EXHAUSTED, as
    gRPC refuses them."""
    return SessionServiceApplication(
        service=servicer,
        endpoints=endpoints,
        read_max_bytes=max_message_bytes,
        codecs=[BinaryCodec(), JsonCodec()],
    )
