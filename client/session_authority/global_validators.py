"""Which claim validators get_session runs: the authority's global validators
(fetched at most once an hour), the client's own, and the override rule."""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .claims import ClaimValidator
from .session import SessionContainer

# How long the authority's global claim validators are cached (they change only
# with its configuration).
GLOBAL_VALIDATORS_MAX_AGE_S = 3600.0

# What get_session's override_global_claim_validators takes: the validators to
# run, or (global_validators, session) -> validators, sync or async.
OverrideValidators = (
    Sequence[Any]
    | Callable[[list[Any], SessionContainer], Sequence[Any] | Awaitable[Sequence[Any]]]
)


class AuthorityValidatorCache:
    """The authority's global claim validators, refetched when older than
    ``max_age_s``."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[list[ClaimValidator]]],
        *,
        max_age_s: float = GLOBAL_VALIDATORS_MAX_AGE_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._max_age_s = max_age_s
        self._monotonic = monotonic
        self._validators: list[ClaimValidator] = []
        self._expires_at = 0.0

    async def get(self) -> list[ClaimValidator]:
        if self._monotonic() >= self._expires_at:
            self._validators = await self._fetch()
            self._expires_at = self._monotonic() + self._max_age_s
        return self._validators


async def apply_override(
    global_validators: list[Any],
    session: SessionContainer,
    override: OverrideValidators | None,
) -> list[Any]:
    """The validators to run for a session: the global ones unless overridden."""
    if override is None:
        return global_validators
    if not callable(override):
        return list(override)
    chosen = override(global_validators, session)
    if inspect.isawaitable(chosen):
        chosen = await chosen
    return list(chosen)
