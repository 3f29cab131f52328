"""The servicer: protobuf <-> domain translation only, for every transport.

Each RPC parses its request into Python values, calls the part of the authority
that does the work (the recipe, claims, the token issuer) and builds the
response. Every RPC passes through the gate (rpc_gate.py) on its way in and out.
The same methods serve gRPC (``register``, below) and, on the HTTP listener,
Connect and gRPC-Web (connect.py).
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import struct_pb2
from session_authority.errors import InvalidArgumentError
from session_authority.session import TokenInfo
from session_authority.structs import (
    struct_from_wire,
    struct_to_wire,
    value_from_wire,
    value_to_wire,
)
from session_authority.v1 import session_service_pb2 as pb
from session_authority.wire import (
    failures_to_wire,
    timestamp_to_wire,
    validator_to_wire,
    validators_from_wire,
    whole_seconds_from_wire,
)

from .assembly import Authority
from .metrics import Metrics
from .rpc_gate import (
    Call,
    Gated,
    RpcGate,
    grpc_server_stream,
    grpc_unary,
    lenient,
    server_stream,
    unary,
)
from .sessions import SessionTokens
from .validation import (
    MAX_ACCESS_TOKEN_PAYLOAD_BYTES,
    MAX_JWT_PAYLOAD_BYTES,
    MAX_SESSION_DATA_BYTES,
    check_json_size,
)

T = TypeVar("T")

# Converting JSON between Python values and protobuf Structs costs about a
# microsecond per value: a message past this size is converted on a worker
# thread (which lets go of the GIL every few ms), so the event loop serves other
# calls meanwhile.
CONVERT_OFF_LOOP_BYTES = 8 * 1024
# Binary Structs spell a number in 11 bytes where JSON may take 2: six times a
# JSON limit is refused before anything is converted.
_WIRE_BYTES_PER_JSON_BYTE = 6


async def _converted(size: int, convert: Callable[..., T], *args: Any) -> T:
    if size > CONVERT_OFF_LOOP_BYTES:
        return await asyncio.to_thread(convert, *args)
    return convert(*args)


async def _object_in(message: struct_pb2.Struct, field: str, max_bytes: int) -> dict[str, Any]:
    """A JSON object from a request, within its limit (as compact JSON)."""
    size = message.ByteSize()
    if size > _WIRE_BYTES_PER_JSON_BYTE * max_bytes:
        raise InvalidArgumentError(f"{field} is larger than {max_bytes} bytes", field=field)
    value = await _converted(size, struct_from_wire, message, field)
    check_json_size(value, field, max_bytes)
    return value


async def _claim_value_in(message: struct_pb2.Value, field: str, max_bytes: int) -> Any:
    """A claim value, which is kept two levels deep ({key: {"v": value}})."""
    size = message.ByteSize()
    if size > _WIRE_BYTES_PER_JSON_BYTE * max_bytes:
        raise InvalidArgumentError(f"{field} is larger than {max_bytes} bytes", field=field)
    value = await _converted(size, functools.partial(value_from_wire, nested_in=2), message, field)
    check_json_size(value, field, max_bytes)
    return value


async def _struct_out(value: dict[str, Any], size_hint: int) -> struct_pb2.Struct:
    return await _converted(size_hint, struct_to_wire, value, "response")


async def _stored_object_out(text: str) -> struct_pb2.Struct:
    """A JSON object the store keeps as text."""
    return await _struct_out(json.loads(text), len(text))


def register(servicer: SessionServicer, server: Any) -> None:
    """Add the servicer to a grpc.aio server, one handler per RPC of the proto,
    each through the gate's gRPC adapter (rpc_gate.grpc_unary, grpc_server_stream)."""
    service = pb.DESCRIPTOR.services_by_name["SessionService"]
    handlers = {}
    for method in service.methods:
        gated = getattr(servicer, method.name)
        make, adapt = (
            (grpc.unary_stream_rpc_method_handler, grpc_server_stream)
            if method.server_streaming
            else (grpc.unary_unary_rpc_method_handler, grpc_unary)
        )
        handlers[method.name] = make(
            adapt(gated),
            request_deserializer=lenient(getattr(pb, method.input_type.name).FromString),
            response_serializer=getattr(pb, method.output_type.name).SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )


def _token(token: TokenInfo) -> pb.Token:
    return pb.Token(
        token=token.token,
        expire_time=timestamp_to_wire(token.expiry),
        create_time=timestamp_to_wire(token.created_time),
    )


