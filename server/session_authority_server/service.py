"""The gRPC servicer: protobuf <-> domain translation only.

Each RPC parses its request into Python values, calls the part of the authority
that does the work (the recipe, claims, the token issuer) and builds the
response. Every RPC passes through the gate (rpc_gate.py) on its way in and out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from session_authority.json_text import compact_json
from session_authority.session import TokenInfo
from session_authority.v1 import session_service_pb2 as pb
from session_authority.wire import (
    failures_to_wire,
    validator_to_wire,
    validators_from_wire,
)

from .assembly import Authority
from .metrics import Metrics
from .rpc_gate import Context, Gated, RpcGate, lenient, server_stream, unary
from .sessions import SessionTokens
from .validation import (
    MAX_ACCESS_TOKEN_PAYLOAD_BYTES,
    MAX_JWT_PAYLOAD_BYTES,
    MAX_SESSION_DATA_BYTES,
    check_optional_user_id,
    parse_json_object,
    parse_json_value,
)


def register(servicer: SessionServicer, server: Any) -> None:
    """Add the servicer to a grpc.aio server, one handler per RPC of the proto."""
    service = pb.DESCRIPTOR.services_by_name["SessionService"]
    handlers = {
        method.name: (
            grpc.unary_stream_rpc_method_handler
            if method.server_streaming
            else grpc.unary_unary_rpc_method_handler
        )(
            getattr(servicer, method.name),
            request_deserializer=lenient(getattr(pb, method.input_type.name).FromString),
            response_serializer=getattr(pb, method.output_type.name).SerializeToString,
        )
        for method in service.methods
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )


def _token(token: TokenInfo) -> pb.Token:
    return pb.Token(token=token.token, expiry_ms=token.expiry, created_time_ms=token.created_time)


def _session(handle: str, user_id: str, tenant_id: str, payload: dict[str, Any]) -> pb.Session:
    return pb.Session(
        session_handle=handle,
        user_id=user_id,
        tenant_id=tenant_id,
        access_token_payload_json=compact_json(payload),
    )


def _issued(tokens: SessionTokens) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "session": _session(
            tokens.handle, tokens.user_id, tokens.tenant_id, tokens.access_token_payload
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
        self, request: pb.CreateNewSessionRequest, context: Context
    ) -> pb.CreateNewSessionResponse:
        tokens = await self._sessions.create_new_session(
            request.user_id,
            parse_json_object(
                request.access_token_payload_json,
                "access_token_payload_json",
                MAX_ACCESS_TOKEN_PAYLOAD_BYTES,
            ),
            parse_json_object(
                request.session_data_in_database_json,
                "session_data_in_database_json",
                MAX_SESSION_DATA_BYTES,
            ),
            disable_anti_csrf=request.disable_anti_csrf,
            client_ip=request.client_metadata.ip,
            user_agent=request.client_metadata.user_agent,
            device=request.client_metadata.device,
        )
        return pb.CreateNewSessionResponse(**_issued(tokens))

    @unary
    async def GetSession(
        self, request: pb.GetSessionRequest, context: Context
    ) -> pb.GetSessionResponse:
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
            session=_session(
                verified.handle,
                verified.user_id,
                verified.tenant_id,
                verified.access_token_payload,
            ),
            access_token=_token(verified.access_token),
        )

    @unary
    async def RefreshSession(
        self, request: pb.RefreshSessionRequest, context: Context
    ) -> pb.RefreshSessionResponse:
        tokens = await self._sessions.refresh_session(
            request.refresh_token,
            request.anti_csrf_token if request.HasField("anti_csrf_token") else None,
            disable_anti_csrf=request.disable_anti_csrf,
        )
        return pb.RefreshSessionResponse(**_issued(tokens))

    @unary
    async def RevokeSession(
        self, request: pb.RevokeSessionRequest, context: Context
    ) -> pb.RevokeSessionResponse:
        revoked = await self._sessions.revoke_session(request.session_handle)
        return pb.RevokeSessionResponse(revoked=revoked)

    @unary
    async def RevokeAllSessionsForUser(
        self, request: pb.RevokeAllSessionsForUserRequest, context: Context
    ) -> pb.RevokeAllSessionsForUserResponse:
        handles = await self._sessions.revoke_all_sessions_for_user(request.user_id)
        return pb.RevokeAllSessionsForUserResponse(revoked_session_handles=handles)

    @unary
    async def RevokeMultipleSessions(
        self, request: pb.RevokeMultipleSessionsRequest, context: Context
    ) -> pb.RevokeMultipleSessionsResponse:
        handles = await self._sessions.revoke_multiple_sessions(list(request.session_handles))
        return pb.RevokeMultipleSessionsResponse(revoked_session_handles=handles)

    @unary
    async def GetAllSessionHandlesForUser(
        self, request: pb.GetAllSessionHandlesForUserRequest, context: Context
    ) -> pb.GetAllSessionHandlesForUserResponse:
        handles = await self._sessions.get_all_session_handles_for_user(request.user_id)
        return pb.GetAllSessionHandlesForUserResponse(session_handles=handles)

    @unary
    async def GetSessionInformation(
        self, request: pb.GetSessionInformationRequest, context: Context
    ) -> pb.GetSessionInformationResponse:
        row = await self._sessions.get_session_information(request.session_handle)
        if row is None:
            return pb.GetSessionInformationResponse()
        return pb.GetSessionInformationResponse(
            session_information=pb.SessionInformation(
                session_handle=row.handle,
                user_id=row.user_id,
                tenant_id=row.tenant_id,
                session_data_in_database_json=row.session_data,
                expiry_ms=row.expires_ms,
                custom_claims_in_access_token_payload_json=row.access_token_payload,
                time_created_ms=row.created_ms,
            )
        )

    @unary
    async def UpdateSessionDataInDatabase(
        self, request: pb.UpdateSessionDataInDatabaseRequest, context: Context
    ) -> pb.UpdateSessionDataInDatabaseResponse:
        updated = await self._sessions.update_session_data_in_database(
            request.session_handle,
            parse_json_object(
                request.new_session_data_json, "new_session_data_json", MAX_SESSION_DATA_BYTES
            ),
        )
        return pb.UpdateSessionDataInDatabaseResponse(updated=updated)

    @unary
    async def MergeIntoAccessTokenPayload(
        self, request: pb.MergeIntoAccessTokenPayloadRequest, context: Context
    ) -> pb.MergeIntoAccessTokenPayloadResponse:
        updated = await self._sessions.merge_into_access_token_payload(
            request.session_handle,
            parse_json_object(
                request.access_token_payload_update_json,
                "access_token_payload_update_json",
                MAX_ACCESS_TOKEN_PAYLOAD_BYTES,
            ),
        )
        return pb.MergeIntoAccessTokenPayloadResponse(updated=updated)

    @unary
    async def RegenerateAccessToken(
        self, request: pb.RegenerateAccessTokenRequest, context: Context
    ) -> pb.RegenerateAccessTokenResponse:
        new_claims = (
            parse_json_object(
                request.new_access_token_payload_json,
                "new_access_token_payload_json",
                MAX_ACCESS_TOKEN_PAYLOAD_BYTES,
            )
            if request.HasField("new_access_token_payload_json")
            else None
        )
        result = await self._sessions.regenerate_access_token(request.access_token, new_claims)
        if result is None:
            return pb.RegenerateAccessTokenResponse(session_exists=False)
        response = pb.RegenerateAccessTokenResponse(
            session_exists=True,
            session=_session(
                result.handle, result.user_id, result.tenant_id, result.access_token_payload
            ),
        )
        if result.access_token is not None:
            response.access_token.CopyFrom(_token(result.access_token))
        return response

    @unary
    async def GetJwks(self, request: pb.GetJwksRequest, context: Context) -> pb.GetJwksResponse:
        keys, max_age = await self._tokens.keys.jwks()
        self._metrics.jwks_fetches.labels("grpc").inc()
        return pb.GetJwksResponse(
            keys=[pb.JsonWebKey(**jwk) for jwk in keys], max_age_seconds=max_age
        )

    # --- claims ------------------------------------------------------------------------

    @unary
    async def SetClaimValue(
        self, request: pb.SetClaimValueRequest, context: Context
    ) -> pb.SetClaimValueResponse:
        value = parse_json_value(request.value_json, "value_json", MAX_ACCESS_TOKEN_PAYLOAD_BYTES)
        updated = await self._claims.set_claim_value(
            request.session_handle, request.claim_key, value
        )
        return pb.SetClaimValueResponse(updated=updated)

    @unary
    async def GetClaimValue(
        self, request: pb.GetClaimValueRequest, context: Context
    ) -> pb.GetClaimValueResponse:
        exists, value = await self._claims.get_claim_value(
            request.session_handle, request.claim_key
        )
        response = pb.GetClaimValueResponse(session_exists=exists)
        if value is not None:
            response.value_json = compact_json(value)
        return response

    @unary
    async def RemoveClaim(
        self, request: pb.RemoveClaimRequest, context: Context
    ) -> pb.RemoveClaimResponse:
        updated = await self._claims.remove_claim(request.session_handle, request.claim_key)
        return pb.RemoveClaimResponse(updated=updated)

    @unary
    async def ValidateClaims(
        self, request: pb.ValidateClaimsRequest, context: Context
    ) -> pb.ValidateClaimsResponse:
        # Fetch functions live with the caller, so nothing is refetched here and the
        # payload never changes: access_token_payload_update_json stays absent.
        check_optional_user_id(request.user_id)
        payload = parse_json_object(
            request.access_token_payload_json,
            "access_token_payload_json",
            MAX_ACCESS_TOKEN_PAYLOAD_BYTES,
        )
        failures = await self._claims.validate_claims(
            payload, validators_from_wire(request.claim_validators)
        )
        return pb.ValidateClaimsResponse(invalid_claims=failures_to_wire(failures))

    @unary
    async def ValidateClaimsInJwtPayload(
        self, request: pb.ValidateClaimsInJwtPayloadRequest, context: Context
    ) -> pb.ValidateClaimsInJwtPayloadResponse:
        check_optional_user_id(request.user_id)
        payload = parse_json_object(
            request.jwt_payload_json, "jwt_payload_json", MAX_ACCESS_TOKEN_PAYLOAD_BYTES
        )
        failures = await self._claims.validate_claims(
            payload, validators_from_wire(request.claim_validators)
        )
        return pb.ValidateClaimsInJwtPayloadResponse(invalid_claims=failures_to_wire(failures))

    @unary
    async def GetGlobalClaimValidators(
        self, request: pb.GetGlobalClaimValidatorsRequest, context: Context
    ) -> pb.GetGlobalClaimValidatorsResponse:
        check_optional_user_id(request.user_id)
        return pb.GetGlobalClaimValidatorsResponse(
            claim_validators=[validator_to_wire(v) for v in self._claims.global_validators]
        )

    # --- JWTs and discovery ----------------------------------------------------------------

    @unary
    async def CreateJwt(
        self, request: pb.CreateJwtRequest, context: Context
    ) -> pb.CreateJwtResponse:
        jwt = await self._tokens.create_jwt(
            parse_json_object(request.payload_json, "payload_json", MAX_JWT_PAYLOAD_BYTES),
            request.validity_seconds if request.HasField("validity_seconds") else None,
            (
                request.use_static_signing_key
                if request.HasField("use_static_signing_key")
                else None
            ),
        )
        return pb.CreateJwtResponse(jwt=jwt)

    @unary
    async def GetOpenIdDiscoveryConfiguration(
        self, request: pb.GetOpenIdDiscoveryConfigurationRequest, context: Context
    ) -> pb.GetOpenIdDiscoveryConfigurationResponse:
        document = self._tokens.open_id_discovery_configuration()
        return pb.GetOpenIdDiscoveryConfigurationResponse(
            issuer=document["issuer"],
            jwks_uri=document["jwks_uri"],
            document_json=compact_json(document),
        )

    # --- beyond the recipe ---------------------------------------------------------------

    @unary
    async def ListSessions(
        self, request: pb.ListSessionsRequest, context: Context
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
                    time_created_ms=row.created_ms,
                    last_refreshed_ms=row.last_refreshed_ms or row.created_ms,
                    expiry_ms=row.expires_ms,
                )
                for row in rows
            ],
            next_page_token=next_token,
            total_count=total,
        )

    @unary
    async def RevokeOtherSessions(
        self, request: pb.RevokeOtherSessionsRequest, context: Context
    ) -> pb.RevokeOtherSessionsResponse:
        handles = await self._sessions.revoke_other_sessions(request.session_handle)
        return pb.RevokeOtherSessionsResponse(revoked_session_handles=handles)

    @server_stream
    async def WatchRevocations(
        self, request: pb.WatchRevocationsRequest, context: Context
    ) -> AsyncIterator[pb.WatchRevocationsResponse]:
        async for rows, cursor in self._revocations.watch(request.after_cursor):
            yield pb.WatchRevocationsResponse(
                revocations=[
                    pb.Revocation(
                        session_handle=row.handle,
                        user_id=row.user_id,
                        revoked_at_ms=row.revoked_at_ms,
                        cursor=row.cursor,
                        access_tokens_valid_until_ms=(
                            self._sessions.access_tokens_valid_until(row)
                        ),
                    )
                    for row in rows
                ],
                cursor=cursor,
            )
