"""SessionClient: the typed async SDK over the generated gRPC stubs.

One method per RPC. Protobuf stays in this module: callers get dataclasses,
dicts and the exceptions of :mod:`session_authority.errors`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from .errors import (
    ERROR_DOMAIN,
    AuthorityUnreachableError,
    SessionError,
    UnauthorisedError,
    error_from_wire,
)
from .session import RegeneratedAccessToken, SessionContainer, SessionInformation, TokenInfo
from .v1 import session_service_pb2 as pb
from .v1 import session_service_pb2_grpc as pb_grpc
from .verify import JwksCache, check_anti_csrf, parse_access_token, verify_access_token

_Response = TypeVar("_Response")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _token_info(token: pb.Token) -> TokenInfo:
    return TokenInfo(token.token, token.expiry_ms, token.created_time_ms)


def _error_from_rpc(error: grpc.aio.AioRpcError) -> SessionError:
    """Rebuild the authority's exception from the ErrorInfo in the status details."""
    try:
        status = rpc_status.from_call(error)
    except ValueError:  # details that contradict the status code: not from us
        status = None
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info) and info.domain == ERROR_DOMAIN:
            return error_from_wire(info.reason, status.message, dict(info.metadata))
    return AuthorityUnreachableError(
        f"the session authority did not answer: {error.code().name}",
        status_code=error.code(),
    )


