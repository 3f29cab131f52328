"""The exception tree and the one table that maps it to gRPC status codes and
ErrorInfo reasons.

Both sides use :data:`ERROR_TABLE`: the server turns a :class:`SessionError` into a
gRPC status code plus an ``ErrorInfo`` (domain, reason, metadata), and the client
turns that ``ErrorInfo`` back into the same class (the protobuf side of both is
``wire.rich_status`` and ``wire.error_from_rpc_error``). Nobody parses message
text. Messages never contain a token, a hash or a key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import grpc

ERROR_DOMAIN = "session-authority"


class SessionError(Exception):
    """Base class of every error the authority reports."""

    reason: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def wire_metadata(self) -> dict[str, str]:
        """The ErrorInfo metadata that carries this error's attributes."""
        return {}

    @classmethod
    def from_wire(cls, message: str, metadata: Mapping[str, str]) -> SessionError:
        return cls(message)


class UnauthorisedError(SessionError):
    """No session, a garbled token, or a revoked/expired session."""

    reason = "UNAUTHORISED"

    def __init__(self, message: str, *, clear_tokens: bool = True) -> None:
        super().__init__(message)
        self.clear_tokens = clear_tokens

    def wire_metadata(self) -> dict[str, str]:
        return {"clearTokens": "true" if self.clear_tokens else "false"}

    @classmethod
    def from_wire(cls, message: str, metadata: Mapping[str, str]) -> SessionError:
        return cls(message, clear_tokens=metadata.get("clearTokens", "true") == "true")


class TryRefreshTokenError(SessionError):
    """The access token expired, is signed by an unknown key, or failed anti-CSRF."""

    reason = "TRY_REFRESH_TOKEN"


class TokenTheftDetectedError(SessionError):
    """An ancestor refresh token was reused: the session has been revoked."""

    reason = "TOKEN_THEFT_DETECTED"

    def __init__(self, message: str, *, session_handle: str, user_id: str) -> None:
        super().__init__(message)
        self.session_handle = session_handle
        self.user_id = user_id

    def wire_metadata(self) -> dict[str, str]:
        return {"sessionHandle": self.session_handle, "userId": self.user_id}

    @classmethod
    def from_wire(cls, message: str, metadata: Mapping[str, str]) -> SessionError:
        return cls(
            message,
            session_handle=metadata.get("sessionHandle", ""),
            user_id=metadata.get("userId", ""),
        )


@dataclass(frozen=True)
class ClaimValidationError:
    """One failed claim validator: its id and SuperTokens' reason object."""

    id: str
    reason: Any


class InvalidClaimsError(SessionError):
    """Claim validators failed; ``invalid_claims`` lists every failure."""

    reason = "INVALID_CLAIMS"

    def __init__(self, message: str, *, invalid_claims: list[ClaimValidationError]) -> None:
        super().__init__(message)
        self.invalid_claims = invalid_claims

    # The failures travel in the status details (InvalidClaims), not in metadata:
    # wire.rich_status puts them there and wire.error_from_rpc_error reads them.
    @classmethod
    def from_wire(cls, message: str, metadata: Mapping[str, str]) -> SessionError:
        return cls(message, invalid_claims=[])


class InvalidArgumentError(SessionError, ValueError):
    """A request argument is malformed, too large or not allowed; ``field`` names it."""

    reason = "INVALID_ARGUMENT"

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field

    def wire_metadata(self) -> dict[str, str]:
        return {"field": self.field}

    @classmethod
    def from_wire(cls, message: str, metadata: Mapping[str, str]) -> SessionError:
        return cls(message, field=metadata.get("field", ""))


class ApiKeyInvalidError(SessionError):
    """The caller did not authenticate to the authority."""

    reason = "API_KEY_INVALID"


class StorageUnavailableError(SessionError):
    """The authority cannot reach its database; retrying later may succeed."""

    reason = "STORAGE_UNAVAILABLE"


class InternalServerError(SessionError):
    """Anything unexpected; details are in the authority's log, not here."""

    reason = "INTERNAL"


class AuthorityUnreachableError(SessionError):
    """The call did not get an answer from the authority (connection refused,
    deadline exceeded). The authority never sends it; a service protected by
    SessionInterceptor does, as UNAVAILABLE, when it cannot reach the authority."""

    reason = "UNREACHABLE"

    def __init__(self, message: str, *, status_code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class ErrorMapping:
    error_class: type[SessionError]
    status_code: grpc.StatusCode


# The one table: domain error <-> gRPC status code + ErrorInfo reason.
ERROR_TABLE: tuple[ErrorMapping, ...] = (
    ErrorMapping(UnauthorisedError, grpc.StatusCode.UNAUTHENTICATED),
    ErrorMapping(TryRefreshTokenError, grpc.StatusCode.UNAUTHENTICATED),
    ErrorMapping(TokenTheftDetectedError, grpc.StatusCode.PERMISSION_DENIED),
    ErrorMapping(InvalidClaimsError, grpc.StatusCode.PERMISSION_DENIED),
    ErrorMapping(InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    ErrorMapping(ApiKeyInvalidError, grpc.StatusCode.UNAUTHENTICATED),
    ErrorMapping(StorageUnavailableError, grpc.StatusCode.UNAVAILABLE),
    # Sent by services guarded by session_authority.grpc when they cannot reach it.
    ErrorMapping(AuthorityUnreachableError, grpc.StatusCode.UNAVAILABLE),
    ErrorMapping(InternalServerError, grpc.StatusCode.INTERNAL),
)

_BY_REASON: dict[str, ErrorMapping] = {m.error_class.reason: m for m in ERROR_TABLE}


def status_code_for(error: SessionError) -> grpc.StatusCode:
    return _BY_REASON[error.reason].status_code


def error_from_wire(reason: str, message: str, metadata: Mapping[str, str]) -> SessionError:
    """Rebuild the exception the server raised from its ErrorInfo reason and metadata."""
    mapping = _BY_REASON.get(reason)
    if mapping is None:
        return InternalServerError(message)
    return mapping.error_class.from_wire(message, metadata)
