"""The demo's downstream "orders" service: a grpc.aio server protected by
SessionInterceptor, in one line.

    python examples/demo/downstream.py --authority 127.0.0.1:50051 --listen 127.0.0.1:0

Generic handlers with JSON payloads (no proto of its own). Menu is public,
ListOrders needs a session, RefundAll needs a session whose "st-role" claim
includes "admin". Access tokens are verified locally against the authority's
JWKS; the revocation stream (watch_revocations=True) makes a revoked session
fail here within about a second, with no call to the authority per request.
Prints "orders service listening on HOST:PORT" once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from typing import Any

import grpc
from session_authority import PrimitiveArrayClaim, SessionClient
from session_authority.grpc import SessionInterceptor, current_session, session_options

SERVICE = "demo.Orders"

# The edge puts the user's roles in the session; this service only reads them
# (a fetch returning None means "do not set": nothing to refetch here).
Roles = PrimitiveArrayClaim("st-role", lambda user_id, payload: None)

MENU = ["tea", "coffee", "scones"]
ORDERS: dict[str, list[dict[str, Any]]] = {
    "alice": [{"id": 1, "item": "tea"}, {"id": 2, "item": "scones"}],
}


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def _loads(data: bytes) -> Any:
    return json.loads(data) if data else {}


@session_options(public=True)
async def menu(request: Any, context: Any) -> Any:
    return {"menu": MENU}


async def list_orders(request: Any, context: Any) -> Any:
    session = current_session()  # verified by the interceptor before this runs
    assert session is not None
    return {
        "user": session.user_id,
        "session": session.session_handle,
        "orders": ORDERS.get(session.user_id, []),
    }


@session_options(claim_validators=[Roles.validators.includes("admin")])
async def refund_all(request: Any, context: Any) -> Any:
    session = current_session()
    assert session is not None
    refunded = [order["id"] for orders in ORDERS.values() for order in orders]
    return {"refunded": refunded, "by": session.user_id}


def orders_handler() -> grpc.GenericRpcHandler:
    def unary(behaviour: Any) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(
            behaviour, request_deserializer=_loads, response_serializer=_dumps
        )

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {"Menu": unary(menu), "ListOrders": unary(list_orders), "RefundAll": unary(refund_all)},
    )


async def serve(authority: str, listen: str) -> None:
    async with SessionClient(authority, watch_revocations=True) as sessions:
        server = grpc.aio.server(interceptors=[SessionInterceptor(sessions)])
        server.add_generic_rpc_handlers((orders_handler(),))
        port = server.add_insecure_port(listen)
        await server.start()
        print(f"orders service listening on {listen.rsplit(':', 1)[0]}:{port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        await server.stop(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--authority", default="127.0.0.1:50051", help="the authority's gRPC")
    parser.add_argument("--listen", default="127.0.0.1:50061", help="host:port (port 0: any)")
    args = parser.parse_args()
    asyncio.run(serve(args.authority, args.listen))


if __name__ == "__main__":
    main()