async def _session(
    handle: str, user_id: str, tenant_id: str, payload: dict[str, Any], token: str
) -> pb.Session:
    """The session message; token, the access token carrying the payload, hints
    at the payload's size."""
    return pb.Session(
        session_handle=handle,
        user_id=user_id,
        tenant_id=tenant_id,
        access_token_payload=await _struct_out(payload, len(token)),
    )


async def _issued(tokens: SessionTokens) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "session": await _session(
            tokens.handle,
            tokens.user_id,
            tokens.tenant_id,
            tokens.access_token_payload,
            tokens.access_token.token,
        ),
        "access_token": _token(tokens.access_token),
        "refresh_token": _token(tokens.refresh_token),
    }
    if tokens.anti_csrf_token is not None:
        fields["anti_csrf_token"] = tokens.anti_csrf_token
    return fields


class SessionServicer(Gated):
    def __init__(self, authority: Authority, gate: RpcGate, metrics: Metrics) -> None:
        self._sessions = authority.sessions
        self._claims = authority.claims
        self._tokens = authority.tokens
        self._revocations = authority.revocations
        self.gate = gate
        self._metrics = metrics

    @unary
    async def CreateNewSession(
        self, request: pb.CreateNewSessionRequest, call: Call
    ) -> pb.CreateNewSessionResponse:
        tokens = await self._sessions.create_new_session(
            request.user_id,
            await _object_in(
                request.access_token_payload,
                "access_token_payload",
                MAX_ACCESS_TOKEN_PAYLOAD_BYTES,
            ),
            await _object_in(
                request.session_data_in_database,
                "session_data_in_database",
                MAX_SESSION_DATA_BYTES,
            ),
            disable_anti_csrf=request.disable_anti_csrf,
            client_ip=request.client_metadata.ip,
            user_agent=request.client_metadata.user_agent,
            device=request.client_metadata.device,
        )
        return pb.CreateNewSessionResponse(**await _issued(tokens))

    @unary
    async def GetSession(self, request: pb.GetSessionRequest, call: Call) -> pb.GetSessionResponse:
        verified = await self._sessions.get_session(
            request.access_token,
            request.anti_csrf_token if request.HasField("anti_csrf_token") else None,
            anti_csrf_check=(
                request.anti_csrf_check if request.HasField("anti_csrf_check") else None
            ),
            check_database=request.check_database,
            claim_validators=(
                validators_from_wire(request.override_global_claim_validators.validators)
                if request.HasField("override_global_claim_validators")
                else None
            ),
        )
        return pb.GetSessionResponse(
            session=await _session(
                verified.handle,
                verified.user_id,
                verified.tenant_id,
                verified.access_token_payload,
                verified.access_token.token,
            ),
            access_token=_token(verified.access_token),
        )

    @unary
    async def RefreshSession(
        self, request: pb.RefreshSessionRequest, call: Call
    ) -> pb.RefreshSessionResponse:
        tokens = await self._sessions.refresh_session(
            request.refresh_token,
            request.anti_csrf_token if request.HasField("anti_csrf_token") else None,
            disable_anti_csrf=request.disable_anti_csrf,
        )
        return pb.RefreshSessionResponse(**await _issued(tokens))

    @unary
    async def RevokeSession(
        self, request: pb.RevokeSessionRequest, call: Call
    ) -> pb.RevokeSessionResponse:
        revoked = await self._sessions.revoke_session(request.session_handle)
        return pb.RevokeSessionResponse(revoked=revoked)

    @unary
    async def RevokeAllSessionsForUser(
        self, request: pb.RevokeAllSessionsForUserRequest, call: Call
    ) -> pb.RevokeAllSessionsForUserResponse:
        handles = await self._sessions.revoke_all_sessions_for_user(request.user_id)
        return pb.RevokeAllSessionsForUserResponse(revoked_session_handles=handles)

    @unary
    async def RevokeMultipleSessions(
        self, request: pb.RevokeMultipleSessionsRequest, call: Call
    ) -> pb.RevokeMultipleSessionsResponse:
        handles = await self._sessions.revoke_multiple_sessions(list(request.session_handles))
        return pb.RevokeMultipleSessionsResponse(revoked_session_handles=handles)

    @unary
    async def GetAllSessionHandlesForUser(
        self, request: pb.GetAllSessionHandlesForUserRequest, call: Call
    ) -> pb.GetAllSessionHandlesForUserResponse:
        handles = await self._sessions.get_all_session_handles_for_user(request.user_id)
        return pb.GetAllSessionHandlesForUserResponse(session_handles=handles)

    @unary
    async def GetSessionInformation(
        self, request: pb.GetSessionInformationRequest, call: Call
    ) -> pb.GetSessionInformationResponse:
        row = await self._sessions.get_session_information(request.session_handle)
        if row is None:
            return pb.GetSessionInformationResponse()
        return pb.GetSessionInformationResponse(
            session_information=pb.SessionInformation(
                session_handle=row.handle,
                user_id=row.user_id,
                tenant_id=row.tenant_id,
                session_data_in_database=await _stored_object_out(row.session_data),
                expire_time=timestamp_to_wire(row.expires_ms),
                custom_claims_in_access_token_payload=await _stored_object_out(
                    row.access_token_payload
                ),
                create_time=timestamp_to_wire(row.created_ms),
            )
        )

    @unary
    async def UpdateSessionDataInDatabase(
        self, request: pb.UpdateSessionDataInDatabaseRequest, call: Call
    ) -> pb.UpdateSessionDataInDatabaseResponse:
        updated = await self._sessions.update_session_data_in_database(
            request.session_handle,
            await _object_in(request.new_session_data, "new_session_data", MAX_SESSION_DATA_BYTES),
        )
        return pb.UpdateSessionDataInDatabaseResponse(updated=updated)

    @unary
    async def MergeIntoAccessTokenPayload(
        self, request: pb.MergeIntoAccessTokenPayloadRequest, call: Call
    ) -> pb.MergeIntoAccessTokenPayloadResponse:
        updated = await self._sessions.merge_into_access_token_payload(
            request.session_handle,
            await _object_in(
                request.access_token_payload_update,
                "access_token_payload_update",
                MAX_ACCESS_TOKEN_PAYLOAD_BYTES,
            ),
        )
        return pb.MergeIntoAccessTokenPayloadResponse(updated=updated)

    @unary
    async def RegenerateAccessToken(
        self, request: pb.RegenerateAccessTokenRequest, call: Call
    ) -> pb.RegenerateAccessTokenResponse:
        new_claims = (
            await _object_in(
                request.new_access_token_payload,
                "new_access_token_payload",
                MAX_ACCESS_TOKEN_PAYLOAD_BYTES,
            )
            if request.HasField("new_access_token_payload")
            else None
        )
        result = await self._sessions.regenerate_access_token(request.access_token, new_claims)
        if result is None:
            return pb.RegenerateAccessTokenResponse(session_exists=False)
        response = pb.RegenerateAccessTokenResponse(
            session_exists=True,
            session=await _session(
                result.handle,
                result.user_id,
                result.tenant_id,
                result.access_token_payload,
                request.access_token,
            ),
        )
        if result.access_token is not None:
            response.access_token.CopyFrom(_token(result.access_token))
        return response

    @unary
    async def GetJwks(self, request: pb.GetJwksRequest, call: Call) -> pb.GetJwksResponse:
        keys, max_age = await self._tokens.keys.jwks()
        self._metrics.jwks_fetches.labels(call.transport).inc()
        response = pb.GetJwksResponse(keys=[pb.JsonWebKey(**jwk) for jwk in keys])
        response.max_age.seconds = max_age
        return response

    # --- claims ------------------------------------------------------------------------

    @unary
    async def SetClaimValue(
        self, request: pb.SetClaimValueRequest, call: Call
    ) -> pb.SetClaimValueResponse:
        if not request.HasField("value"):
            raise InvalidArgumentError("value is required (null removes nothing)", field="value")
        value = await _claim_value_in(request.value, "value", MAX_ACCESS_TOKEN_PAYLOAD_BYTES)
        updated = await self._claims.set_claim_value(
            request.session_handle, request.claim_key, value
        )
        return pb.SetClaimValueResponse(updated=updated)

    @unary
    async def GetClaimValue(
        self, request: pb.GetClaimValueRequest, call: Call
    ) -> pb.GetClaimValueResponse:
        exists, value = await self._claims.get_claim_value(
            request.session_handle, request.claim_key
        )
        response = pb.GetClaimValueResponse(session_exists=exists)
        if value is not None:
            response.value.CopyFrom(value_to_wire(value, "value"))
        return response

    @unary
    async def RemoveClaim(
        self, request: pb.RemoveClaimRequest, call: Call
    ) -> pb.RemoveClaimResponse:
        updated = await self._claims.remove_claim(request.session_handle, request.claim_key)
        return pb.RemoveClaimResponse(updated=updated)

    @unary
    async def ValidateClaims(
        self, request: pb.ValidateClaimsRequest, call: Call
    ) -> pb.ValidateClaimsResponse:
        # Fetch functions live with the caller, so nothing is refetched here.
        payload = await _object_in(
            request.access_token_payload, "access_token_payload", MAX_ACCESS_TOKEN_PAYLOAD_BYTES
        )
        failures = await self._claims.validate_claims(
            payload, validators_from_wire(request.claim_validators)
        )
        return pb.ValidateClaimsResponse(invalid_claims=failures_to_wire(failures))

    @unary
    async def ValidateClaimsInJwtPayload(
        self, request: pb.ValidateClaimsInJwtPayloadRequest, call: Call
    ) -> pb.ValidateClaimsInJwtPayloadResponse:
        payload = await _object_in(
            request.jwt_payload, "jwt_payload", MAX_ACCESS_TOKEN_PAYLOAD_BYTES
        )
        failures = await self._claims.validate_claims(
            payload, validators_from_wire(request.claim_validators)
        )
        return pb.ValidateClaimsInJwtPayloadResponse(invalid_claims=failures_to_wire(failures))

    @unary
    async def GetGlobalClaimValidators(
        self, request: pb.GetGlobalClaimValidatorsRequest, call: Call
    ) -> pb.GetGlobalClaimValidatorsResponse:
        return pb.GetGlobalClaimValidatorsResponse(
            claim_validators=[validator_to_wire(v) for v in self._claims.global_validators]
        )

    # --- JWTs and discovery ----------------------------------------------------------------

    @unary
    async def CreateJwt(self, request: pb.CreateJwtRequest, call: Call) -> pb.CreateJwtResponse:
        jwt = await self._tokens.create_jwt(
            await _object_in(request.payload, "payload", MAX_JWT_PAYLOAD_BYTES),
            (
                whole_seconds_from_wire(request.validity, "validity")
                if request.HasField("validity")
                else None
            ),
            (
                request.use_static_signing_key
                if request.HasField("use_static_signing_key")
                else None
            ),
        )
        return pb.CreateJwtResponse(jwt=jwt)

    @unary
    async def GetOpenIdDiscoveryConfiguration(
        self, request: pb.GetOpenIdDiscoveryConfigurationRequest, call: Call
    ) -> pb.GetOpenIdDiscoveryConfigurationResponse:
        document = self._tokens.open_id_discovery_configuration()
        return pb.GetOpenIdDiscoveryConfigurationResponse(
            issuer=document["issuer"],
            jwks_uri=document["jwks_uri"],
            document=struct_to_wire(document, "document"),
        )

    # --- beyond the recipe ---------------------------------------------------------------

    @unary
    async def ListSessions(
        self, request: pb.ListSessionsRequest, call: Call
    ) -> pb.ListSessionsResponse:
        rows, next_token, total = await self._sessions.list_sessions(
            request.user_id, request.page_size, request.page_token
        )
        return pb.ListSessionsResponse(
            sessions=[
                pb.SessionSummary(
                    session_handle=row.handle,
                    user_id=row.user_id,
                    client_metadata=pb.ClientMetadata(
                        ip=row.client_ip, user_agent=row.user_agent, device=row.device
                    ),
                    create_time=timestamp_to_wire(row.created_ms),
                    last_refresh_time=timestamp_to_wire(row.last_refreshed_ms or row.created_ms),
                    expire_time=timestamp_to_wire(row.expires_ms),
                )
                for row in rows
            ],
            next_page_token=next_token,
            total_size=total,
        )

    @unary
    async def RevokeOtherSessions(
        self, request: pb.RevokeOtherSessionsRequest, call: Call
    ) -> pb.RevokeOtherSessionsResponse:
        handles = await self._sessions.revoke_other_sessions(request.session_handle)
        return pb.RevokeOtherSessionsResponse(revoked_session_handles=handles)

    @server_stream
    async def WatchRevocations(
        self, request: pb.WatchRevocationsRequest, call: Call
    ) -> AsyncIterator[pb.WatchRevocationsResponse]:
        async for rows, cursor in self._revocations.watch(request.after_cursor):
            yield pb.WatchRevocationsResponse(
                revocations=[
                    pb.Revocation(
                        session_handle=row.handle,
                        user_id=row.user_id,
                        revoke_time=timestamp_to_wire(row.revoked_at_ms),
                        cursor=row.cursor,
                        access_tokens_expire_time=timestamp_to_wire(
                            self._sessions.access_tokens_valid_until(row)
                        ),
                    )
                    for row in rows
                ],
                cursor=cursor,
            )
