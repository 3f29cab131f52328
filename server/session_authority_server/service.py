"""The gRPC servicer: protobuf <-> domain translation only.

Each RPC parses its request into Python values, calls the SessionManager and
builds the response. Errors leave through one place (:func:`_translate_errors`)
as google.rpc.Status + ErrorInfo, per the table in session_authority.errors.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf.message import DecodeError
from session_authority.errors import (
    InternalServerError,
    InvalidArgumentError,
    SessionError,
    StorageUnavailableError,
    TokenTheftDetectedError,
    status_code_for,
)
from session_authority.v1 import session_service_pb2 as pb
from session_authority.wire import (
    failures_to_wire,
    rich_status,
    validator_to_wire,
    validators_from_wire,
)

from .auth import CallerAuthenticator
from .metrics import Metrics
from .sessions import IssuedToken, SessionManager, SessionTokens
from .storage.base import StorageUnavailable
from .tokens import json_text
from .validation import (
    MAX_ACCESS_TOKEN_PAYLOAD_BYTES,
    MAX_JWT_PAYLOAD_BYTES,
    MAX_SESSION_DATA_BYTES,
    check_optional_user_id,
    parse_json_object,
    parse_json_value,
)

log = logging.getLogger(__name__)

Request = TypeVar("Request")
R = TypeVar("R")
Context = Any  # grpc.aio.ServicerContext; grpcio ships no type information


async def abort_with_error(context: Context, error: SessionError) -> NoReturn:
    await context.abort_with_status(rich_status(error))
    raise AssertionError("abort_with_status returned")


class UndecodableRequest:
    """Stands in for a request whose bytes are not a valid message (bad UTF-8 in a
    string field, say), so the RPC can answer INVALID_ARGUMENT rather than the
    INTERNAL that grpcio sends when a deserializer raises."""


def _lenient(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError:
            return UndecodableRequest()

    return deserialize


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
            request_deserializer=_lenient(getattr(pb, method.input_type.name).FromString),
            response_serializer=getattr(pb, method.output_type.name).SerializeToString,
        )
        for method in service.methods
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )


def _translate_errors(
    method: Callable[[SessionServicer, Request, Context], Awaitable[R]],
) -> Callable[[SessionServicer, Request, Context], Awaitable[R]]:
    """The one way in and out of every RPC: caller authentication, malformed
    requests, metrics, and errors as statuses. Anything unexpected is INTERNAL,
    logged here with its traceback and sent with a generic message."""

    name = method.__name__

    @functools.wraps(method)
    async def wrapper(self: SessionServicer, request: Request, context: Context) -> R:
        started = time.perf_counter()
        try:
            self._authenticator.check(context)
            if isinstance(request, UndecodableRequest):
                raise InvalidArgumentError(
                    "the request is not a valid message (a string field is not UTF-8?)",
                    field="request",
                )
            response = await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except SessionError as error:
            failure: SessionError = error
        except StorageUnavailable as error:
            log.warning("%s: storage unavailable: %s", name, error)
            failure = StorageUnavailableError("the session store is unavailable; retry later")
        except Exception:
            log.exception("%s failed unexpectedly", name)
            failure = InternalServerError("internal error")
        else:
            self._metrics.observe_rpc(name, "OK", time.perf_counter() - started, response)
            return response
        self._metrics.observe_rpc(
            name, status_code_for(failure).name, time.perf_counter() - started, None
        )
        if isinstance(failure, TokenTheftDetectedError):
            self._metrics.thefts.inc()
        await abort_with_error(context, failure)

    return wrapper


def _token(token: IssuedToken) -> pb.Token:
    return pb.Token(
        token=token.token, expiry_ms=token.expiry_ms, created_time_ms=token.created_time_ms
    )


def _session(handle: str, user_id: str, tenant_id: str, payload: dict[str, Any]) -> pb.Session:
    return pb.Session(
        session_handle=handle,
        user_id=user_id,
        tenant_id=tenant_id,
        access_token_payload_json=json_text(payload),
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


class SessionServicer:
    def __init__(
        self,
        sessions: SessionManager,
        authenticator: CallerAuthenticator,
        metrics: Metrics,
    ) -> None:
        self._sessions = sessions
        self._authenticator = authenticator
        self._metrics = metrics

    @_translate_errors
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

    @_translate_errors
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

    @_translate_errors
    async def RefreshSession(
        self, request: pb.RefreshSessionRequest, context: Context
    ) -> pb.RefreshSessionResponse:
        tokens = await self._sessions.refresh_session(
            request.refresh_token,
            request.anti_csrf_token if request.HasField("anti_csrf_token") else None,
            disable_anti_csrf=request.disable_anti_csrf,
        )
        return pb.RefreshSessionResponse(**_issued(tokens))

    @_translate_errors
    async def RevokeSession(
        self, request: pb.RevokeSessionRequest, context: Context
    ) -> pb.RevokeSessionResponse:
        revoked = await self._sessions.revoke_session(request.session_handle)
        return pb.RevokeSessionResponse(revoked=revoked)

    @_translate_errors
    async def RevokeAllSessionsForUser(
        self, request: pb.RevokeAllSessionsForUserRequest, context: Context
    ) -> pb.RevokeAllSessionsForUserResponse:
        handles = await self._sessions.revoke_all_sessions_for_user(request.user_id)
        return pb.RevokeAllSessionsForUserResponse(revoked_session_handles=handles)

    @_translate_errors
    async def RevokeMultipleSessions(
        self, request: pb.RevokeMultipleSessionsRequest, context: Context
    ) -> pb.RevokeMultipleSessionsResponse:
        handles = await self._sessions.revoke_multiple_sessions(list(request.session_handles))
        return pb.RevokeMultipleSessionsResponse(revoked_session_handles=handles)

    @_translate_errors
    async def GetAllSessionHandlesForUser(
        self, request: pb.GetAllSessionHandlesForUserRequest, context: Context
    ) -> pb.GetAllSessionHandlesForUserResponse:
        handles = await self._sessions.get_all_session_handles_for_user(request.user_id)
        return pb.GetAllSessionHandlesForUserResponse(session_handles=handles)

    @_translate_errors
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

    @_translate_errors
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

    @_translate_errors
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

    @_translate_errors
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

    @_translate_errors
    async def GetJwks(self, request: pb.GetJwksRequest, context: Context) -> pb.GetJwksResponse:
        keys, max_age = await self._sessions.keys.jwks()
        return pb.GetJwksResponse(
            keys=[pb.JsonWebKey(**jwk) for jwk in keys], max_age_seconds=max_age
        )

    # --- claims ------------------------------------------------------------------------

    @_translate_errors
    async def SetClaimValue(
        self, request: pb.SetClaimValueRequest, context: Context
    ) -> pb.SetClaimValueResponse:
        value = parse_json_value(request.value_json, "value_json", MAX_ACCESS_TOKEN_PAYLOAD_BYTES)
        updated = await self._sessions.set_claim_value(
            request.session_handle, request.claim_key, value
        )
        return pb.SetClaimValueResponse(updated=updated)

    @_translate_errors
    async def GetClaimValue(
        self, request: pb.GetClaimValueRequest, context: Context
    ) -> pb.GetClaimValueResponse:
        exists, value = await self._sessions.get_claim_value(
            request.session_handle, request.claim_key
        )
        response = pb.GetClaimValueResponse(session_exists=exists)
        if value is not None:
            response.value_json = json_text(value)
        return response

    @_translate_errors
    async def RemoveClaim(
        self, request: pb.RemoveClaimRequest, context: Context
    ) -> pb.RemoveClaimResponse:
        updated = await self._sessions.remove_claim(request.session_handle, request.claim_key)
        return pb.RemoveClaimResponse(updated=updated)

    @_translate_errors
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
        failures = await self._sessions.validate_claims(
            payload, validators_from_wire(request.claim_validators)
        )
        return pb.ValidateClaimsResponse(invalid_claims=failures_to_wire(failures))

    @_translate_errors
    async def ValidateClaimsInJwtPayload(
        self, request: pb.ValidateClaimsInJwtPayloadRequest, context: Context
    ) -> pb.ValidateClaimsInJwtPayloadResponse:
        check_optional_user_id(request.user_id)
        payload = parse_json_object(
            request.jwt_payload_json, "jwt_payload_json", MAX_ACCESS_TOKEN_PAYLOAD_BYTES
        )
        failures = await self._sessions.validate_claims(
            payload, validators_from_wire(request.claim_validators)
        )
        return pb.ValidateClaimsInJwtPayloadResponse(invalid_claims=failures_to_wire(failures))

    @_translate_errors
    async def GetGlobalClaimValidators(
        self, request: pb.GetGlobalClaimValidatorsRequest, context: Context
    ) -> pb.GetGlobalClaimValidatorsResponse:
        check_optional_user_id(request.user_id)
        return pb.GetGlobalClaimValidatorsResponse(
            claim_validators=[validator_to_wire(v) for v in self._sessions.global_claim_validators]
        )

    # --- JWTs and discovery ----------------------------------------------------------------

    @_translate_errors
    async def CreateJwt(
        self, request: pb.CreateJwtRequest, context: Context
    ) -> pb.CreateJwtResponse:
        jwt = await self._sessions.create_jwt(
            parse_json_object(request.payload_json, "payload_json", MAX_JWT_PAYLOAD_BYTES),
            request.validity_seconds if request.HasField("validity_seconds") else None,
            (
                request.use_static_signing_key
                if request.HasField("use_static_signing_key")
                else None
            ),
        )
        return pb.CreateJwtResponse(jwt=jwt)

    @_translate_errors
    async def GetOpenIdDiscoveryConfiguration(
        self, request: pb.GetOpenIdDiscoveryConfigurationRequest, context: Context
    ) -> pb.GetOpenIdDiscoveryConfigurationResponse:
        document = self._sessions.open_id_discovery_configuration()
        return pb.GetOpenIdDiscoveryConfigurationResponse(
            issuer=document["issuer"],
            jwks_uri=document["jwks_uri"],
            document_json=json_text(document),
        )

    # --- beyond the recipe ---------------------------------------------------------------

    @_translate_errors
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

    @_translate_errors
    async def RevokeOtherSessions(
        self, request: pb.RevokeOtherSessionsRequest, context: Context
    ) -> pb.RevokeOtherSessionsResponse:
        handles = await self._sessions.revoke_other_sessions(request.session_handle)
        return pb.RevokeOtherSessionsResponse(revoked_session_handles=handles)

    async def WatchRevocations(
        self, request: pb.WatchRevocationsRequest, context: Context
    ) -> AsyncIterator[pb.WatchRevocationsResponse]:
        """A server stream: errors are translated here as in _translate_errors."""
        try:
            self._authenticator.check(context)
            if isinstance(request, UndecodableRequest):
                raise InvalidArgumentError("the request is not a valid message", field="request")
            feed = self._sessions.revocations
            async for rows, cursor in feed.watch(request.after_cursor):
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
        except SessionError as error:
            await abort_with_error(context, error)
        except StorageUnavailable as error:
            log.warning("WatchRevocations: storage unavailable: %s", error)
            await abort_with_error(
                context, StorageUnavailableError("the session store is unavailable; retry later")
            )
