"""session_authority.grpc against the real authority: a small downstream grpc.aio
service (generic handlers, JSON payloads) protected by SessionInterceptor, called
with session metadata or through SessionCallInterceptor. Time only moves through
the shared manual clock."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from session_authority import (
    ClaimValidationError,
    InvalidClaimsError,
    PrimitiveArrayClaim,
    SessionClient,
    SessionContainer,
    SessionError,
    UnauthorisedError,
)
from session_authority.grpc import (
    SessionCallInterceptor,
    SessionInterceptor,
    SessionOptions,
    current_session,
    error_from_rpc_error,
    session_call_interceptors,
    session_metadata,
    session_options,
)
from session_authority.wire import error_info
from session_authority_server.app import RunningServer

from .conftest import ManualClock

Start = Callable[..., Awaitable[RunningServer]]
Connect = Callable[..., SessionClient]

SERVICE = "demo.v1.Orders"
ACCESS_TOKEN_VALIDITY_S = 3600

Roles = PrimitiveArrayClaim("st-role", lambda user_id, payload: None)
ADMINS_ONLY = [Roles.validators.includes("admin")]


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def _loads(data: bytes) -> Any:
    return json.loads(data) if data else None


def _who() -> dict[str, Any]:
    session = current_session()
    if session is None:
        return {"session": None}
    return {"session": {"user": session.user_id, "handle": session.session_handle}}


@dataclass
class Orders:
    """The downstream service: what its handlers saw, for the assertions."""

    seen: list[SessionContainer | None] = field(default_factory=list)

    @session_options(public=True)
    async def health(self, request: Any, context: Any) -> Any:
        self.seen.append(current_session())
        return {"ok": True, **_who()}

    async def catalogue(self, request: Any, context: Any) -> Any:
        # Public through the interceptor's methods= mapping, not a decorator.
        self.seen.append(current_session())
        return {"items": ["tea", "cake"], **_who()}

    async def whoami(self, request: Any, context: Any) -> Any:
        self.seen.append(current_session())
        return _who()

    @session_options(session_required=False)
    async def maybe(self, request: Any, context: Any) -> Any:
        self.seen.append(current_session())
        return _who()

    @session_options(claim_validators=ADMINS_ONLY)
    async def delete(self, request: Any, context: Any) -> Any:
        self.seen.append(current_session())
        return {"deleted": request["id"], **_who()}

    @session_options(check_database=True)
    async def pay(self, request: Any, context: Any) -> Any:
        self.seen.append(current_session())
        return {"paid": request["amount"], **_who()}

    async def transfer(self, request: Any, context: Any) -> Any:
        # check_database through the methods= mapping.
        self.seen.append(current_session())
        return {"transferred": request["amount"], **_who()}

    @session_options(anti_csrf_check=True)
    async def update(self, request: Any, context: Any) -> Any:
        self.seen.append(current_session())
        return _who()

    async def history(self, request: Any, context: Any) -> AsyncIterator[Any]:
        for n in range(request["count"]):
            self.seen.append(current_session())
            yield {"n": n, **_who()}

    def handler(self) -> grpc.GenericRpcHandler:
        def unary(behaviour: Any) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(
                behaviour, request_deserializer=_loads, response_serializer=_dumps
            )

        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Health": unary(self.health),
                "Catalogue": unary(self.catalogue),
                "Whoami": unary(self.whoami),
                "Maybe": unary(self.maybe),
                "Delete": unary(self.delete),
                "Pay": unary(self.pay),
                "Transfer": unary(self.transfer),
                "Update": unary(self.update),
                "History": grpc.unary_stream_rpc_method_handler(
                    self.history, request_deserializer=_loads, response_serializer=_dumps
                ),
            },
        )


METHODS = {
    f"/{SERVICE}/Catalogue": SessionOptions(public=True),
    f"/{SERVICE}/Transfer": SessionOptions(check_database=True),
}


@dataclass
class Downstream:
    orders: Orders
    server: grpc.aio.Server
    target: str


@pytest.fixture
async def serve_downstream() -> AsyncIterator[Callable[..., Awaitable[Downstream]]]:
    """serve_downstream(client, **interceptor options) -> the Orders service, protected
    by SessionInterceptor (stopped at teardown)."""
    servers: list[grpc.aio.Server] = []

    async def serve(client: SessionClient, **options: Any) -> Downstream:
        options.setdefault("methods", METHODS)
        orders = Orders()
        server = grpc.aio.server(interceptors=[SessionInterceptor(client, **options)])
        server.add_generic_rpc_handlers((orders.handler(),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        return Downstream(orders, server, f"127.0.0.1:{port}")

    yield serve
    for server in servers:
        await server.stop(None)


ServeDownstream = Callable[..., Awaitable[Downstream]]


class Caller:
    """A channel to the downstream service with one callable per method."""

    def __init__(self, target: str, interceptors: Sequence[Any] = ()) -> None:
        self.channel = grpc.aio.insecure_channel(target, interceptors=list(interceptors))

    def unary(self, method: str) -> Any:
        return self.channel.unary_unary(
            f"/{SERVICE}/{method}", request_serializer=_dumps, response_deserializer=_loads
        )

    def stream(self, method: str) -> Any:
        return self.channel.unary_stream(
            f"/{SERVICE}/{method}", request_serializer=_dumps, response_deserializer=_loads
        )

    async def call(
        self,
        method: str,
        request: Any = None,
        metadata: Sequence[tuple[str, str]] | None = None,
    ) -> Any:
        return await self.unary(method)(request or {}, metadata=metadata, timeout=10)

    async def collect(
        self, method: str, request: Any, metadata: Sequence[tuple[str, str]] | None = None
    ) -> list[Any]:
        return [r async for r in self.stream(method)(request, metadata=metadata, timeout=10)]


@pytest.fixture
async def caller_for() -> AsyncIterator[Callable[..., Caller]]:
    callers: list[Caller] = []

    def make(downstream: Downstream, interceptors: Sequence[Any] = ()) -> Caller:
        caller = Caller(downstream.target, interceptors)
        callers.append(caller)
        return caller

    yield make
    for caller in callers:
        await caller.channel.close()


CallerFor = Callable[..., Caller]


async def refused(call: Awaitable[Any], code: grpc.StatusCode, reason: str) -> SessionError:
    """The session error a refused call ended with, checked against code and reason."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    assert raised.value.code() == code, raised.value.details()
    error = error_from_rpc_error(raised.value)
    assert error.reason == reason
    return error


