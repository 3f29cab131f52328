"""What the SDK hands to callers: SessionContainer and the other plain
dataclasses its methods return (no protobuf), and BoundClient, what a container
needs from the client that made it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .claims import SessionClaim, claim_entry, refetch_updates, validate_all
from .errors import InvalidClaimsError, UnauthorisedError
from .verify import DEFAULT_TENANT_ID, PROTECTED_CLAIMS


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token with its lifetime (milliseconds since the epoch)."""

    token: str
    expiry: int
    created_time: int


@dataclass(frozen=True, slots=True)
class SessionInformation:
    """The stored state of a session, as ``get_session_information`` returns it."""

    session_handle: str
    user_id: str
    session_data_in_database: dict[str, Any]
    expiry: int
    custom_claims_in_access_token_payload: dict[str, Any]
    time_created: int
    tenant_id: str = DEFAULT_TENANT_ID


@dataclass(frozen=True, slots=True)
class ClientMetadata:
    """What the edge service knows of the client a session is for (all optional)."""

    ip: str = ""
    user_agent: str = ""
    device: str = ""


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """One entry of list_sessions ("active sessions" pages); times in ms."""

    session_handle: str
    user_id: str
    client_metadata: ClientMetadata
    time_created: int
    last_refreshed: int
    expiry: int


@dataclass(frozen=True, slots=True)
class SessionPage:
    sessions: list[SessionSummary]
    next_page_token: str | None  # None on the last page
    total_count: int


@dataclass(frozen=True, slots=True)
class ClaimValue:
    """What ``get_claim_value`` returns: status "OK" (value None if unset) or
    "SESSION_DOES_NOT_EXIST_ERROR"."""

    status: str
    value: Any = None


@dataclass(frozen=True, slots=True)
class RegeneratedAccessToken:
    """The result of ``regenerate_access_token``; ``access_token`` is None when the
    presented token had already expired (only the stored payload changed)."""

    session_handle: str
    user_id: str
    access_token_payload: dict[str, Any]
    access_token: TokenInfo | None


class BoundClient(Protocol):
    """The calls a SessionContainer makes on the client it is bound to
    (SessionClient is one)."""

    def now_ms(self) -> int: ...

    async def revoke_session(self, session_handle: str) -> bool: ...

    async def update_session_data_in_database(
        self, session_handle: str, new_session_data: dict[str, Any]
    ) -> bool: ...

    async def regenerate_access_token(
        self, access_token: str, new_access_token_payload: dict[str, Any] | None = None
    ) -> RegeneratedAccessToken | None: ...

    async def get_session_information(self, session_handle: str) -> SessionInformation | None: ...


@dataclass(eq=False)
class SessionContainer:
    """A verified or freshly created session, bound to the client that made it."""

    user_id: str
    session_handle: str
    access_token: str
    access_token_payload: dict[str, Any]
    refresh_token: str | None
    anti_csrf_token: str | None
    tenant_id: str = DEFAULT_TENANT_ID
    access_token_expiry: int | None = None
    refresh_token_expiry: int | None = None
    _client: BoundClient | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        # Tokens stay out of reprs so that they never end up in a log by accident.
        return f"SessionContainer(user_id={self.user_id!r}, session_handle={self.session_handle!r})"

    @property
    def custom_claims(self) -> dict[str, Any]:
        return {k: v for k, v in self.access_token_payload.items() if k not in PROTECTED_CLAIMS}

    def _bound(self) -> BoundClient:
        if self._client is None:
            raise RuntimeError("this SessionContainer is not bound to a SessionClient")
        return self._client

    async def revoke_session(self) -> bool:
        return await self._bound().revoke_session(self.session_handle)

    async def get_session_data_from_database(self) -> dict[str, Any]:
        info = await self._information()
        return info.session_data_in_database

    async def update_session_data_in_database(self, new_session_data: dict[str, Any]) -> None:
        if not await self._bound().update_session_data_in_database(
            self.session_handle, new_session_data
        ):
            raise UnauthorisedError("the session does not exist anymore")

    async def merge_into_access_token_payload(self, update: dict[str, Any]) -> None:
        """Merge into this session's payload and re-mint this container's access token."""
        merged = dict(self.custom_claims)
        for key, value in update.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        result = await self._bound().regenerate_access_token(self.access_token, merged)
        if result is None:
            raise UnauthorisedError("the session does not exist anymore")
        self.access_token_payload = result.access_token_payload
        if result.access_token is not None:
            self.access_token = result.access_token.token
            self.access_token_expiry = result.access_token.expiry

    # --- claims: each change re-mints this container's access token at once ---------

    async def fetch_and_set_claim(self, claim: SessionClaim[Any]) -> None:
        client = self._bound()
        update = await claim.build(self.user_id, self.access_token_payload, client.now_ms())
        if update:
            await self.merge_into_access_token_payload(update)

    async def set_claim_value(self, claim: SessionClaim[Any], value: Any) -> None:
        entry = claim_entry(value, self._bound().now_ms())
        await self.merge_into_access_token_payload({claim.key: entry})

    def get_claim_value(self, claim: SessionClaim[Any]) -> Any:
        """The claim's value in this container's access token (None if unset)."""
        return claim.get_value_from_payload(self.access_token_payload)

    async def remove_claim(self, claim: SessionClaim[Any]) -> None:
        await self.merge_into_access_token_payload({claim.key: None})

    async def assert_claims(self, validators: Sequence[Any]) -> None:
        """Refetch the claims that should refetch (re-minting the access token),
        then run every validator; raise InvalidClaimsError listing all failures."""
        now = self._bound().now_ms()
        update = await refetch_updates(validators, self.user_id, self.access_token_payload, now)
        if update:
            await self.merge_into_access_token_payload(update)
        failures = await validate_all(validators, self.access_token_payload, now)
        if failures:
            raise InvalidClaimsError("the session's claims are not valid", invalid_claims=failures)

    async def get_time_created(self) -> int:
        return (await self._information()).time_created

    async def get_expiry(self) -> int:
        """When the session itself (not the access token) expires, in ms."""
        return (await self._information()).expiry

    async def _information(self) -> SessionInformation:
        info = await self._bound().get_session_information(self.session_handle)
        if info is None:
            raise UnauthorisedError("the session does not exist anymore")
        return info
