"""The demo's "edge": logs a user in, calls the orders service with the session,
refreshes when told TRY_REFRESH_TOKEN, revokes, and shows the orders service
refusing. Every step is printed; any unexpected outcome exits 1.

    python examples/demo/edge.py --authority 127.0.0.1:50051 --orders 127.0.0.1:50061

Run the authority with a short access-token validity (a few seconds) so that
the expiry step does not wait long; examples/demo/run.py does all of that.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import grpc
from session_authority import (
    InvalidClaimsError,
    PrimitiveArrayClaim,
    SessionClient,
    SessionContainer,
    SessionError,
    UnauthorisedError,
)
from session_authority.grpc import SessionCallInterceptor, error_from_rpc_error

SERVICE = "demo.Orders"
# The same claim key as the orders service reads; here the edge fetches the value.
USER_ROLES = {"alice": ["customer"]}
Roles = PrimitiveArrayClaim("st-role", lambda user_id, payload: USER_ROLES.get(user_id))
REVOCATION_WAIT_S = 5.0


class DemoFailed(Exception):
    """A step did not turn out as the demo expects."""


def say(step: str, text: str = "") -> None:
    print(f"[edge] {step:>3} {text}" if text else f"[edge] {step}", flush=True)


def short(handle: str) -> str:
    return handle[:8] + "…"


@dataclass
class Refusal:
    code: grpc.StatusCode
    error: SessionError

    @property
    def reason(self) -> str:
        return self.error.reason

    def __str__(self) -> str:
        return f"{self.code.name} {self.reason} ({self.error.message})"


def refusal(error: grpc.aio.AioRpcError) -> Refusal:
    """The status code and the session error the interceptor ended the call with."""
    return Refusal(error.code(), error_from_rpc_error(error))


@dataclass
class Tokens:
    """What a browser would hold: the edge's copy of the user's tokens."""

    access: str | None = None
    anti_csrf: str | None = None
    refresh: str | None = None

    def take(self, session: SessionContainer) -> None:
        self.access = session.access_token
        self.anti_csrf = session.anti_csrf_token
        self.refresh = session.refresh_token or self.refresh


class Orders:
    """The orders service's methods over a channel that carries the session."""

    def __init__(self, target: str, tokens: Tokens) -> None:
        interceptor = SessionCallInterceptor(lambda: (tokens.access, tokens.anti_csrf))
        self.channel = grpc.aio.insecure_channel(target, interceptors=[interceptor])
        self.anonymous = grpc.aio.insecure_channel(target)

    def call(self, method: str, request: Any = None, *, anonymous: bool = False) -> Awaitable[Any]:
        channel = self.anonymous if anonymous else self.channel
        stub = channel.unary_unary(
            f"/{SERVICE}/{method}",
            request_serializer=lambda value: json.dumps(value).encode(),
            response_deserializer=json.loads,
        )
        return stub(request or {}, timeout=10)  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self.channel.close()
        await self.anonymous.close()


async def expect_ok(call: Awaitable[Any]) -> Any:
    try:
        return await call
    except grpc.aio.AioRpcError as error:
        raise DemoFailed(f"expected an answer, got {refusal(error)}") from None


async def expect_refused(call: Awaitable[Any], code: grpc.StatusCode, reason: str) -> Refusal:
    try:
        answer = await call
    except grpc.aio.AioRpcError as error:
        refused = refusal(error)
        if (refused.code, refused.reason) != (code, reason):
            raise DemoFailed(f"expected {code.name} {reason}, got {refused}") from None
        return refused
    raise DemoFailed(f"expected {code.name} {reason}, got an answer: {answer}")


async def run(authority: str, orders_target: str) -> None:
    tokens = Tokens()
    orders = Orders(orders_target, tokens)
    async with SessionClient(authority) as sessions:
        try:
            await demo(sessions, orders, tokens)
        finally:
            await orders.close()


