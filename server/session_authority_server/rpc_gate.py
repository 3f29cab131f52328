"""The one way in and out of every RPC, unary or streaming, whichever transport
carries it: the caller is authenticated, an undecodable request is refused, the
call is counted and timed, and whatever it raises leaves as the error of the
error table (session_authority.errors). Anything unexpected is INTERNAL: logged
here with its traceback, sent with a generic message.

The core (RpcGate, and the ``unary`` and ``server_stream`` decorators of the
servicer's methods) knows no transport. A transport hands each call a ``Call``:
who the caller is (``peer``, ``invocation_metadata``) and how an error leaves
(``fail``). ``GrpcCall`` below is gRPC's (a google.rpc.Status through
abort_with_status); connect.py has the one of the HTTP listener (Connect and
gRPC-Web).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, NoReturn, Protocol, TypeVar

from google.protobuf.message import DecodeError
from session_authority.errors import (
    InternalServerError,
    InvalidArgumentError,
    SessionError,
    StorageUnavailableError,
    status_code_for,
)
from session_authority.wire import rich_status

from .auth import CallerAuthenticator
from .metrics import Metrics
from .storage.base import StorageUnavailable

log = logging.getLogger(__name__)

Servicer = TypeVar("Servicer", bound="Gated")
Request = TypeVar("Request")
Response = TypeVar("Response")

GRPC = "grpc"


class Call(Protocol):
    """One call, as the gate sees it, whatever its transport."""

    @property
    def transport(self) -> str:
        """The transport's name, a metrics label: grpc, connect or grpc-web."""
        ...

    def peer(self) -> str:
        """The caller's address as gRPC spells it: "ipv4:1.2.3.4:5", "ipv6:[::1]:5"."""
        ...

    def invocation_metadata(self) -> Sequence[tuple[str, Any]]:
        """The request's metadata (HTTP headers), names in lower case."""
        ...

    async def fail(self, error: SessionError) -> NoReturn:
        """End the call with the error, as this transport sends errors."""
        ...


class GrpcCall:
    """The gRPC adapter: a grpc.aio.ServicerContext as a Call."""

    __slots__ = ("_context",)
    transport = GRPC

    def __init__(self, context: Any) -> None:  # grpc.aio.ServicerContext (untyped)
        self._context = context

    def peer(self) -> str:
        return str(self._context.peer() or "")

    def invocation_metadata(self) -> Sequence[tuple[str, Any]]:
        return tuple(self._context.invocation_metadata() or ())

    async def fail(self, error: SessionError) -> NoReturn:
        await self._context.abort_with_status(rich_status(error))
        raise AssertionError("abort_with_status returned")


class UndecodableRequest:
    """Stands in for a request whose bytes are not a valid message (bad UTF-8 in a
    string field, say, or JSON that is not the message's), so the RPC can answer
    INVALID_ARGUMENT, after authenticating the caller, rather than the INTERNAL
    that grpcio sends when a deserializer raises."""

    __slots__ = ("field", "message")

    def __init__(
        self,
        message: str = "the request is not a valid message (a string field is not UTF-8?)",
        field: str = "request",
    ) -> None:
        self.message = message
        self.field = field


class DeferredRequest:
    """Stands in for a request whose decoding is costly (a large JSON body: proto
    JSON is parsed in Python, seconds for 4 MiB of small values): the gate
    finishes it once the caller is authenticated, on a worker thread, so the
    event loop serves other calls meanwhile. decode returns the message or an
    UndecodableRequest."""

    __slots__ = ("_decode",)

    def __init__(self, decode: Callable[[], Any]) -> None:
        self._decode = decode

    async def decode(self) -> Any:
        return await asyncio.to_thread(self._decode)


def lenient(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """A request deserializer that never raises (see UndecodableRequest)."""

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError:
            return UndecodableRequest()

    return deserialize


class RpcGate:
    def __init__(self, authenticator: CallerAuthenticator, metrics: Metrics) -> None:
        self._authenticator = authenticator
        self._metrics = metrics

    async def admit(self, name: str, request: Any, call: Call) -> Any:
        """The request, once the caller is authenticated and it is decoded."""
        self._metrics.rpc_started(name, call.transport)
        self._authenticator.check(call)
        if isinstance(request, DeferredRequest):
            request = await request.decode()
        if isinstance(request, UndecodableRequest):
            raise InvalidArgumentError(request.message, field=request.field)
        return request

    def succeeded(self, name: str, call: Call, started: float) -> None:
        self._metrics.observe_rpc(name, "OK", time.perf_counter() - started)

    def failed(self, name: str, call: Call, started: float, exception: Exception) -> SessionError:
        """The error to send for what a call raised, counted."""
        if isinstance(exception, SessionError):
            error = exception
        elif isinstance(exception, StorageUnavailable):
            log.warning("%s: storage unavailable: %s", name, exception)
            error = StorageUnavailableError("the session store is unavailable; retry later")
        else:
            log.error("%s failed unexpectedly", name, exc_info=exception)
            error = InternalServerError("internal error")
        self._metrics.observe_rpc(name, status_code_for(error).name, time.perf_counter() - started)
        return error


class Gated:
    """A servicer whose methods pass through its gate."""

    gate: RpcGate


def unary(
    method: Callable[[Servicer, Request, Call], Awaitable[Response]],
) -> Callable[[Servicer, Request, Call], Awaitable[Response]]:
    name = method.__name__

    @functools.wraps(method)
    async def gated(self: Servicer, request: Request, call: Call) -> Response:
        started = time.perf_counter()
        try:
            request = await self.gate.admit(name, request, call)
            response = await method(self, request, call)
        except Exception as exception:
            error = self.gate.failed(name, call, started, exception)
        else:
            self.gate.succeeded(name, call, started)
            return response
        await call.fail(error)

    return gated


def server_stream(
    method: Callable[[Servicer, Request, Call], AsyncIterator[Response]],
) -> Callable[[Servicer, Request, Call], AsyncIterator[Response]]:
    name = method.__name__

    @functools.wraps(method)
    async def gated(self: Servicer, request: Request, call: Call) -> AsyncIterator[Response]:
        started = time.perf_counter()
        try:
            request = await self.gate.admit(name, request, call)
            async for response in method(self, request, call):
                yield response
        except Exception as exception:
            error = self.gate.failed(name, call, started, exception)
        else:
            self.gate.succeeded(name, call, started)
            return
        await call.fail(error)

    return gated


# --- the gRPC adapter: grpc.aio handlers over the gated methods -------------------------


def grpc_unary(
    method: Callable[[Request, Call], Awaitable[Response]],
) -> Callable[[Request, Any], Awaitable[Response]]:
    async def handle(request: Request, context: Any) -> Response:
        return await method(request, GrpcCall(context))

    return handle


def grpc_server_stream(
    method: Callable[[Request, Call], AsyncIterator[Response]],
) -> Callable[[Request, Any], AsyncIterator[Response]]:
    async def handle(request: Request, context: Any) -> AsyncIterator[Response]:
        async for response in method(request, GrpcCall(context)):
            yield response

    return handle
