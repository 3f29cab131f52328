"""The ceiling: what gRPC in Python does on this machine with no work at all.

`python -m bench.ceiling RESPONSES.json` runs `session-authority serve` itself, so
the server is built by the product's own code (app.start_server: the same
grpc.aio options, interceptors, health and reflection services, HTTP side and
background jobs), with one change: ``app.register`` is replaced, so every
SessionService method is answered at once with a canned response, the bytes of a
real response to that method. Requests arrive as bytes and are not parsed.
The load generator sends the ceiling the same request bytes as the product, so
each empty RPC is the same size as the real one in both directions.

Benchmark-only: nothing outside bench/ imports this.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from session_authority_server import app, cli

from .rpcs import SERVICE


def empty_servicer(responses: dict[str, bytes]) -> Callable[[Any, Any], None]:
    """A stand-in for service.register that adds the canned handlers instead."""

    def register(servicer: Any, server: Any) -> None:
        handlers = {}
        for method, response in responses.items():

            async def empty(request: bytes, context: Any, _response: bytes = response) -> bytes:
                return _response

            # No (de)serialisers: bytes in, bytes out.
            handlers[method] = grpc.unary_unary_rpc_method_handler(empty)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))

    return register


def main() -> int:
    canned = json.loads(Path(sys.argv[1]).read_text())
    app.register = empty_servicer(  # type: ignore[assignment]
        {method: bytes.fromhex(body) for method, body in canned.items()}
    )
    return cli.main(["serve"])


if __name__ == "__main__":
    sys.exit(main())
