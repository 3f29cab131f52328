"""Input limits and argument checks, enforced before anything is stored.

Every rejection is an InvalidArgumentError naming the request field.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from session_authority.errors import InvalidArgumentError
from session_authority.json_text import compact_json
from session_authority.verify import PROTECTED_CLAIMS

MAX_USER_ID_LENGTH = 512
MAX_SESSION_HANDLE_LENGTH = 128
MAX_HANDLES_PER_CALL = 1000
# The payload travels inside every access token, on every request: keep it small.
MAX_ACCESS_TOKEN_PAYLOAD_BYTES = 16 * 1024
# JSON is parsed and written on the event loop: at 64 KiB that costs about 2 ms,
# at 256 KiB up to 40 ms, during which no other call is served.
MAX_SESSION_DATA_BYTES = 64 * 1024
# A JWT travels in HTTP headers, which proxies cap at 8-16 KiB.
MAX_JWT_PAYLOAD_BYTES = 16 * 1024
MAX_CLIENT_IP_LENGTH = 64
MAX_USER_AGENT_LENGTH = 512
MAX_DEVICE_LENGTH = 128
MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 50


def check_json_size(value: Any, field: str, max_bytes: int) -> None:
    """Refuse a JSON value from a request whose compact JSON is over its limit."""
    if len(compact_json(value).encode()) > max_bytes:
        raise InvalidArgumentError(f"{field} is larger than {max_bytes} bytes", field=field)


def check_custom_claims(payload: dict[str, Any], field: str) -> None:
    protected = sorted(PROTECTED_CLAIMS.intersection(payload))
    if protected:
        raise InvalidArgumentError(
            f"{field} sets protected claims: {', '.join(protected)}", field=field
        )


# CreateJwt signs with the keys that sign access tokens (the static key, or the
# very key that signs them now), and SuperTokens' SDKs and plain JWKS verifiers
# tell a session token from another JWT by its payload alone (a header without
# "version" reads as an older access-token version). So a CreateJwt payload may
# hold no claim of any SuperTokens session layout (v2: userId, userData,
# expiryTime, timeCreated; v3+: sessionHandle, refreshTokenHash1, ...; v4: tId;
# v5: rsub), nor "stt", the token type, which the authority sets itself (1: not a
# session). "sub", "iss", "aud" and the like stay allowed: a plain JWT needs them.
CREATE_JWT_REFUSED_CLAIMS = frozenset(
    {
        "sessionHandle",
        "refreshTokenHash1",
        "parentRefreshTokenHash1",
        "antiCsrfToken",
        "userId",
        "userData",
        "expiryTime",
        "timeCreated",
        "tId",
        "rsub",
        "stt",
    }
)


def check_create_jwt_payload(payload: dict[str, Any], field: str = "payload") -> None:
    """Refuse session-layout claims; the message names them, never their values."""
    refused = sorted(CREATE_JWT_REFUSED_CLAIMS.intersection(payload))
    if refused:
        raise InvalidArgumentError(
            f"{field} sets claims reserved for session tokens: {', '.join(refused)}",
            field=field,
        )


def check_no_nul(text: str, field: str) -> str:
    """Refuse U+0000 in an identifier. PostgreSQL text cannot hold it (SQLite can):
    one rule for every store, checked before any storage is touched. Any other
    character stays allowed, as SuperTokens allows any string."""
    if "\0" in text:
        raise InvalidArgumentError(f"{field} must not contain U+0000", field=field)
    return text


def check_user_id(user_id: str, field: str = "user_id") -> str:
    if not user_id:
        raise InvalidArgumentError(f"{field} must not be empty", field=field)
    if len(user_id) > MAX_USER_ID_LENGTH:
        raise InvalidArgumentError(
            f"{field} is longer than {MAX_USER_ID_LENGTH} characters", field=field
        )
    return check_no_nul(user_id, field)


def check_session_handle(handle: str, field: str = "session_handle") -> str:
    if not handle:
        raise InvalidArgumentError(f"{field} must not be empty", field=field)
    if len(handle) > MAX_SESSION_HANDLE_LENGTH:
        raise InvalidArgumentError(
            f"{field} is longer than {MAX_SESSION_HANDLE_LENGTH} characters", field=field
        )
    return check_no_nul(handle, field)


def check_session_handles(handles: Sequence[str], field: str = "session_handles") -> list[str]:
    if len(handles) > MAX_HANDLES_PER_CALL:
        raise InvalidArgumentError(
            f"{field} has more than {MAX_HANDLES_PER_CALL} handles", field=field
        )
    return [check_session_handle(handle, field) for handle in handles]


def dump_within_limit(value: dict[str, Any], field: str, max_bytes: int) -> str:
    """Serialise an object built from a request (a merge, say), refusing it when
    the result outgrew its limit."""
    text = compact_json(value)
    if len(text.encode()) > max_bytes:
        raise InvalidArgumentError(
            f"with {field} applied the object is larger than {max_bytes} bytes", field=field
        )
    return text


def check_client_metadata(ip: str, user_agent: str, device: str) -> tuple[str, str, str]:
    for value, field, limit in (
        (ip, "client_metadata.ip", MAX_CLIENT_IP_LENGTH),
        (user_agent, "client_metadata.user_agent", MAX_USER_AGENT_LENGTH),
        (device, "client_metadata.device", MAX_DEVICE_LENGTH),
    ):
        if len(value) > limit:
            raise InvalidArgumentError(f"{field} is longer than {limit} characters", field=field)
        if not value.isprintable():
            raise InvalidArgumentError(f"{field} has control characters", field=field)
    if ip:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise InvalidArgumentError(
                "client_metadata.ip is not an IP address", field="client_metadata.ip"
            ) from None
    return ip, user_agent, device


def check_page_size(page_size: int) -> int:
    if page_size == 0:
        return DEFAULT_PAGE_SIZE
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidArgumentError(
            f"page_size must be between 1 and {MAX_PAGE_SIZE}", field="page_size"
        )
    return page_size
