"""Who may call the authority: API keys, and loopback-only when there are none.

Keys arrive as ``authorization: Bearer <key>`` metadata (an HTTP header on the
HTTP listener: the same rule for Connect and gRPC-Web) and are compared in
constant time against every configured key (several at once, for rotation).
With no key configured, only callers on the loopback interface are served,
unless the operator explicitly allows remote callers without a key.
"""

from __future__ import annotations

import hmac
import logging
import urllib.parse
from collections.abc import Sequence
from typing import Any

from session_authority.errors import ApiKeyInvalidError

log = logging.getLogger(__name__)

_LOOPBACK_PEERS = ("ipv4:127.", "ipv6:[::1]", "ipv6:[::ffff:127.", "unix:")


def is_loopback(peer: str) -> bool:
    # grpc percent-encodes the brackets of IPv6 peers: ipv6:%5B::1%5D:port.
    return urllib.parse.unquote(peer).startswith(_LOOPBACK_PEERS)


class CallerAuthenticator:
    def __init__(self, api_keys: Sequence[str], *, allow_remote_without_api_key: bool) -> None:
        self._keys = [key.encode() for key in api_keys]
        self._allow_remote = allow_remote_without_api_key
        if not self._keys:
            log.warning(
                "no API key is configured (SESSION_AUTHORITY_API_KEYS): %s",
                "any caller is served"
                if self._allow_remote
                else "only callers on this machine (loopback) are served",
            )

    def check(self, context: Any) -> None:
        """Raise ApiKeyInvalidError unless the call may proceed. context: anything
        with gRPC's peer() and invocation_metadata() (rpc_gate.Call)."""
        if not self._keys:
            if self._allow_remote or is_loopback(context.peer() or ""):
                return
            raise ApiKeyInvalidError("this authority serves only loopback callers without a key")
        presented = b""
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str):
                scheme, _, token = value.partition(" ")
                if scheme.lower() == "bearer":
                    presented = token.strip().encode()
        # Compare against every key, always, so timing says nothing about which matched.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(presented, key)
        if not matched:
            raise ApiKeyInvalidError("a valid API key is required (authorization: Bearer <key>)")
