"""A grpc.aio service protected by the session authority, and a caller of it, in one
program: the README's "Protecting a gRPC service" is an excerpt of this file.

    make run                                      # the authority, in another terminal
    python examples/grpc_service/orders.py        # or: ... orders.py HOST:PORT

It serves an Orders service whose List method needs a session and whose Menu is
public, then calls both with a session it creates, and List without one. Orders
has no proto of its own: generic handlers with JSON messages keep the example to
one file; a servicer generated from your protos is protected the same way.
Everything is built inside the running event loop (asyncio.run(main())): grpc.aio
objects made at import time belong to no loop and fail with "attached to a
different loop".
"""

import asyncio
import json
import sys

import grpc
from session_authority import SessionClient
from session_authority.grpc import (
    SessionInterceptor,
    current_session,
    session_call_interceptors,
    session_options,
)

AUTHORITY = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"


class Orders:  # your servicer
    async def List(self, request, context):
        user_id = current_session().user_id  # verified before the handler runs
        return {"user": user_id, "orders": ["tea", "scones"]}

    @session_options(public=True)
    async def Menu(self, request, context):
        return {"menu": ["tea", "coffee", "scones"]}


async def main() -> None:
    async with SessionClient(AUTHORITY, watch_revocations=True) as sessions:
        server = grpc.aio.server(interceptors=[SessionInterceptor(sessions)])
        server.add_generic_rpc_handlers([json_service("shop.Orders", Orders())])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()

        # A caller: it sends `authorization: Bearer <access token>` with each call.
        session = await sessions.create_new_session("user-42")
        tokens = session_call_interceptors(lambda: (session.access_token, None))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=tokens) as channel:
            print("Menu:", await call(channel, "shop.Orders", "Menu"))
            print("List:", await call(channel, "shop.Orders", "List"))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as anonymous:
            try:
                await call(anonymous, "shop.Orders", "List")
            except grpc.aio.AioRpcError as refused:
                print("List without a session:", refused.code().name)
        await server.stop(None)


# --- JSON over generic handlers, in place of code generated from a proto -----------


def json_service(name, servicer):
    def handler(method):
        return grpc.unary_unary_rpc_method_handler(
            method, request_deserializer=json.loads, response_serializer=encode
        )

    methods = {"List": handler(servicer.List), "Menu": handler(servicer.Menu)}
    return grpc.method_handlers_generic_handler(name, methods)


async def call(channel, service, method, request=None):
    stub = channel.unary_unary(
        f"/{service}/{method}", request_serializer=encode, response_deserializer=json.loads
    )
    return await stub(request or {})


def encode(message):
    return json.dumps(message).encode()


if __name__ == "__main__":
    asyncio.run(main())
