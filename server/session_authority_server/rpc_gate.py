"""The one way in and out of every RPC, unary or streaming: the caller is
authenticated, an undecodable request is refused, the call is counted and timed,
and whatever it raises leaves as a google.rpc.Status per the error table
(session_authority.errors). Anything unexpected is INTERNAL: logged here with its
traceback, sent with a generic message."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
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
Context = Any  # grpc.aio.ServicerContext; grpcio ships no type information


class UndecodableRequest:
    """Stands in for a request whose bytes are not a valid message (bad UTF-8 in a
    string field, say), so the RPC can answer INVALID_ARGUMENT rather than the
    INTERNAL that grpcio sends when a deserializer raises."""


def lenient(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """A request deserializer that never raises (see UndecodableRequest)."""

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError:
            return UndecodableRequest()

    return deserialize


async def abort_with_error(context: Context, error: SessionError) -> NoReturn:
    await context.abort_with_status(rich_status(error))
    raise AssertionError("abort_with_status returned")


class RpcGate:
    def __init__(self, authenticator: CallerAuthenticator, metrics: Metrics) -> None:
        self._authenticator = authenticator
        self._metrics = metrics

    def admit(self, request: object, context: Context) -> None:
        self._authenticator.check(context)
        if isinstance(request, UndecodableRequest):
            raise InvalidArgumentError(
                "the request is not a valid message (a string field is not UTF-8?)",
                field="request",
            )

    def succeeded(self, name: str, started: float) -> None:
        self._metrics.observe_rpc(name, "OK", time.perf_counter() - started)

    def failed(self, name: str, started: float, exception: Exception) -> SessionError:
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
    method: Callable[[Servicer, Request, Context], Awaitable[Response]],
) -> Callable[[Servicer, Request, Context], Awaitable[Response]]:
    name = method.__name__

    @functools.wraps(method)
    async def gated(self: Servicer, request: Request, context: Context) -> Response:
        started = time.perf_counter()
        try:
            self.gate.admit(request, context)
            response = await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exception:
            error = self.gate.failed(name, started, exception)
        else:
            self.gate.succeeded(name, started)
            return response
        await abort_with_error(context, error)

    return gated


def server_stream(
    method: Callable[[Servicer, Request, Context], AsyncIterator[Response]],
) -> Callable[[Servicer, Request, Context], AsyncIterator[Response]]:
    name = method.__name__

    @functools.wraps(method)
    async def gated(self: Servicer, request: Request, context: Context) -> AsyncIterator[Response]:
        started = time.perf_counter()
        try:
            self.gate.admit(request, context)
            async for response in method(self, request, context):
                yield response
        except grpc.aio.AbortError:
            raise
        except Exception as exception:
            error = self.gate.failed(name, started, exception)
        else:
            self.gate.succeeded(name, started)
            return
        await abort_with_error(context, error)

    return gated
