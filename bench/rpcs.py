"""The RPCs measured, as the SDK sends them: request bytes built once, up front, so
that the load generator spends no time on protobuf while it measures, and the
ceiling server can be sent the very same bytes."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import json_format
from session_authority.structs import struct_to_wire
from session_authority.v1 import session_service_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["SessionService"].full_name

# What a login puts in a session (small, as the README recommends for claims).
ACCESS_TOKEN_PAYLOAD = {"role": "user"}
SESSION_DATA = {"ip": "127.0.0.1"}
USERS = 1000  # create requests cycle over this many user ids

# Benchmark labels, in report order. GetSession(check_database) is the same RPC
# as GetSession with the flag the SDK sets when it must ask the database.
CREATE = "CreateNewSession"
GET = "GetSession"
GET_DB = "GetSession(check_database)"
REFRESH = "RefreshSession"
REVOKE = "RevokeSession"
LABELS = (CREATE, GET, GET_DB, REFRESH, REVOKE)
METHOD_OF = {CREATE: CREATE, GET: GET, GET_DB: GET, REFRESH: REFRESH, REVOKE: REVOKE}


def path(method: str) -> str:
    return f"/{SERVICE}/{method}"


def as_json(method: str, request: bytes) -> bytes:
    """A serialised request as Connect JSON sends it (proto3 JSON, camelCase)."""
    message_class = getattr(pb, f"{method}Request")
    message = message_class.FromString(request)
    return json_format.MessageToJson(message, indent=None).encode()


@dataclass(frozen=True, slots=True)
class Issued:
    """What the load generator keeps of a created session."""

    handle: str
    access_token: str
    refresh_token: str


def create_requests(count: int = USERS) -> list[bytes]:
    payload = struct_to_wire(ACCESS_TOKEN_PAYLOAD, "access_token_payload")
    data = struct_to_wire(SESSION_DATA, "session_data_in_database")
    return [
        pb.CreateNewSessionRequest(
            user_id=f"bench-user-{i}", access_token_payload=payload, session_data_in_database=data
        ).SerializeToString()
        for i in range(count)
    ]


def get_session_request(access_token: str, *, check_database: bool) -> bytes:
    # As SessionClient._get_session_remotely: an empty override list, so the
    # authority verifies and the client runs the claim validators.
    return pb.GetSessionRequest(
        access_token=access_token,
        check_database=check_database,
        override_global_claim_validators=pb.ClaimValidatorList(),
    ).SerializeToString()


def refresh_request(refresh_token: str) -> bytes:
    return pb.RefreshSessionRequest(refresh_token=refresh_token).SerializeToString()


def revoke_request(handle: str) -> bytes:
    return pb.RevokeSessionRequest(session_handle=handle).SerializeToString()


def issued_from_create(response: bytes) -> Issued:
    message = pb.CreateNewSessionResponse.FromString(response)
    return Issued(
        message.session.session_handle, message.access_token.token, message.refresh_token.token
    )


def next_refresh_request(response: bytes) -> bytes:
    """The request that refreshes with the token a RefreshSession response issued."""
    return refresh_request(pb.RefreshSessionResponse.FromString(response).refresh_token.token)