async def demo(sessions: SessionClient, orders: Orders, tokens: Tokens) -> None:
    say("1.", "alice logs in at the edge: create_new_session with her roles claim")
    payload = await Roles.build("alice", {})
    session = await sessions.create_new_session("alice", payload)
    tokens.take(session)
    validity = (session.access_token_expiry or 0) / 1000 - time.time()
    say("", f"session {short(session.session_handle)}, roles {session.get_claim_value(Roles)}")
    say("", f"access token valid for {validity:.1f} s more; the refresh token stays at the edge")

    say("2.", "Menu is public: called with no token at all")
    answer = await expect_ok(orders.call("Menu", anonymous=True))
    say("", f"-> ok: {answer['menu']}")

    say("3.", "ListOrders without a token")
    refused = await expect_refused(
        orders.call("ListOrders", anonymous=True),
        grpc.StatusCode.UNAUTHENTICATED,
        "UNAUTHORISED",
    )
    say("", f"-> refused: {refused.code.name} {refused.reason}")

    say("4.", "ListOrders with alice's session (SessionCallInterceptor adds the token)")
    answer = await expect_ok(orders.call("ListOrders"))
    say("", f"-> ok: the orders service saw user {answer['user']}, {len(answer['orders'])} orders")
    if answer["user"] != "alice" or answer["session"] != session.session_handle:
        raise DemoFailed(f"the orders service saw the wrong session: {answer}")

    say("5.", "RefundAll needs the claim st-role includes 'admin'; alice is a customer")
    refused = await expect_refused(
        orders.call("RefundAll"), grpc.StatusCode.PERMISSION_DENIED, "INVALID_CLAIMS"
    )
    if not isinstance(refused.error, InvalidClaimsError):
        raise DemoFailed(f"expected the failed claims, got {refused}")
    [failure] = refused.error.invalid_claims
    say("", f"-> refused: {refused.code.name} {refused.reason}: {failure.id} {failure.reason}")

    say("6.", "alice is made an admin: set_claim_value re-mints her access token")
    await session.set_claim_value(Roles, ["customer", "admin"])
    tokens.take(session)
    answer = await expect_ok(orders.call("RefundAll"))
    say("", f"-> ok: refunded orders {answer['refunded']} by {answer['by']}")

    wait = max(0.0, (session.access_token_expiry or 0) / 1000 - time.time()) + 0.5
    say("7.", f"waiting {wait:.1f} s for the access token to expire…")
    await asyncio.sleep(wait)
    refused = await expect_refused(
        orders.call("ListOrders"), grpc.StatusCode.UNAUTHENTICATED, "TRY_REFRESH_TOKEN"
    )
    say("", f"-> refused: {refused.code.name} {refused.reason}: the edge should refresh")
    if tokens.refresh is None:
        raise DemoFailed("no refresh token was issued")
    refreshed = await sessions.refresh_session(tokens.refresh, tokens.anti_csrf)
    tokens.take(refreshed)
    say("", f"refreshed: new access and refresh tokens for {short(refreshed.session_handle)}")
    answer = await expect_ok(orders.call("ListOrders"))
    say("", f"-> retried: ok, user {answer['user']}, {len(answer['orders'])} orders")

    say("8.", "alice logs out: the edge revokes her session at the authority")
    if not await sessions.revoke_session(session.session_handle):
        raise DemoFailed("the session was not revoked")
    started = time.monotonic()
    # The access token itself is still unexpired: only the revocation stream
    # tells the orders service, which then refuses it without asking per call.
    while True:
        try:
            await orders.call("ListOrders")
        except grpc.aio.AioRpcError as error:
            refused = refusal(error)
            break
        if time.monotonic() - started > REVOCATION_WAIT_S:
            raise DemoFailed(f"still accepted {REVOCATION_WAIT_S} s after the revocation")
        await asyncio.sleep(0.05)
    if (refused.code, refused.reason) != (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHORISED"):
        raise DemoFailed(f"expected UNAUTHENTICATED UNAUTHORISED, got {refused}")
    elapsed_ms = (time.monotonic() - started) * 1000
    say("", f"-> refused: {refused.code.name} {refused.reason}: {refused.error.message}")
    say("", f"(the revocation reached the orders service by its stream in {elapsed_ms:.0f} ms)")

    say("9.", "the old refresh token is useless now")
    try:
        await sessions.refresh_session(tokens.refresh, tokens.anti_csrf)
    except UnauthorisedError as error:
        say("", f"-> refused: {error.reason}: log in again")
    else:
        raise DemoFailed("a revoked session was refreshed")
    say("demo finished: login, call, refresh, revoke all behaved")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--authority", default="127.0.0.1:50051", help="the authority's gRPC")
    parser.add_argument("--orders", default="127.0.0.1:50061", help="the orders service")
    args = parser.parse_args()
    try:
        asyncio.run(run(args.authority, args.orders))
    except DemoFailed as error:
        print(f"[edge] FAILED: {error}", file=sys.stderr, flush=True)
        return 1
    except SessionError as error:  # from the authority itself, unexpectedly
        print(f"[edge] FAILED: the authority said {error.reason}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
