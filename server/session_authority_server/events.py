"""What happens to sessions, told as it happens to observers in this process (the
metrics). The recipe tells them after the change has committed; an observer must
be quick and must not fail."""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol


class RevocationCause(StrEnum):
    """Why sessions ended before their time."""

    REVOKE = "revoke"  # RevokeSession, RevokeMultipleSessions
    REVOKE_ALL = "revoke_all"  # RevokeAllSessionsForUser
    REVOKE_OTHER = "revoke_other"  # RevokeOtherSessions
    CAP = "cap"  # the user's oldest, evicted by a login past max_sessions_per_user
    THEFT = "theft"  # a refresh token was reused


class SessionEvents(Protocol):
    def session_created(self) -> None: ...

    def session_refreshed(self) -> None: ...

    def sessions_revoked(self, count: int, cause: RevocationCause) -> None: ...

    def theft_detected(self) -> None: ...


class NoObserver:
    """SessionEvents that nobody watches (commands that run the recipe once)."""

    def session_created(self) -> None:
        pass

    def session_refreshed(self) -> None:
        pass

    def sessions_revoked(self, count: int, cause: RevocationCause) -> None:
        pass

    def theft_detected(self) -> None:
        pass