class SessionClient:
    """Async client of the session authority.

    ``async with SessionClient("127.0.0.1:50051") as sessions: ...``

    With ``verify_locally`` (the default) ``get_session`` checks access tokens
    against a cached JWKS and makes no RPC, unless ``check_database`` is set or a
    token names a key the cache lacks (one rate-limited JWKS refetch).
    """

    def __init__(
        self,
        target: str,
        *,
        api_key: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        verify_locally: bool = True,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(target, options=list(channel_options))
        else:
            self._channel = grpc.aio.secure_channel(
                target, credentials, options=list(channel_options)
            )
        self._stub = pb_grpc.SessionServiceStub(self._channel)
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {api_key}"),) if api_key else ()
        )
        self._timeout = timeout
        self._clock = clock
        self.verify_locally = verify_locally
        self.jwks = JwksCache(self._fetch_jwks)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: Callable[..., Awaitable[_Response]], request: Any) -> _Response:
        try:
            response: _Response = await method(
                request, timeout=self._timeout, metadata=self._metadata
            )
        except grpc.aio.AioRpcError as error:
            raise _error_from_rpc(error) from None
        return response

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _container(
        self,
        session: pb.Session,
        access_token: pb.Token,
        refresh_token: pb.Token | None,
        anti_csrf_token: str | None,
    ) -> SessionContainer:
        return SessionContainer(
            user_id=session.user_id,
            session_handle=session.session_handle,
            access_token=access_token.token,
            access_token_payload=json.loads(session.access_token_payload_json),
            refresh_token=refresh_token.token if refresh_token is not None else None,
            anti_csrf_token=anti_csrf_token,
            tenant_id=session.tenant_id,
            access_token_expiry=access_token.expiry_ms,
            refresh_token_expiry=refresh_token.expiry_ms if refresh_token is not None else None,
            _client=self,
        )

    # --- sessions -----------------------------------------------------------------

    async def create_new_session(
        self,
        user_id: str,
        access_token_payload: dict[str, Any] | None = None,
        session_data_in_database: dict[str, Any] | None = None,
        disable_anti_csrf: bool = False,
    ) -> SessionContainer:
        response = await self._call(
            self._stub.CreateNewSession,
            pb.CreateNewSessionRequest(
                user_id=user_id,
                access_token_payload_json=_dumps(access_token_payload or {}),
                session_data_in_database_json=_dumps(session_data_in_database or {}),
                disable_anti_csrf=disable_anti_csrf,
            ),
        )
        return self._container(
            response.session,
            response.access_token,
            response.refresh_token,
            response.anti_csrf_token if response.HasField("anti_csrf_token") else None,
        )

    async def get_session(
        self,
        access_token: str | None,
        anti_csrf_token: str | None = None,
        *,
        anti_csrf_check: bool | None = None,
        session_required: bool = True,
        check_database: bool = False,
        override_global_claim_validators: Sequence[Any] | None = None,
    ) -> SessionContainer | None:
        """Verify an access token; None only when there is none and none is required."""
        if not access_token:
            if not session_required:
                return None
            raise UnauthorisedError("no access token was presented", clear_tokens=False)
        if override_global_claim_validators:
            raise SessionError("claim validators arrive with the claims release of the authority")
        if self.verify_locally and not check_database:
            return await self._get_session_locally(access_token, anti_csrf_token, anti_csrf_check)
        request = pb.GetSessionRequest(access_token=access_token, check_database=check_database)
        if anti_csrf_token is not None:
            request.anti_csrf_token = anti_csrf_token
        if anti_csrf_check is not None:
            request.anti_csrf_check = anti_csrf_check
        response = await self._call(self._stub.GetSession, request)
        return self._container(response.session, response.access_token, None, None)

    async def _get_session_locally(
        self, access_token: str, anti_csrf_token: str | None, anti_csrf_check: bool | None
    ) -> SessionContainer:
        parsed = parse_access_token(access_token)
        key = self.jwks.cached(parsed.kid) or await self.jwks.get(parsed.kid)
        payload = verify_access_token(parsed, key, self._now_ms())
        check_anti_csrf(payload, anti_csrf_token, anti_csrf_check)
        return SessionContainer(
            user_id=payload["sub"],
            session_handle=payload["sessionHandle"],
            access_token=access_token,
            access_token_payload=payload,
            refresh_token=None,
            anti_csrf_token=None,
            tenant_id=payload.get("tId", "public"),
            access_token_expiry=payload["exp"] * 1000,
            _client=self,
        )

    async def refresh_session(
        self,
        refresh_token: str,
        anti_csrf_token: str | None = None,
        *,
        disable_anti_csrf: bool = False,
    ) -> SessionContainer:
        request = pb.RefreshSessionRequest(
            refresh_token=refresh_token, disable_anti_csrf=disable_anti_csrf
        )
        if anti_csrf_token is not None:
            request.anti_csrf_token = anti_csrf_token
        response = await self._call(self._stub.RefreshSession, request)
        return self._container(
            response.session,
            response.access_token,
            response.refresh_token,
            response.anti_csrf_token if response.HasField("anti_csrf_token") else None,
        )

    async def revoke_session(self, session_handle: str) -> bool:
        response = await self._call(
            self._stub.RevokeSession, pb.RevokeSessionRequest(session_handle=session_handle)
        )
        return bool(response.revoked)

    async def revoke_multiple_sessions(self, session_handles: Sequence[str]) -> list[str]:
        response = await self._call(
            self._stub.RevokeMultipleSessions,
            pb.RevokeMultipleSessionsRequest(session_handles=list(session_handles)),
        )
        return list(response.revoked_session_handles)

    async def revoke_all_sessions_for_user(self, user_id: str) -> list[str]:
        response = await self._call(
            self._stub.RevokeAllSessionsForUser,
            pb.RevokeAllSessionsForUserRequest(user_id=user_id),
        )
        return list(response.revoked_session_handles)

    async def get_all_session_handles_for_user(self, user_id: str) -> list[str]:
        response = await self._call(
            self._stub.GetAllSessionHandlesForUser,
            pb.GetAllSessionHandlesForUserRequest(user_id=user_id),
        )
        return list(response.session_handles)

    async def get_session_information(self, session_handle: str) -> SessionInformation | None:
        response = await self._call(
            self._stub.GetSessionInformation,
            pb.GetSessionInformationRequest(session_handle=session_handle),
        )
        if not response.HasField("session_information"):
            return None
        info = response.session_information
        return SessionInformation(
            session_handle=info.session_handle,
            user_id=info.user_id,
            session_data_in_database=json.loads(info.session_data_in_database_json),
            expiry=info.expiry_ms,
            custom_claims_in_access_token_payload=json.loads(
                info.custom_claims_in_access_token_payload_json
            ),
            time_created=info.time_created_ms,
            tenant_id=info.tenant_id,
        )

    async def update_session_data_in_database(
        self, session_handle: str, new_session_data: dict[str, Any]
    ) -> bool:
        response = await self._call(
            self._stub.UpdateSessionDataInDatabase,
            pb.UpdateSessionDataInDatabaseRequest(
                session_handle=session_handle, new_session_data_json=_dumps(new_session_data)
            ),
        )
        return bool(response.updated)

    async def merge_into_access_token_payload(
        self, session_handle: str, access_token_payload_update: dict[str, Any]
    ) -> bool:
        response = await self._call(
            self._stub.MergeIntoAccessTokenPayload,
            pb.MergeIntoAccessTokenPayloadRequest(
                session_handle=session_handle,
                access_token_payload_update_json=_dumps(access_token_payload_update),
            ),
        )
        return bool(response.updated)

    async def regenerate_access_token(
        self, access_token: str, new_access_token_payload: dict[str, Any] | None = None
    ) -> RegeneratedAccessToken | None:
        """Re-mint an access token (same expiry); None when the session is gone."""
        request = pb.RegenerateAccessTokenRequest(access_token=access_token)
        if new_access_token_payload is not None:
            request.new_access_token_payload_json = _dumps(new_access_token_payload)
        response = await self._call(self._stub.RegenerateAccessToken, request)
        if not response.session_exists:
            return None
        return RegeneratedAccessToken(
            session_handle=response.session.session_handle,
            user_id=response.session.user_id,
            access_token_payload=json.loads(response.session.access_token_payload_json),
            access_token=(
                _token_info(response.access_token) if response.HasField("access_token") else None
            ),
        )

    # --- keys -----------------------------------------------------------------------

    async def get_jwks(self) -> dict[str, Any]:
        """``{"keys": [JWK, ...]}``: every key that can verify a live access token."""
        keys, _ = await self._fetch_jwks()
        return {"keys": keys}

    async def _fetch_jwks(self) -> tuple[list[dict[str, Any]], int]:
        response = await self._call(self._stub.GetJwks, pb.GetJwksRequest())
        keys = []
        for key in response.keys:
            jwk = {
                name: getattr(key, name)
                for name in ("kty", "kid", "alg", "use", "n", "e", "crv", "x", "y")
                if getattr(key, name)
            }
            keys.append(jwk)
        return keys, response.max_age_seconds
