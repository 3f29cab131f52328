"""SessionClient: the SDK's facade, one method per RPC of the RecipeInterface.

Each method builds its request and reads its response here (protobuf stays in
this module and wire.py): callers get the dataclasses of session.py, dicts and
the exceptions of errors.py. Local verification, the authority's validators and
the revocation stream live in local_verification.py, global_validators.py and
revocations.py.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc

from .claims import ClaimValidationResult, ClaimValidator, SessionClaim, refetch_updates
from .errors import ClaimValidationError, UnauthorisedError
from .global_validators import AuthorityValidatorCache, OverrideValidators, apply_override
from .local_verification import LocalVerifier
from .revocations import RevocationWatcher, RevokedSession
from .session import (
    ClaimValue,
    ClientMetadata,
    RegeneratedAccessToken,
    SessionContainer,
    SessionInformation,
    SessionPage,
    SessionSummary,
    TokenInfo,
)
from .structs import struct_from_wire, struct_to_wire, value_from_wire, value_to_wire
from .v1 import session_service_pb2 as pb
from .v1 import session_service_pb2_grpc as pb_grpc
from .verify import DEFAULT_TENANT_ID
from .wire import (
    error_from_rpc_error,
    failures_from_wire,
    timestamp_from_wire,
    validator_to_wire,
    validators_from_wire,
)

_Response = TypeVar("_Response")

# The public fields of a JWK, as GetJwks carries them.
_JWK_FIELDS = ("kty", "kid", "alg", "use", "n", "e", "crv", "x", "y")


def _token_info(token: pb.Token) -> TokenInfo:
    return TokenInfo(
        token.token, timestamp_from_wire(token.expire_time), timestamp_from_wire(token.create_time)
    )


class SessionClient:
    """Async client of the session authority.

    ``async with SessionClient("127.0.0.1:50051") as sessions: ...``

    With ``verify_locally`` (the default) ``get_session`` checks access tokens
    against a cached JWKS and makes no RPC, unless ``check_database`` is set or a
    token names a key the cache lacks (one rate-limited JWKS refetch).

    With ``watch_revocations`` a background stream tells the client of every
    revocation, and local verification rejects revoked sessions within about a
    second. If the stream has been silent for longer than ``revocation_staleness``
    seconds (it heartbeats every 5 s), local verification asks the authority
    instead (as with ``check_database``) until the stream is back.

    Claim validators run in the client: the authority's global validators
    (fetched once an hour) plus ``global_claim_validators`` given here, or what
    ``override_global_claim_validators`` makes of them. Claims that should be
    refetched are fetched here, where their fetch functions live.
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
        global_claim_validators: Sequence[Any] = (),
        watch_revocations: bool = False,
        revocation_staleness: float = 30.0,
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
        self.global_claim_validators = list(global_claim_validators)
        self._authority_validators = AuthorityValidatorCache(self._fetch_global_claim_validators)
        self.revocations = (
            RevocationWatcher(
                self._revocation_stream, staleness_s=revocation_staleness, now_ms=self.now_ms
            )
            if watch_revocations
            else None
        )
        self._local_verifier = LocalVerifier(
            self._fetch_jwks, now_ms=self.now_ms, revocations=self.revocations
        )
        self.jwks = self._local_verifier.jwks

    async def __aenter__(self) -> Self:
        if self.revocations is not None:
            self.revocations.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self.revocations is not None:
            await self.revocations.stop()
        await self._channel.close()

    async def _call(self, method: Callable[..., Awaitable[_Response]], request: Any) -> _Response:
        try:
            response: _Response = await method(
                request, timeout=self._timeout, metadata=self._metadata
            )
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc_error(error) from None
        return response

    def now_ms(self) -> int:
        """The client's clock (injectable for tests), in ms since the epoch."""
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
            access_token_payload=struct_from_wire(session.access_token_payload, "response"),
            refresh_token=refresh_token.token if refresh_token is not None else None,
            anti_csrf_token=anti_csrf_token,
            tenant_id=session.tenant_id,
            access_token_expiry=timestamp_from_wire(access_token.expire_time),
            refresh_token_expiry=(
                timestamp_from_wire(refresh_token.expire_time)
                if refresh_token is not None
                else None
            ),
            _client=self,
        )

    # --- sessions -----------------------------------------------------------------

    async def create_new_session(
        self,
        user_id: str,
        access_token_payload: dict[str, Any] | None = None,
        session_data_in_database: dict[str, Any] | None = None,
        disable_anti_csrf: bool = False,
        *,
        client_metadata: ClientMetadata | None = None,
    ) -> SessionContainer:
        """Start a session; ``client_metadata`` (ip, user agent, device label) is kept
        with it for list_sessions."""
        metadata = client_metadata or ClientMetadata()
        response = await self._call(
            self._stub.CreateNewSession,
            pb.CreateNewSessionRequest(
                user_id=user_id,
                access_token_payload=struct_to_wire(
                    access_token_payload or {}, "access_token_payload"
                ),
                session_data_in_database=struct_to_wire(
                    session_data_in_database or {}, "session_data_in_database"
                ),
                disable_anti_csrf=disable_anti_csrf,
                client_metadata=pb.ClientMetadata(
                    ip=metadata.ip, user_agent=metadata.user_agent, device=metadata.device
                ),
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
        override_global_claim_validators: OverrideValidators | None = None,
    ) -> SessionContainer | None:
        """Verify an access token and run claim validators.

        Returns None only when there is no token and none is required.
        ``override_global_claim_validators`` is ``(global_validators, session) ->
        validators`` (sync or async), or simply the list of validators to run.
        """
        if not access_token:
            if not session_required:
                return None
            raise UnauthorisedError("no access token was presented", clear_tokens=False)
        watcher = self.revocations
        if watcher is not None:
            watcher.start()
            if not watcher.is_fresh():
                check_database = True  # the pushed view may be stale: ask the authority
        if self.verify_locally and not check_database:
            payload = await self._local_verifier.verify(
                access_token, anti_csrf_token, anti_csrf_check
            )
            session = self._container_from_payload(access_token, payload)
        else:
            session = await self._get_session_remotely(
                access_token, anti_csrf_token, anti_csrf_check, check_database
            )
        validators = await apply_override(
            await self.get_global_claim_validators(), session, override_global_claim_validators
        )
        if validators:
            await session.assert_claims(validators)
        return session

    async def _get_session_remotely(
        self,
        access_token: str,
        anti_csrf_token: str | None,
        anti_csrf_check: bool | None,
        check_database: bool,
    ) -> SessionContainer:
        # An empty override list: the authority verifies, the client runs the
        # validators (it can refetch; the authority cannot).
        request = pb.GetSessionRequest(
            access_token=access_token,
            check_database=check_database,
            override_global_claim_validators=pb.ClaimValidatorList(),
        )
        if anti_csrf_token is not None:
            request.anti_csrf_token = anti_csrf_token
        if anti_csrf_check is not None:
            request.anti_csrf_check = anti_csrf_check
        response = await self._call(self._stub.GetSession, request)
        return self._container(response.session, response.access_token, None, None)

    def _container_from_payload(
        self, access_token: str, payload: dict[str, Any]
    ) -> SessionContainer:
        """The container of a locally verified access token."""
        return SessionContainer(
            user_id=payload["sub"],
            session_handle=payload["sessionHandle"],
            access_token=access_token,
            access_token_payload=payload,
            refresh_token=None,
            anti_csrf_token=None,
            tenant_id=payload.get("tId", DEFAULT_TENANT_ID),
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
            session_data_in_database=struct_from_wire(info.session_data_in_database, "response"),
            expiry=timestamp_from_wire(info.expire_time),
            custom_claims_in_access_token_payload=struct_from_wire(
                info.custom_claims_in_access_token_payload, "response"
            ),
            time_created=timestamp_from_wire(info.create_time),
            tenant_id=info.tenant_id,
        )

    async def update_session_data_in_database(
        self, session_handle: str, new_session_data: dict[str, Any]
    ) -> bool:
        response = await self._call(
            self._stub.UpdateSessionDataInDatabase,
            pb.UpdateSessionDataInDatabaseRequest(
                session_handle=session_handle,
                new_session_data=struct_to_wire(new_session_data, "new_session_data"),
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
                access_token_payload_update=struct_to_wire(
                    access_token_payload_update, "access_token_payload_update"
                ),
            ),
        )
        return bool(response.updated)

    async def regenerate_access_token(
        self, access_token: str, new_access_token_payload: dict[str, Any] | None = None
    ) -> RegeneratedAccessToken | None:
        """Re-mint an access token (same expiry); None when the session is gone."""
        request = pb.RegenerateAccessTokenRequest(access_token=access_token)
        if new_access_token_payload is not None:
            request.new_access_token_payload.CopyFrom(
                struct_to_wire(new_access_token_payload, "new_access_token_payload")
            )
        response = await self._call(self._stub.RegenerateAccessToken, request)
        if not response.session_exists:
            return None
        return RegeneratedAccessToken(
            session_handle=response.session.session_handle,
            user_id=response.session.user_id,
            access_token_payload=struct_from_wire(
                response.session.access_token_payload, "response"
            ),
            access_token=(
                _token_info(response.access_token) if response.HasField("access_token") else None
            ),
        )

    async def list_sessions(
        self, user_id: str, page_size: int = 50, page_token: str | None = None
    ) -> SessionPage:
        """A page of the user's live sessions, newest first, with their metadata."""
        response = await self._call(
            self._stub.ListSessions,
            pb.ListSessionsRequest(
                user_id=user_id, page_size=page_size, page_token=page_token or ""
            ),
        )
        return SessionPage(
            sessions=[
                SessionSummary(
                    session_handle=s.session_handle,
                    user_id=s.user_id,
                    client_metadata=ClientMetadata(
                        s.client_metadata.ip, s.client_metadata.user_agent, s.client_metadata.device
                    ),
                    time_created=timestamp_from_wire(s.create_time),
                    last_refreshed=timestamp_from_wire(s.last_refresh_time),
                    expiry=timestamp_from_wire(s.expire_time),
                )
                for s in response.sessions
            ],
            next_page_token=response.next_page_token or None,
            total_count=response.total_size,
        )

    async def revoke_other_sessions(self, session_handle: str) -> list[str]:
        """Revoke every session of this session's user but this one."""
        response = await self._call(
            self._stub.RevokeOtherSessions,
            pb.RevokeOtherSessionsRequest(session_handle=session_handle),
        )
        return list(response.revoked_session_handles)

    async def _revocation_stream(
        self, after_cursor: int
    ) -> AsyncIterator[tuple[list[RevokedSession], int]]:
        # No deadline: the stream lives as long as the client; heartbeats keep it honest.
        call = self._stub.WatchRevocations(
            pb.WatchRevocationsRequest(after_cursor=after_cursor), metadata=self._metadata
        )
        try:
            async for message in call:
                yield (
                    [
                        RevokedSession(
                            r.session_handle,
                            r.cursor,
                            timestamp_from_wire(r.access_tokens_expire_time),
                        )
                        for r in message.revocations
                    ],
                    message.cursor,
                )
        finally:
            call.cancel()

    # --- claims -----------------------------------------------------------------------

    async def fetch_and_set_claim(self, session_handle: str, claim: SessionClaim[Any]) -> bool:
        """Run the claim's fetch here, then store the value; False if no session."""
        info = await self.get_session_information(session_handle)
        if info is None:
            return False
        value = await claim.fetch(info.user_id, info.custom_claims_in_access_token_payload)
        if value is None:  # "do not set"
            return True
        return await self.set_claim_value(session_handle, claim, value)

    async def set_claim_value(
        self, session_handle: str, claim: SessionClaim[Any], value: Any
    ) -> bool:
        response = await self._call(
            self._stub.SetClaimValue,
            pb.SetClaimValueRequest(
                session_handle=session_handle,
                claim_key=claim.key,
                value=value_to_wire(value, "value"),
            ),
        )
        return bool(response.updated)

    async def get_claim_value(self, session_handle: str, claim: SessionClaim[Any]) -> ClaimValue:
        response = await self._call(
            self._stub.GetClaimValue,
            pb.GetClaimValueRequest(session_handle=session_handle, claim_key=claim.key),
        )
        if not response.session_exists:
            return ClaimValue("SESSION_DOES_NOT_EXIST_ERROR", None)
        value = value_from_wire(response.value, "response") if response.HasField("value") else None
        return ClaimValue("OK", value)

    async def remove_claim(self, session_handle: str, claim: SessionClaim[Any]) -> bool:
        response = await self._call(
            self._stub.RemoveClaim,
            pb.RemoveClaimRequest(session_handle=session_handle, claim_key=claim.key),
        )
        return bool(response.updated)

    async def validate_claims(
        self, user_id: str, access_token_payload: dict[str, Any], claim_validators: Sequence[Any]
    ) -> ClaimValidationResult:
        """Refetch what should refetch (here), then run every validator."""
        now = self.now_ms()
        update = await refetch_updates(claim_validators, user_id, access_token_payload, now)
        payload = {**access_token_payload, **update}
        failures = await self._validate(
            self._stub.ValidateClaims,
            lambda wire: pb.ValidateClaimsRequest(
                access_token_payload=struct_to_wire(payload, "access_token_payload"),
                claim_validators=wire,
            ),
            claim_validators,
            payload,
        )
        return ClaimValidationResult(failures, update or None)

    async def validate_claims_in_jwt_payload(
        self, user_id: str, jwt_payload: dict[str, Any], claim_validators: Sequence[Any]
    ) -> list[ClaimValidationError]:
        """Run every validator against a payload as it is; nothing is refetched."""
        return await self._validate(
            self._stub.ValidateClaimsInJwtPayload,
            lambda wire: pb.ValidateClaimsInJwtPayloadRequest(
                jwt_payload=struct_to_wire(jwt_payload, "jwt_payload"), claim_validators=wire
            ),
            claim_validators,
            jwt_payload,
        )

    async def _validate(
        self,
        method: Callable[..., Awaitable[Any]],
        make_request: Callable[[list[pb.ClaimValidator]], Any],
        validators: Sequence[Any],
        payload: dict[str, Any],
    ) -> list[ClaimValidationError]:
        """Built-in validators run on the authority, custom ones here; failures come
        back in the order of the validators."""
        # On the wire each built-in validator is named by its position, so that
        # validators sharing an id cannot be confused when the failures return.
        wire = [
            validator_to_wire(dataclasses.replace(v, id=str(position)))
            for position, v in enumerate(validators)
            if isinstance(v, ClaimValidator)
        ]
        remote: dict[str, ClaimValidationError] = {}
        if wire:
            response = await self._call(method, make_request(wire))
            remote = {f.id: f for f in failures_from_wire(response.invalid_claims)}
        now = self.now_ms()
        failures = []
        for position, validator in enumerate(validators):
            if isinstance(validator, ClaimValidator):
                failure = remote.get(str(position))
                if failure is not None:
                    failures.append(ClaimValidationError(validator.id, failure.reason))
                continue
            result = validator.validate(payload, now)
            if inspect.isawaitable(result):
                result = await result
            if not result.get("is_valid"):
                failures.append(ClaimValidationError(validator.id, result.get("reason")))
        return failures

    async def get_global_claim_validators(self) -> list[Any]:
        """The authority's global validators followed by this client's."""
        return [*await self._authority_validators.get(), *self.global_claim_validators]

    async def _fetch_global_claim_validators(self) -> list[ClaimValidator]:
        response = await self._call(
            self._stub.GetGlobalClaimValidators, pb.GetGlobalClaimValidatorsRequest()
        )
        return validators_from_wire(response.claim_validators)

    # --- JWTs and keys -----------------------------------------------------------------

    async def create_jwt(
        self,
        payload: dict[str, Any] | None = None,
        validity_seconds: int | None = None,
        use_static_signing_key: bool | None = None,
    ) -> str:
        """A JWT signed by the authority (its static key unless told otherwise)."""
        request = pb.CreateJwtRequest(payload=struct_to_wire(payload or {}, "payload"))
        if validity_seconds is not None:
            request.validity.seconds = validity_seconds
        if use_static_signing_key is not None:
            request.use_static_signing_key = use_static_signing_key
        response = await self._call(self._stub.CreateJwt, request)
        return str(response.jwt)

    async def get_open_id_discovery_configuration(self) -> dict[str, Any]:
        response = await self._call(
            self._stub.GetOpenIdDiscoveryConfiguration,
            pb.GetOpenIdDiscoveryConfigurationRequest(),
        )
        return struct_from_wire(response.document, "response")

    async def get_jwks(self) -> dict[str, Any]:
        """``{"keys": [JWK, ...]}``: every key that can verify a live access token."""
        keys, _ = await self._fetch_jwks()
        return {"keys": keys}

    async def _fetch_jwks(self) -> tuple[list[dict[str, Any]], int]:
        response = await self._call(self._stub.GetJwks, pb.GetJwksRequest())
        keys = [
            {name: getattr(key, name) for name in _JWK_FIELDS if getattr(key, name)}
            for key in response.keys
        ]
        return keys, int(response.max_age.seconds)
