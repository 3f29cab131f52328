"""Claims on the authority's side: setting, reading and removing a session's claim
values, and running declarative validators. Fetch functions live with callers
(FetchAndSetClaim runs in the SDKs), so nothing is refetched here."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from session_authority.claims import (
    ClaimValidator,
    check_claim_key,
    claim_entry,
    failures_of,
    read_claim,
)
from session_authority.errors import ClaimValidationError

from .clock import Clock
from .storage.base import SessionRows
from .validation import check_session_handle

# Shallow-merges an update into a session's stored custom claims (None deletes a
# key), refusing a result over the payload limit in the name of a request field:
# SessionManager.merge_into_stored_payload.
PayloadMerge = Callable[[str, dict[str, Any], str], Awaitable[bool]]


async def validate_claims(
    payload: dict[str, Any], validators: Sequence[ClaimValidator], now_ms: int
) -> list[ClaimValidationError]:
    """Run a caller's validators. Within the input limits this is a few ms of work
    at most; the loop serves other calls before and after it."""
    await asyncio.sleep(0)
    failures = failures_of(validators, payload, now_ms)
    await asyncio.sleep(0)
    return failures


class SessionClaims:
    def __init__(
        self,
        store: SessionRows,
        merge: PayloadMerge,
        clock: Clock,
        global_validators: tuple[ClaimValidator, ...],
    ) -> None:
        self._store = store
        self._merge = merge
        self._clock = clock
        self.global_validators = global_validators

    async def set_claim_value(self, handle: str, key: str, value: Any) -> bool:
        check_session_handle(handle)
        check_claim_key(key)
        entry = claim_entry(value, self._clock.now_ms())
        return await self._merge(handle, {key: entry}, "value")

    async def get_claim_value(self, handle: str, key: str) -> tuple[bool, Any]:
        """(session exists, the claim's value or None)."""
        check_session_handle(handle)
        check_claim_key(key)
        row = await self._store.get_session(handle, self._clock.now_ms())
        if row is None:
            return False, None
        _, value, _ = read_claim(json.loads(row.access_token_payload), key)
        return True, value

    async def remove_claim(self, handle: str, key: str) -> bool:
        check_session_handle(handle)
        check_claim_key(key)
        return await self._merge(handle, {key: None}, "claim_key")

    async def validate_claims(
        self, payload: dict[str, Any], validators: Sequence[ClaimValidator]
    ) -> list[ClaimValidationError]:
        return await validate_claims(payload, validators, self._clock.now_ms())