def expect(session: SessionContainer) -> dict[str, Any]:
    return {"session": {"user": session.user_id, "handle": session.session_handle}}


# --- public and protected methods ------------------------------------------------------------


async def test_public_methods_need_no_token(
    client: SessionClient, serve_downstream: ServeDownstream, caller_for: CallerFor
) -> None:
    downstream = await serve_downstream(client)
    caller = caller_for(downstream)
    assert await caller.call("Health") == {"ok": True, "session": None}  # decorator
    assert await caller.call("Catalogue") == {"items": ["tea", "cake"], "session": None}  # mapping
    # Public means not looked at: even a garbled token is no reason to refuse.
    garbled = session_metadata("not-a-jwt")
    assert (await caller.call("Health", metadata=garbled))["session"] is None
    assert downstream.orders.seen == [None, None, None]


async def test_protected_method_sees_the_session(
    client: SessionClient, serve_downstream: ServeDownstream, caller_for: CallerFor
) -> None:
    downstream = await serve_downstream(client)
    caller = caller_for(downstream)
    created = await client.create_new_session("user-1", {"plan": "gold"})

    answer = await caller.call("Whoami", metadata=session_metadata(created.access_token))
    assert answer == expect(created)
    [seen] = downstream.orders.seen
    assert seen is not None
    assert seen.user_id == "user-1"
    assert seen.session_handle == created.session_handle
    assert seen.access_token_payload["plan"] == "gold"
    assert current_session() is None  # nothing leaks to the caller's side

    # The next call, public, runs with no session: the previous one's was reset.
    assert (await caller.call("Health"))["session"] is None
    other = await client.create_new_session("user-2")
    assert await caller.call("Whoami", metadata=session_metadata(other.access_token)) == expect(
        other
    )
    assert [s.user_id if s else None for s in downstream.orders.seen] == ["user-1", None, "user-2"]


