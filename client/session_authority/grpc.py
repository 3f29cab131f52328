"""Protecting a grpc.aio service with sessions, as ``verifySession`` does for HTTP.

    server = grpc.aio.server(interceptors=[SessionInterceptor(sessions)])

    class Orders(OrdersServicer):
        async def List(self, request, context):
            session = current_session()          # verified before the handler runs
            ...

        @session_options(public=True)
        async def Health(self, request, context): ...

        @session_options(claim_validators=[UserRoleClaim.validators.includes("admin")])
        async def Delete(self, request, context): ...

The access token comes from ``authorization: Bearer <token>`` metadata, the
anti-CSRF token from ``anti-csrf``. When verification re-mints the token (a
claim was refetched), the new one goes back in ``access-token`` initial
metadata. Failures end the call the way the authority ends its own:
UNAUTHENTICATED with reason TRY_REFRESH_TOKEN (refresh and retry) or
UNAUTHORISED (log in again), PERMISSION_DENIED with INVALID_CLAIMS. Callers
attach tokens with :func:`session_metadata` or :func:`session_call_interceptors`,
and turn a refused call back into its SessionError with ``error_from_rpc_error``.
"""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from .client import SessionClient
from .errors import SessionError, UnauthorisedError
from .global_validators import OverrideValidators
from .session import SessionContainer
from .wire import error_from_rpc_error as error_from_rpc_error  # for callers of services
from .wire import rich_status

F = TypeVar("F", bound=Callable[..., Any])

_current: contextvars.ContextVar[SessionContainer | None] = contextvars.ContextVar(
    "session_authority_current_session", default=None
)


def current_session() -> SessionContainer | None:
    """The session verified for the call being handled (None for public methods,
    or when no session is required and none was sent)."""
    return _current.get()


@dataclass(frozen=True)
class SessionOptions:
    """How one method is protected; unset fields take the interceptor's defaults."""

    public: bool = False
    session_required: bool | None = None
    anti_csrf_check: bool | None = None
    check_database: bool | None = None
    claim_validators: OverrideValidators | None = None


def session_options(**options: Any) -> Callable[[F], F]:
    """Decorate a servicer method with its own SessionOptions."""
    chosen = SessionOptions(**options)

    def mark(method: F) -> F:
        method.__session_options__ = chosen  # type: ignore[attr-defined]
        return method

    return mark


def session_metadata(
    access_token: str, anti_csrf_token: str | None = None
) -> tuple[tuple[str, str], ...]:
    """Metadata that carries a session to a protected service."""
    metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {access_token}"),)
    if anti_csrf_token is not None:
        metadata += (("anti-csrf", anti_csrf_token),)
    return metadata


class SessionInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Verifies the caller's session before each protected method runs.

    ``methods`` maps full method names ("/pkg.Service/Method") to options, and
    ``session_options`` on a servicer method does the same; the decorator wins.
    """

    def __init__(
        self,
        client: SessionClient,
        *,
        session_required: bool = True,
        anti_csrf_check: bool = False,
        check_database: bool = False,
        claim_validators: OverrideValidators | None = None,
        methods: Mapping[str, SessionOptions] | None = None,
    ) -> None:
        self._client = client
        self._defaults = SessionOptions(
            public=False,
            session_required=session_required,
            anti_csrf_check=anti_csrf_check,
            check_database=check_database,
            claim_validators=claim_validators,
        )
        self._methods = dict(methods or {})

    def _options(self, method_name: str, behaviour: Any) -> SessionOptions:
        chosen = getattr(behaviour, "__session_options__", None) or self._methods.get(method_name)
        if chosen is None:
            return self._defaults
        merged = {
            f.name: getattr(chosen, f.name)
            if getattr(chosen, f.name) is not None
            else getattr(self._defaults, f.name)
            for f in dataclasses.fields(SessionOptions)
        }
        return SessionOptions(**merged)

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        kind, behaviour = _behaviour(handler)
        options = self._options(handler_call_details.method, behaviour)
        if options.public:
            return handler

        async def verify(context: Any) -> contextvars.Token[SessionContainer | None]:
            access_token, anti_csrf = _tokens(context.invocation_metadata())
            try:
                session = await self._client.get_session(
                    access_token,
                    anti_csrf,
                    anti_csrf_check=options.anti_csrf_check,
                    session_required=bool(options.session_required),
                    check_database=bool(options.check_database),
                    override_global_claim_validators=options.claim_validators,
                )
            except SessionError as error:
                if isinstance(error, UnauthorisedError) and not access_token:
                    error = UnauthorisedError(
                        "this method needs a session: send authorization: Bearer <token>",
                        clear_tokens=False,
                    )
                await context.abort_with_status(rich_status(error))
                raise AssertionError("abort_with_status returned") from error
            if session is not None and access_token and session.access_token != access_token:
                # A claim was refetched and the token re-minted: hand it back.
                await context.send_initial_metadata(
                    ((NEW_ACCESS_TOKEN_METADATA, session.access_token),)
                )
            return _current.set(session)

        if kind == "unary_unary" or kind == "stream_unary":

            async def unary_response(request: Any, context: Any) -> Any:
                token = await verify(context)
                try:
                    return await behaviour(request, context)
                finally:
                    _current.reset(token)

            wrapped = unary_response
        else:

            async def streaming_response(request: Any, context: Any) -> Any:
                token = await verify(context)
                try:
                    async for response in behaviour(request, context):
                        yield response
                finally:
                    _current.reset(token)

            wrapped = streaming_response
        return _rebuild(handler, kind, wrapped)


_KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


def _behaviour(handler: Any) -> tuple[str, Any]:
    for kind in _KINDS:
        behaviour = getattr(handler, kind)
        if behaviour is not None:
            return kind, behaviour
    raise ValueError("an RPC handler without behaviour")


def _rebuild(handler: Any, kind: str, behaviour: Any) -> Any:
    factory = getattr(grpc, f"{kind}_rpc_method_handler")
    return factory(
        behaviour,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _tokens(metadata: Sequence[tuple[str, Any]] | None) -> tuple[str | None, str | None]:
    access_token = anti_csrf = None
    for key, value in metadata or ():
        if not isinstance(value, str):
            continue
        if key == "authorization":
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                access_token = token.strip()
        elif key == "anti-csrf":
            anti_csrf = value
    return access_token, anti_csrf


# Metadata in which a protected service returns a re-minted access token (after a
# claim was refetched); SessionCallInterceptor hands it to on_new_access_token.
NEW_ACCESS_TOKEN_METADATA = "access-token"  # noqa: S105 (a metadata key, not a secret)

TokenSource = Callable[[], tuple[str | None, str | None]]


class _AttachesSession:
    def __init__(
        self,
        tokens: TokenSource,
        on_new_access_token: Callable[[str], None] | None = None,
    ) -> None:
        self._tokens = tokens
        self._on_new_access_token = on_new_access_token

    def _with_session(self, call_details: Any) -> Any:
        access_token, anti_csrf = self._tokens()
        if not access_token:
            return call_details
        metadata = grpc.aio.Metadata(*(call_details.metadata or ()))
        for key, value in session_metadata(access_token, anti_csrf):
            metadata.add(key, value)
        return call_details._replace(metadata=metadata)

    async def _watch_for_new_token(self, call: Any) -> None:
        if self._on_new_access_token is None:
            return
        for key, value in await call.initial_metadata() or ():
            if key == NEW_ACCESS_TOKEN_METADATA and isinstance(value, str):
                self._on_new_access_token(value)


class SessionCallInterceptor(
    _AttachesSession,
    grpc.aio.UnaryUnaryClientInterceptor,  # type: ignore[misc]
):
    """Client side: attaches the current access token to every outgoing unary call.

    ``tokens`` returns (access_token, anti_csrf_token) at call time, so a caller
    that refreshes its session changes what the next call sends. For every kind
    of call on a channel use :func:`session_call_interceptors`."""

    async def intercept_unary_unary(
        self, continuation: Callable[[Any, Any], Awaitable[Any]], call_details: Any, request: Any
    ) -> Any:
        call = await continuation(self._with_session(call_details), request)
        await self._watch_for_new_token(call)
        return call


class _UnaryStream(_AttachesSession, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(
        self, continuation: Callable[[Any, Any], Awaitable[Any]], call_details: Any, request: Any
    ) -> Any:
        return await continuation(self._with_session(call_details), request)


class _StreamUnary(_AttachesSession, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_unary(
        self, continuation: Callable[[Any, Any], Awaitable[Any]], call_details: Any, requests: Any
    ) -> Any:
        return await continuation(self._with_session(call_details), requests)


class _StreamStream(_AttachesSession, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_stream(
        self, continuation: Callable[[Any, Any], Awaitable[Any]], call_details: Any, requests: Any
    ) -> Any:
        return await continuation(self._with_session(call_details), requests)


def session_call_interceptors(
    tokens: TokenSource, on_new_access_token: Callable[[str], None] | None = None
) -> list[Any]:
    """Interceptors for ``grpc.aio.insecure_channel(..., interceptors=...)`` that
    attach the session to calls of every kind (grpc.aio registers one class per
    kind). ``on_new_access_token`` receives a token the service re-minted."""
    return [
        SessionCallInterceptor(tokens, on_new_access_token),
        _UnaryStream(tokens, on_new_access_token),
        _StreamUnary(tokens, on_new_access_token),
        _StreamStream(tokens, on_new_access_token),
    ]
