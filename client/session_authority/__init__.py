"""session_authority: the Python SDK of the session authority.

async with SessionClient("127.0.0.1:50051") as sessions:
    session = await sessions.create_new_session("user-1")
    verified = await sessions.get_session(session.access_token)
"""

from .client import SessionClient
from .errors import (
    ApiKeyInvalidError,
    AuthorityUnreachableError,
    InternalServerError,
    InvalidArgumentError,
    InvalidClaimsError,
    SessionError,
    StorageUnavailableError,
    TokenTheftDetectedError,
    TryRefreshTokenError,
    UnauthorisedError,
)
from .session import RegeneratedAccessToken, SessionContainer, SessionInformation, TokenInfo

__all__ = [
    "ApiKeyInvalidError",
    "AuthorityUnreachableError",
    "InternalServerError",
    "InvalidArgumentError",
    "InvalidClaimsError",
    "RegeneratedAccessToken",
    "SessionClient",
    "SessionContainer",
    "SessionError",
    "SessionInformation",
    "StorageUnavailableError",
    "TokenInfo",
    "TokenTheftDetectedError",
    "TryRefreshTokenError",
    "UnauthorisedError",
]