async def test_protected_method_without_a_token_is_unauthorised(
    client: SessionClient, serve_downstream: ServeDownstream, caller_for: CallerFor
) -> None:
    downstream = await serve_downstream(client)
    caller = caller_for(downstream)
    error = await refused(caller.call("Whoami"), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHORISED")
    assert isinstance(error, UnauthorisedError)
    assert not error.clear_tokens  # nothing to clear: none was sent
    for metadata in (
        [("authorization", "Basic dXNlcjpwYXNz")],
        [("authorization", "Bearer ")],
        [("authorization", "Bearer not-a-jwt")],
    ):
        await refused(
            caller.call("Whoami", metadata=metadata),
            grpc.StatusCode.UNAUTHENTICATED,
            "UNAUTHORISED",
        )
    assert downstream.orders.seen == []  # the handler never ran


async def test_session_not_required_passes_none_without_a_token(
    client: SessionClient, serve_downstream: ServeDownstream, caller_for: CallerFor
) -> None:
    downstream = await serve_downstream(client)
    caller = caller_for(downstream)
    assert await caller.call("Maybe") == {"session": None}
    created = await client.create_new_session("user-1")
    assert await caller.call("Maybe", metadata=session_metadata(created.access_token)) == expect(
        created
    )


# --- claims -----------------------------------------------------------------------------------


async def test_claim_gated_method(
    client: SessionClient,
    clock: ManualClock,
    serve_downstream: ServeDownstream,
    caller_for: CallerFor,
) -> None:
    downstream = await serve_downstream(client)
    caller = caller_for(downstream)
    user = await client.create_new_session("user-1", Roles.add_to_payload({}, ["user"], clock.ms))
    admin = await client.create_new_session(
        "admin-1", Roles.add_to_payload({}, ["user", "admin"], clock.ms)
    )

    error = await refused(
        caller.call("Delete", {"id": 7}, session_metadata(user.access_token)),
        grpc.StatusCode.PERMISSION_DENIED,
        "INVALID_CLAIMS",
    )
    assert isinstance(error, InvalidClaimsError)
    assert error.invalid_claims == [
        ClaimValidationError(
            "st-role",
            {"message": "wrong value", "expectedToInclude": "admin", "actualValue": ["user"]},
        )
    ]
    # A session with no roles at all: the fetch says "do not set", so still no value.
    nobody = await client.create_new_session("user-2")
    error = await refused(
        caller.call("Delete", {"id": 7}, session_metadata(nobody.access_token)),
        grpc.StatusCode.PERMISSION_DENIED,
        "INVALID_CLAIMS",
    )
    assert isinstance(error, InvalidClaimsError)
    [failure] = error.invalid_claims
    assert failure.reason == {"message": "value does not exist", "expectedToInclude": "admin"}
    assert downstream.orders.seen == []

    answer = await caller.call("Delete", {"id": 7}, session_metadata(admin.access_token))
    assert answer == {"deleted": 7, **expect(admin)}
    # The same user session passes where no claim is asked for.
    assert await caller.call("Whoami", metadata=session_metadata(user.access_token)) == expect(user)


async def test_interceptor_wide_claim_validators(
    client: SessionClient,
    clock: ManualClock,
    serve_downstream: ServeDownstream,
    caller_for: CallerFor,
) -> None:
    downstream = await serve_downstream(client, claim_validators=ADMINS_ONLY)
    caller = caller_for(downstream)
    user = await client.create_new_session("user-1", Roles.add_to_payload({}, ["user"], clock.ms))
    admin = await client.create_new_session(
        "admin-1", Roles.add_to_payload({}, ["admin"], clock.ms)
    )
    await refused(
        caller.call("Whoami", metadata=session_metadata(user.access_token)),
        grpc.StatusCode.PERMISSION_DENIED,
        "INVALID_CLAIMS",
    )
    assert await caller.call("Whoami", metadata=session_metadata(admin.access_token)) == expect(
        admin
    )
    assert (await caller.call("Health"))["ok"] is True  # public stays public


# --- expiry and refresh -------------------------------------------------------------------------


async def test_expired_token_says_try_refresh_then_the_refreshed_one_works(
    client: SessionClient,
    clock: ManualClock,
    serve_downstream: ServeDownstream,
    caller_for: CallerFor,
) -> None:
    downstream = await serve_downstream(client)
    caller = caller_for(downstream)
    created = await client.create_new_session("user-1")
    assert created.refresh_token is not None
    assert await caller.call("Whoami", metadata=session_metadata(created.access_token)) == expect(
        created
    )

    clock.advance(ACCESS_TOKEN_VALIDITY_S + 1)
    await refused(
        caller.call("Whoami", metadata=session_metadata(created.access_token)),
        grpc.StatusCode.UNAUTHENTICATED,
        "TRY_REFRESH_TOKEN",
    )
    # The same for the check_database path and for a stream.
    await refused(
        caller.call("Pay", {"amount": 1}, session_metadata(created.access_token)),
        grpc.StatusCode.UNAUTHENTICATED,
        "TRY_REFRESH_TOKEN",
    )
    await refused(
        caller.collect("History", {"count": 2}, session_metadata(created.access_token)),
        grpc.StatusCode.UNAUTHENTICATED,
        "TRY_REFRESH_TOKEN",
    )

    refreshed = await client.refresh_session(created.refresh_token)
    assert refreshed.session_handle == created.session_handle
    metadata = session_metadata(refreshed.access_token)
    assert await caller.call("Whoami", metadata=metadata) == expect(created)
    assert await caller.call("Pay", {"amount": 3}, metadata) == {"paid": 3, **expect(created)}


# --- revocation and check_database ----------------------------------------------------------


@pytest.mark.parametrize("method", ["Pay", "Transfer"])
async def test_revoked_session_is_refused_with_check_database_per_method(
    client: SessionClient,
    serve_downstream: ServeDownstream,
    caller_for: CallerFor,
    method: str,
) -> None:
    """Pay has check_database by decorator, Transfer by the methods= mapping."""
    downstream = await serve_downstream(client)
    caller = caller_for(downstream)
    created = await client.create_new_session("user-1")
    metadata = session_metadata(created.access_token)
    assert (await caller.call(method, {"amount": 5}, metadata))["session"] == expect(created)[
        "session"
    ]

    assert await client.revoke_session(created.session_handle)
    await refused(
        caller.call(method, {"amount": 5}, metadata),
        grpc.StatusCode.UNAUTHENTICATED,
        "UNAUTHORISED",
    )
    # Verified locally, the token stays good until it expires: SuperTokens' trade-off.
    assert await caller.call("Whoami", metadata=metadata) == expect(created)


async def test_revoked_session_is_refused_with_check_database_on_the_interceptor(
    client: SessionClient,
    clock: ManualClock,
    serve_downstream: ServeDownstream,
    caller_for: CallerFor,
) -> None:
    strict = await serve_downstream(client, check_database=True)
    lenient = await serve_downstream(client)
    strict_caller, lenient_caller = caller_for(strict), caller_for(lenient)
    created = await client.create_new_session("user-1")
    metadata = session_metadata(created.access_token)
    assert await strict_caller.call("Whoami", metadata=metadata) == expect(created)

    assert await client.revoke_session(created.session_handle)
    error = await refused(
        strict_caller.call("Whoami", metadata=metadata),
        grpc.StatusCode.UNAUTHENTICATED,
        "UNAUTHORISED",
    )
    assert isinstance(error, UnauthorisedError) and error.clear_tokens
    await refused(
        strict_caller.collect("History", {"count": 1}, metadata),
        grpc.StatusCode.UNAUTHENTICATED,
        "UNAUTHORISED",
    )
    assert (await strict_caller.call("Health"))["ok"] is True

    # Without check_database the token passes until it expires...
    assert await lenient_caller.call("Whoami", metadata=metadata) == expect(created)
    clock.advance(ACCESS_TOKEN_VALIDITY_S - 1)
    assert await lenient_caller.call("Whoami", metadata=metadata) == expect(created)
    clock.advance(2)
    await refused(
        lenient_caller.call("Whoami", metadata=metadata),
        grpc.StatusCode.UNAUTHENTICATED,
        "TRY_REFRESH_TOKEN",
    )


# --- anti-CSRF -----------------------------------------------------------------------------------


async def test_anti_csrf_via_token(
    start: Start, connect: Connect, serve_downstream: ServeDownstream, caller_for: CallerFor
) -> None:
    authority = await start(anti_csrf="VIA_TOKEN")
    async with connect(authority) as client:
        downstream = await serve_downstream(client)
        caller = caller_for(downstream)
        created = await client.create_new_session("user-1")
        assert created.anti_csrf_token is not None
        token = created.access_token

        # Update checks anti-CSRF (decorator): the token must come in `anti-csrf` metadata.
        good = session_metadata(token, created.anti_csrf_token)
        assert ("anti-csrf", created.anti_csrf_token) in good
        assert await caller.call("Update", metadata=good) == expect(created)
        await refused(
            caller.call("Update", metadata=session_metadata(token)),
            grpc.StatusCode.UNAUTHENTICATED,
            "TRY_REFRESH_TOKEN",
        )
        await refused(
            caller.call("Update", metadata=session_metadata(token, created.anti_csrf_token + "x")),
            grpc.StatusCode.UNAUTHENTICATED,
            "TRY_REFRESH_TOKEN",
        )
        # Whoami takes the interceptor's default (no anti-CSRF check).
        assert await caller.call("Whoami", metadata=session_metadata(token)) == expect(created)

        # Checked on every method when the interceptor says so.
        checking = caller_for(await serve_downstream(client, anti_csrf_check=True))
        await refused(
            checking.call("Whoami", metadata=session_metadata(token)),
            grpc.StatusCode.UNAUTHENTICATED,
            "TRY_REFRESH_TOKEN",
        )
        assert await checking.call("Whoami", metadata=good) == expect(created)


# --- streaming -----------------------------------------------------------------------------------


async def test_server_streaming_method_is_protected(
    client: SessionClient, serve_downstream: ServeDownstream, caller_for: CallerFor
) -> None:
    downstream = await serve_downstream(client)
    caller = caller_for(downstream)
    await refused(
        caller.collect("History", {"count": 3}), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHORISED"
    )
    assert downstream.orders.seen == []

    created = await client.create_new_session("user-1")
    responses = await caller.collect(
        "History", {"count": 3}, session_metadata(created.access_token)
    )
    assert responses == [{"n": n, **expect(created)} for n in range(3)]
    assert [s.session_handle if s else None for s in downstream.orders.seen] == [
        created.session_handle
    ] * 3
    assert current_session() is None


# --- the calling side -----------------------------------------------------------------------------


async def test_session_call_interceptor_attaches_the_current_token(
    client: SessionClient,
    clock: ManualClock,
    serve_downstream: ServeDownstream,
    caller_for: CallerFor,
) -> None:
    downstream = await serve_downstream(client)
    created = await client.create_new_session("user-1")
    assert created.refresh_token is not None
    tokens: dict[str, str | None] = {"access": None, "anti_csrf": None}
    caller = caller_for(
        downstream, [SessionCallInterceptor(lambda: (tokens["access"], tokens["anti_csrf"]))]
    )

    # No token yet: nothing attached, so the protected method refuses.
    await refused(caller.call("Whoami"), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHORISED")
    assert (await caller.call("Health"))["ok"] is True

    tokens["access"] = created.access_token
    assert await caller.call("Whoami") == expect(created)
    # Metadata the caller passes itself is kept alongside.
    assert await caller.call("Whoami", metadata=[("x-request-id", "r-1")]) == expect(created)

    clock.advance(ACCESS_TOKEN_VALIDITY_S + 1)
    await refused(caller.call("Whoami"), grpc.StatusCode.UNAUTHENTICATED, "TRY_REFRESH_TOKEN")
    refreshed = await client.refresh_session(created.refresh_token)
    tokens["access"] = refreshed.access_token  # the next call picks it up
    assert await caller.call("Whoami") == expect(created)
    [*_, last] = downstream.orders.seen
    assert last is not None and last.access_token == refreshed.access_token


async def test_session_call_interceptor_sends_the_anti_csrf_token(
    start: Start, connect: Connect, serve_downstream: ServeDownstream, caller_for: CallerFor
) -> None:
    authority = await start(anti_csrf="VIA_TOKEN")
    async with connect(authority) as client:
        downstream = await serve_downstream(client, anti_csrf_check=True)
        created = await client.create_new_session("user-1")
        caller = caller_for(
            downstream,
            [SessionCallInterceptor(lambda: (created.access_token, created.anti_csrf_token))],
        )
        assert await caller.call("Whoami") == expect(created)


# --- what the interceptor leaves alone ----------------------------------------------------------


async def test_unknown_method_is_unimplemented(
    client: SessionClient, serve_downstream: ServeDownstream, caller_for: CallerFor
) -> None:
    downstream = await serve_downstream(client)
    caller = caller_for(downstream)
    method = caller.channel.unary_unary(
        f"/{SERVICE}/Nope", request_serializer=_dumps, response_deserializer=_loads
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await method({}, timeout=10)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_methods_mapping_options_merge_with_the_defaults(
    client: SessionClient,
    clock: ManualClock,
    serve_downstream: ServeDownstream,
    caller_for: CallerFor,
) -> None:
    """A mapping entry that sets only check_database keeps the interceptor's claim
    validators; public=True in the mapping skips them."""
    methods: Mapping[str, SessionOptions] = {
        **METHODS,
        f"/{SERVICE}/Whoami": SessionOptions(check_database=True),
    }
    downstream = await serve_downstream(client, methods=methods, claim_validators=ADMINS_ONLY)
    caller = caller_for(downstream)
    user = await client.create_new_session("user-1", Roles.add_to_payload({}, ["user"], clock.ms))
    await refused(
        caller.call("Whoami", metadata=session_metadata(user.access_token)),
        grpc.StatusCode.PERMISSION_DENIED,
        "INVALID_CLAIMS",
    )
    assert (await caller.call("Catalogue"))["session"] is None


# --- the calling side, and an unreachable authority -------------------------------------------


async def test_session_call_interceptors_attach_the_token_to_streams(
    client: SessionClient, serve_downstream: ServeDownstream, caller_for: CallerFor
) -> None:
    downstream = await serve_downstream(client)
    created = await client.create_new_session("user-1")
    caller = caller_for(downstream, session_call_interceptors(lambda: (created.access_token, None)))
    assert await caller.collect("History", {"count": 1}) == [{"n": 0, **expect(created)}]
    assert await caller.call("Whoami") == expect(created)


async def test_a_re_minted_access_token_reaches_the_caller(
    client: SessionClient,
    serve_downstream: ServeDownstream,
    caller_for: CallerFor,
    clock: ManualClock,
) -> None:
    fetches: list[str] = []

    def roles_of(user_id: str, payload: Any) -> list[str]:
        fetches.append(user_id)
        return ["admin"]

    fresh_roles = PrimitiveArrayClaim("st-role", roles_of, default_max_age_in_seconds=60)
    downstream = await serve_downstream(
        client, claim_validators=[fresh_roles.validators.includes("admin")]
    )
    created = await client.create_new_session("user-1")
    tokens = {"access": created.access_token}
    caller = caller_for(
        downstream,
        session_call_interceptors(
            lambda: (tokens["access"], None),
            on_new_access_token=lambda token: tokens.update(access=token),
        ),
    )
    await caller.call("Whoami")  # the claim is missing: fetched, token re-minted
    assert fetches == ["user-1"] and tokens["access"] != created.access_token
    reminted = tokens["access"]
    verified = await client.get_session(reminted)
    assert verified is not None and verified.access_token_payload["st-role"]["v"] == ["admin"]

    await caller.call("Whoami")  # the new token carries the claim: no fetch, no new token
    assert fetches == ["user-1"] and tokens["access"] == reminted
    clock.advance(61)
    await caller.call("Whoami")  # too old now: fetched again
    assert fetches == ["user-1", "user-1"] and tokens["access"] != reminted


async def test_unreachable_authority_is_unavailable_not_unknown(
    start: Start, connect: Connect, serve_downstream: ServeDownstream, caller_for: CallerFor
) -> None:
    authority = await start()
    async with connect(authority, timeout=2) as client:
        downstream = await serve_downstream(client)
        caller = caller_for(downstream)
        created = await client.create_new_session("user-1")
        await authority.server.stop(None)  # the fixture closes the rest at teardown
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await caller.call("Pay", {"amount": 1}, session_metadata(created.access_token))
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE, raised.value.details()
        # On the wire: the interceptor's own ErrorInfo, reason UNREACHABLE.
        info = error_info(raised.value)
        assert info is not None and info.reason == "UNREACHABLE"
