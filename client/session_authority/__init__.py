"""session_authority: the Python SDK of the session authority. This module
re-exports its public names: SessionClient, the claims, the errors and the
dataclasses the client returns.

async with SessionClient("127.0.0.1:50051") as sessions:
    session = await sessions.create_new_session("user-1")
    verified = await sessions.get_session(session.access_token)
"""

from .claims import (
    BooleanClaim,
    ClaimValidationResult,
    ClaimValidator,
    PrimitiveArrayClaim,
    PrimitiveClaim,
    SessionClaim,
)
from .client import SessionClient
from .errors import (
    ApiKeyInvalidError,
    AuthorityUnreachableError,
    ClaimValidationError,
    InternalServerError,
    InvalidArgumentError,
    InvalidClaimsError,
    SessionError,
    StorageUnavailableError,
    TokenTheftDetectedError,
    TryRefreshTokenError,
    UnauthorisedError,
)
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

__all__ = [
    "ApiKeyInvalidError",
    "AuthorityUnreachableError",
    "BooleanClaim",
    "ClaimValidationError",
    "ClaimValidationResult",
    "ClaimValidator",
    "ClaimValue",
    "ClientMetadata",
    "InternalServerError",
    "InvalidArgumentError",
    "InvalidClaimsError",
    "PrimitiveArrayClaim",
    "PrimitiveClaim",
    "RegeneratedAccessToken",
    "SessionClaim",
    "SessionClient",
    "SessionContainer",
    "SessionError",
    "SessionInformation",
    "SessionPage",
    "SessionSummary",
    "StorageUnavailableError",
    "TokenInfo",
    "TokenTheftDetectedError",
    "TryRefreshTokenError",
    "UnauthorisedError",
]
