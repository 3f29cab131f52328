"""The recipe: create, verify, refresh, revoke, list and update sessions.

No protobuf and no SQL here: requests arrive as Python values (already parsed
by service.py), storage is the SessionRows contract, time is the injected clock,
tokens are minted by the TokenIssuer, and what happened is told to the
SessionEvents observer once it has committed.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from session_authority.claims import ClaimValidator, failures_of
from session_authority.errors import (
    InvalidArgumentError,
    InvalidClaimsError,
    TokenTheftDetectedError,
    UnauthorisedError,
)
from session_authority.json_text import compact_json
from session_authority.session import TokenInfo
from session_authority.verify import DEFAULT_TENANT_ID, PROTECTED_CLAIMS, check_anti_csrf

from .clock import Clock
from .config import Settings
from .events import RevocationCause, SessionEvents
from .keys import CLOCK_SKEW_MS
from .revocations import RevocationFeed
from .session_claims import validate_claims
from .storage.base import DELETE, Change, RevocationRow, SessionRow, SessionRows
from .token_issuer import TokenIssuer
from .tokens import PageTokenCodec, RefreshTokenCodec, secret_hash, token_hash_hex
from .validation import (
    MAX_ACCESS_TOKEN_PAYLOAD_BYTES,
    check_client_metadata,
    check_custom_claims,
    check_page_size,
    check_session_handle,
    check_session_handles,
    check_user_id,
    dump_within_limit,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SessionTokens:
    """A session with freshly issued tokens (create and refresh)."""

    handle: str
    user_id: str
    tenant_id: str
    access_token_payload: dict[str, Any]
    access_token: TokenInfo
    refresh_token: TokenInfo
    anti_csrf_token: str | None


@dataclass(frozen=True, slots=True)
class VerifiedSession:
    handle: str
    user_id: str
    tenant_id: str
    access_token_payload: dict[str, Any]
    access_token: TokenInfo


@dataclass(frozen=True, slots=True)
class RegeneratedToken:
    handle: str
    user_id: str
    tenant_id: str
    access_token_payload: dict[str, Any]
    access_token: TokenInfo | None  # None: the presented token had expired


class _Theft:
    def __init__(self, row: SessionRow) -> None:
        self.row = row


class SessionManager:
    def __init__(
        self,
        settings: Settings,
        store: SessionRows,
        tokens: TokenIssuer,
        clock: Clock,
        *,
        refresh_tokens: RefreshTokenCodec,
        page_tokens: PageTokenCodec,
        revocations: RevocationFeed,
        events: SessionEvents,
    ) -> None:
        self._settings = settings
        self._store = store
        self._tokens = tokens
        self._clock = clock
        self._refresh_tokens = refresh_tokens
        self._page_tokens = page_tokens
        self._revocations = revocations
        self._events = events
        self._issue_anti_csrf = settings.anti_csrf == "VIA_TOKEN"

    async def _issue_pair(
        self, row: SessionRow, secret: bytes, *, anti_csrf: bool, now_ms: int
    ) -> SessionTokens:
        refresh_token = self._refresh_tokens.issue(row.handle, secret, anti_csrf=anti_csrf)
        anti_csrf_token = self._refresh_tokens.anti_csrf_token(secret) if anti_csrf else None
        payload, access = await self._tokens.mint_access_token(
            row,
            json.loads(row.access_token_payload),
            refresh_token_hash=token_hash_hex(refresh_token),
            anti_csrf_token=anti_csrf_token,
            now_ms=now_ms,
        )
        return SessionTokens(
            handle=row.handle,
            user_id=row.user_id,
            tenant_id=row.tenant_id,
            access_token_payload=payload,
            access_token=access,
            refresh_token=TokenInfo(refresh_token, row.expires_ms, now_ms),
            anti_csrf_token=anti_csrf_token,
        )

    # --- the recipe -----------------------------------------------------------------

    async def create_new_session(
        self,
        user_id: str,
        access_token_payload: dict[str, Any],
        session_data: dict[str, Any],
        *,
        disable_anti_csrf: bool = False,
        client_ip: str = "",
        user_agent: str = "",
        device: str = "",
    ) -> SessionTokens:
        check_user_id(user_id)
        check_custom_claims(access_token_payload, "access_token_payload")
        check_client_metadata(client_ip, user_agent, device)
        now = self._now()
        absolute_ms = self._settings.session_absolute_lifetime * 1000
        absolute_expiry = now + absolute_ms if absolute_ms else None
        secret = os.urandom(32)
        row = SessionRow(
            handle=str(uuid.uuid4()),
            user_id=user_id,
            tenant_id=DEFAULT_TENANT_ID,
            refresh_hash=secret_hash(secret),
            prev_refresh_hash=None,
            rotated_at_ms=None,
            access_token_payload=compact_json(access_token_payload),
            session_data=compact_json(session_data),
            created_ms=now,
            expires_ms=self._sliding_expiry(now, absolute_expiry),
            absolute_expires_ms=absolute_expiry,
            last_refreshed_ms=now,
            client_ip=client_ip,
            user_agent=user_agent,
            device=device,
        )
        # Mint before storing: a signing failure leaves no orphan row behind.
        tokens = await self._issue_pair(
            row, secret, anti_csrf=self._issue_anti_csrf and not disable_anti_csrf, now_ms=now
        )
        evicted = await self._store.insert_session(
            row, max_sessions_per_user=self._settings.max_sessions_per_user
        )
        self._events.session_created()
        if evicted:
            await self._revoked(evicted, RevocationCause.CAP)
        return tokens

    async def get_session(
        self,
        access_token: str,
        anti_csrf_token: str | None,
        *,
        anti_csrf_check: bool | None,
        check_database: bool,
        claim_validators: Sequence[ClaimValidator] | None = None,
    ) -> VerifiedSession:
        """Verify an access token; then run the global claim validators, or
        ``claim_validators`` instead when given (the authority cannot refetch:
        fetch functions live with the caller)."""
        now = self._now()
        payload = await self._tokens.verify_access_token(access_token, now, check_expiry=True)
        check_anti_csrf(payload, anti_csrf_token, anti_csrf_check)
        if check_database:
            row = await self._store.get_session(payload["sessionHandle"], now)
            if row is None or row.user_id != payload["sub"]:
                raise UnauthorisedError("the session does not exist anymore")
        if claim_validators is None:
            failures = failures_of(self._settings.global_claim_validators, payload, now)
        else:
            failures = await validate_claims(payload, claim_validators, now)
        if failures:
            raise InvalidClaimsError("the session's claims are not valid", invalid_claims=failures)
        return VerifiedSession(
            handle=payload["sessionHandle"],
            user_id=payload["sub"],
            tenant_id=payload.get("tId", DEFAULT_TENANT_ID),
            access_token_payload=payload,
            access_token=TokenInfo(access_token, payload["exp"] * 1000, payload["iat"] * 1000),
        )

    async def refresh_session(
        self, refresh_token: str, anti_csrf_token: str | None, *, disable_anti_csrf: bool
    ) -> SessionTokens:
        contents = self._refresh_tokens.parse(refresh_token)
        if contents is None:
            # Forged or mangled: never reaches storage, so it can revoke nothing.
            raise UnauthorisedError("the refresh token is not valid")
        if contents.anti_csrf and self._issue_anti_csrf and not disable_anti_csrf:
            expected = self._refresh_tokens.anti_csrf_token(contents.secret)
            if anti_csrf_token is None or not hmac.compare_digest(
                anti_csrf_token.encode(), expected.encode()
            ):
                raise UnauthorisedError("the anti-CSRF token is missing or does not match")

        now = self._now()
        presented = secret_hash(contents.secret)
        successor = self._refresh_tokens.successor_secret(contents.secret)
        successor_hash = secret_hash(successor)
        grace_ms = self._settings.refresh_grace_period * 1000

        def decide(row: SessionRow | None) -> tuple[Change, SessionRow | _Theft | None]:
            if row is None:
                return None, None
            if hmac.compare_digest(presented, row.refresh_hash):
                # 1. The current token: rotate, and slide the session's expiry.
                rotated = dataclasses.replace(
                    row,
                    refresh_hash=successor_hash,
                    prev_refresh_hash=presented,
                    rotated_at_ms=now,
                    expires_ms=self._sliding_expiry(now, row.absolute_expires_ms),
                    last_refreshed_ms=now,
                )
                return rotated, rotated
            if (
                row.prev_refresh_hash is not None
                and row.rotated_at_ms is not None
                and hmac.compare_digest(presented, row.prev_refresh_hash)
                and hmac.compare_digest(successor_hash, row.refresh_hash)
                and now - row.rotated_at_ms <= grace_ms
            ):
                # 2. The token just rotated away, within the grace period: a
                # concurrent tab or a retry gets the same successor, no rotation.
                return None, row
            # 3. An authentic ancestor (or the previous token after the grace
            # period): reuse means theft. Revoke the session.
            return DELETE, _Theft(row)

        outcome = await self._store.update_session(contents.session_handle, now, decide)
        if outcome is None:
            raise UnauthorisedError("the session does not exist or has expired")
        if isinstance(outcome, _Theft):
            self._events.theft_detected()
            await self._revoked([outcome.row.handle], RevocationCause.THEFT)
            log.warning(
                "refresh token reuse: session %s of user %s revoked",
                outcome.row.handle,
                outcome.row.user_id,
            )
            raise TokenTheftDetectedError(
                "a refresh token of this session was reused; the session has been revoked",
                session_handle=outcome.row.handle,
                user_id=outcome.row.user_id,
            )
        tokens = await self._issue_pair(
            outcome,
            successor,
            anti_csrf=self._issue_anti_csrf and not disable_anti_csrf,
            now_ms=now,
        )
        self._events.session_refreshed()
        return tokens

    def _sliding_expiry(self, now_ms: int, absolute_expires_ms: int | None) -> int:
        """Idle timeout from now, never past the absolute end of the session."""
        expiry = now_ms + self._settings.refresh_token_validity_ms
        return expiry if absolute_expires_ms is None else min(expiry, absolute_expires_ms)

    async def revoke_session(self, handle: str) -> bool:
        check_session_handle(handle)
        handles = await self._store.delete_sessions([handle], self._now())
        return bool(await self._revoked(handles, RevocationCause.REVOKE))

    async def revoke_multiple_sessions(self, handles: list[str]) -> list[str]:
        check_session_handles(handles)
        revoked = await self._store.delete_sessions(handles, self._now())
        return await self._revoked(revoked, RevocationCause.REVOKE)

    async def revoke_all_sessions_for_user(self, user_id: str) -> list[str]:
        check_user_id(user_id)
        handles = await self._store.delete_sessions_for_user(user_id, self._now())
        return await self._revoked(handles, RevocationCause.REVOKE_ALL)

    async def revoke_other_sessions(self, handle: str) -> list[str]:
        """Every session of this session's user but this one ("sign out elsewhere")."""
        check_session_handle(handle)
        handles = await self._store.delete_other_sessions(handle, self._now())
        return await self._revoked(handles, RevocationCause.REVOKE_OTHER)

    async def _revoked(self, handles: list[str], cause: RevocationCause) -> list[str]:
        """Tell watchers and observers of sessions that were just revoked."""
        if handles:
            self._events.sessions_revoked(len(handles), cause)
            await self._revocations.notify()
        return handles

    def _now(self) -> int:
        return self._clock.now_ms()

    async def list_sessions(
        self, user_id: str, page_size: int, page_token: str
    ) -> tuple[list[SessionRow], str, int]:
        """A page of the user's live sessions, newest first: (rows, next token, total)."""
        check_user_id(user_id)
        limit = check_page_size(page_size)
        before = None
        if page_token:
            # Untrusted input: only a token issued for this user id is a position.
            before = self._page_tokens.parse(user_id, page_token)
            if before is None:
                raise InvalidArgumentError(
                    "page_token is not one this authority issued for this user_id",
                    field="page_token",
                )
        rows, total = await self._store.list_sessions(user_id, self._now(), limit, before)
        next_token = (
            self._page_tokens.issue(user_id, rows[-1].created_ms, rows[-1].handle)
            if len(rows) == limit
            else ""
        )
        return rows, next_token, total

    def access_tokens_valid_until(self, revocation: RevocationRow) -> int:
        """After this no access token of the revoked session can be valid."""
        return revocation.revoked_at_ms + self._settings.access_token_validity_ms + CLOCK_SKEW_MS

    async def get_all_session_handles_for_user(self, user_id: str) -> list[str]:
        check_user_id(user_id)
        return await self._store.session_handles_for_user(user_id, self._now())

    async def get_session_information(self, handle: str) -> SessionRow | None:
        check_session_handle(handle)
        return await self._store.get_session(handle, self._now())

    async def update_session_data_in_database(
        self, handle: str, new_session_data: dict[str, Any]
    ) -> bool:
        check_session_handle(handle)
        data = compact_json(new_session_data)

        def decide(row: SessionRow | None) -> tuple[Change, bool]:
            if row is None:
                return None, False
            return dataclasses.replace(row, session_data=data), True

        return await self._store.update_session(handle, self._now(), decide)

    async def merge_into_access_token_payload(self, handle: str, update: dict[str, Any]) -> bool:
        check_session_handle(handle)
        check_custom_claims(update, "access_token_payload_update")
        return await self.merge_into_stored_payload(handle, update, "access_token_payload_update")

    async def merge_into_stored_payload(
        self, handle: str, update: dict[str, Any], field: str
    ) -> bool:
        """Shallow-merge into the stored custom claims (None deletes a key)."""

        def decide(row: SessionRow | None) -> tuple[Change, bool]:
            if row is None:
                return None, False
            payload = json.loads(row.access_token_payload)
            for key, value in update.items():
                if value is None:
                    payload.pop(key, None)
                else:
                    payload[key] = value
            text = dump_within_limit(payload, field, MAX_ACCESS_TOKEN_PAYLOAD_BYTES)
            return dataclasses.replace(row, access_token_payload=text), True

        return await self._store.update_session(handle, self._now(), decide)

    async def regenerate_access_token(
        self, access_token: str, new_custom_claims: dict[str, Any] | None
    ) -> RegeneratedToken | None:
        if new_custom_claims is not None:
            check_custom_claims(new_custom_claims, "new_access_token_payload")
        now = self._now()
        old = await self._tokens.verify_access_token(access_token, now, check_expiry=False)
        new_text = None if new_custom_claims is None else compact_json(new_custom_claims)

        def decide(row: SessionRow | None) -> tuple[Change, SessionRow | None]:
            if row is None or row.user_id != old["sub"]:
                return None, None
            if new_text is None:
                return None, row
            replaced = dataclasses.replace(row, access_token_payload=new_text)
            return replaced, replaced

        row = await self._store.update_session(old["sessionHandle"], now, decide)
        if row is None:
            return None
        custom = json.loads(row.access_token_payload)
        if old["exp"] * 1000 <= now:
            protected = {k: v for k, v in old.items() if k in PROTECTED_CLAIMS}
            return RegeneratedToken(
                row.handle, row.user_id, row.tenant_id, protected | custom, None
            )
        payload, token = await self._tokens.mint_access_token(
            row,
            custom,
            refresh_token_hash=old["refreshTokenHash1"],
            anti_csrf_token=old["antiCsrfToken"],
            now_ms=now,
            expiry_s=old["exp"],
        )
        return RegeneratedToken(row.handle, row.user_id, row.tenant_id, payload, token)
