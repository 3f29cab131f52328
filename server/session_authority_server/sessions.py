"""The recipe logic: create, verify, refresh, revoke and update sessions.

No protobuf and no SQL here: requests arrive as Python values (already parsed
by service.py), storage is the SessionStore protocol, time is the injected clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import logging
import os
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

from session_authority.claims import (
    ClaimValidator,
    check_claim_key,
    claim_entry,
    failures_of,
    read_claim,
)
from session_authority.errors import (
    ClaimValidationError,
    InvalidArgumentError,
    InvalidClaimsError,
    TokenTheftDetectedError,
    UnauthorisedError,
)
from session_authority.verify import (
    PROTECTED_CLAIMS,
    check_anti_csrf,
    parse_access_token,
    verify_access_token,
)

from .clock import Clock
from .config import Settings
from .keys import KeyRing
from .keystore import SecretSealer
from .revocations import RevocationFeed
from .storage.base import DELETE, Change, RevocationRow, SessionRow, SessionStore
from .tokens import (
    JwtMinter,
    PageTokenCodec,
    RefreshTokenCodec,
    json_text,
    secret_hash,
    token_hash_hex,
)
from .validation import (
    MAX_ACCESS_TOKEN_PAYLOAD_BYTES,
    check_client_metadata,
    check_create_jwt_payload,
    check_custom_claims,
    check_page_size,
    check_session_handle,
    check_session_handles,
    check_user_id,
    dump_within_limit,
)

log = logging.getLogger(__name__)

DEFAULT_TENANT = "public"
# CreateJwt's default validity, as in the reference: 100 years.
DEFAULT_JWT_VALIDITY_S = 100 * 365 * 24 * 3600
MAX_JWT_VALIDITY_S = 10 * DEFAULT_JWT_VALIDITY_S
# The "stt" (token type) of every CreateJwt token, as SuperTokens core marks its
# own: a session token has none or 0, and SuperTokens' SDKs reject any other.
NOT_A_SESSION_TOKEN = 1
# Clock skew allowed to verifiers when deciding that a revoked session's tokens
# can no longer be valid.
_SKEW_MS = 60_000
# The name of the stored secret, not the secret.
REFRESH_KEY_SECRET = "refresh-token-mac-key"  # noqa: S105


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expiry_ms: int
    created_time_ms: int


@dataclass(frozen=True, slots=True)
class SessionTokens:
    """A session with freshly issued tokens (create and refresh)."""

    handle: str
    user_id: str
    tenant_id: str
    access_token_payload: dict[str, Any]
    access_token: IssuedToken
    refresh_token: IssuedToken
    anti_csrf_token: str | None


@dataclass(frozen=True, slots=True)
class VerifiedSession:
    handle: str
    user_id: str
    tenant_id: str
    access_token_payload: dict[str, Any]
    access_token: IssuedToken


@dataclass(frozen=True, slots=True)
class RegeneratedToken:
    handle: str
    user_id: str
    tenant_id: str
    access_token_payload: dict[str, Any]
    access_token: IssuedToken | None  # None: the presented token had expired


class _Theft:
    def __init__(self, row: SessionRow) -> None:
        self.row = row


class SessionManager:
    def __init__(
        self,
        settings: Settings,
        store: SessionStore,
        keys: KeyRing,
        refresh_tokens: RefreshTokenCodec,
        clock: Clock,
        *,
        page_tokens: PageTokenCodec,
    ) -> None:
        self._settings = settings
        self._store = store
        self._keys = keys
        self._refresh_tokens = refresh_tokens
        self._page_tokens = page_tokens
        self._clock = clock
        self._minter = JwtMinter()
        self._issue_anti_csrf = settings.anti_csrf == "VIA_TOKEN"
        self.revocations = RevocationFeed(store)

    @classmethod
    async def start(cls, settings: Settings, store: SessionStore, clock: Clock) -> SessionManager:
        sealer = SecretSealer.from_settings(settings)
        keys = KeyRing(
            store,
            clock,
            algorithm=settings.signing_algorithm,
            rotation_ms=settings.signing_key_rotation * 1000,
            access_token_validity_ms=settings.access_token_validity_ms,
            sealer=sealer,
        )
        await keys.start()
        stored = await store.secret(
            REFRESH_KEY_SECRET, lambda: sealer.seal(os.urandom(32), REFRESH_KEY_SECRET)
        )
        mac_key = sealer.open(stored, REFRESH_KEY_SECRET)
        return cls(
            settings,
            store,
            keys,
            RefreshTokenCodec(mac_key),
            clock,
            page_tokens=PageTokenCodec(mac_key),
        )

    @property
    def keys(self) -> KeyRing:
        return self._keys

    # --- tokens -------------------------------------------------------------------

    async def _mint(
        self,
        row: SessionRow,
        custom_claims: dict[str, Any],
        *,
        refresh_token_hash: str,
        anti_csrf_token: str | None,
        now_ms: int,
        expiry_s: int | None = None,
    ) -> tuple[dict[str, Any], IssuedToken]:
        if expiry_s is None:
            expiry_ms = now_ms + self._settings.access_token_validity_ms
            if row.absolute_expires_ms is not None:  # no token outlives its session
                expiry_ms = min(expiry_ms, row.absolute_expires_ms)
            expiry_s = expiry_ms // 1000
        # The v5 layout, in SuperTokens' order; custom claims follow.
        payload: dict[str, Any] = {
            "sub": row.user_id,
            "exp": expiry_s,
            "iat": now_ms // 1000,
            "sessionHandle": row.handle,
            "refreshTokenHash1": refresh_token_hash,
            "parentRefreshTokenHash1": None,
            "antiCsrfToken": anti_csrf_token,
            "tId": row.tenant_id,
            "rsub": row.user_id,
            "iss": self._settings.issuer,
        }
        payload.update(custom_claims)
        token = self._minter.mint(await self._keys.signer(), payload)
        return payload, IssuedToken(token, expiry_s * 1000, now_ms)

    async def _issue_pair(
        self, row: SessionRow, secret: bytes, *, anti_csrf: bool, now_ms: int
    ) -> SessionTokens:
        refresh_token = self._refresh_tokens.issue(row.handle, secret, anti_csrf=anti_csrf)
        anti_csrf_token = self._refresh_tokens.anti_csrf_token(secret) if anti_csrf else None
        payload, access = await self._mint(
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
            refresh_token=IssuedToken(refresh_token, row.expires_ms, now_ms),
            anti_csrf_token=anti_csrf_token,
        )

    async def _verify(
        self, access_token: str, now_ms: int, *, check_expiry: bool
    ) -> dict[str, Any]:
        parsed = parse_access_token(access_token)
        key = await self._keys.verification_key_reloading(parsed.kid)
        return verify_access_token(parsed, key, now_ms, check_expiry=check_expiry)

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
        check_custom_claims(access_token_payload, "access_token_payload_json")
        check_client_metadata(client_ip, user_agent, device)
        now = self._now()
        absolute_ms = self._settings.session_absolute_lifetime * 1000
        absolute_expiry = now + absolute_ms if absolute_ms else None
        secret = os.urandom(32)
        row = SessionRow(
            handle=str(uuid.uuid4()),
            user_id=user_id,
            tenant_id=DEFAULT_TENANT,
            refresh_hash=secret_hash(secret),
            prev_refresh_hash=None,
            rotated_at_ms=None,
            access_token_payload=json_text(access_token_payload),
            session_data=json_text(session_data),
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
        if evicted:
            await self.revocations.notify()
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
        payload = await self._verify(access_token, now, check_expiry=True)
        check_anti_csrf(payload, anti_csrf_token, anti_csrf_check)
        if check_database:
            row = await self._store.get_session(payload["sessionHandle"], now)
            if row is None or row.user_id != payload["sub"]:
                raise UnauthorisedError("the session does not exist anymore")
        if claim_validators is None:
            failures = failures_of(self._settings.global_claim_validators, payload, now)
        else:
            failures = await self.validate_claims(payload, claim_validators)
        if failures:
            raise InvalidClaimsError("the session's claims are not valid", invalid_claims=failures)
        return VerifiedSession(
            handle=payload["sessionHandle"],
            user_id=payload["sub"],
            tenant_id=payload.get("tId", DEFAULT_TENANT),
            access_token_payload=payload,
            access_token=IssuedToken(access_token, payload["exp"] * 1000, payload["iat"] * 1000),
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
            await self.revocations.notify()
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
        return await self._issue_pair(
            outcome,
            successor,
            anti_csrf=self._issue_anti_csrf and not disable_anti_csrf,
            now_ms=now,
        )

    def _sliding_expiry(self, now_ms: int, absolute_expires_ms: int | None) -> int:
        """Idle timeout from now, never past the absolute end of the session."""
        expiry = now_ms + self._settings.refresh_token_validity_ms
        return expiry if absolute_expires_ms is None else min(expiry, absolute_expires_ms)

    async def revoke_session(self, handle: str) -> bool:
        check_session_handle(handle)
        return bool(await self._revoked(self._store.delete_sessions([handle], self._now())))

    async def revoke_multiple_sessions(self, handles: list[str]) -> list[str]:
        check_session_handles(handles)
        return await self._revoked(self._store.delete_sessions(handles, self._now()))

    async def revoke_all_sessions_for_user(self, user_id: str) -> list[str]:
        check_user_id(user_id)
        return await self._revoked(self._store.delete_sessions_for_user(user_id, self._now()))

    async def revoke_other_sessions(self, handle: str) -> list[str]:
        """Every session of this session's user but this one ("sign out elsewhere")."""
        check_session_handle(handle)
        return await self._revoked(self._store.delete_other_sessions(handle, self._now()))

    async def _revoked(self, deletion: Awaitable[list[str]]) -> list[str]:
        handles = await deletion
        if handles:
            await self.revocations.notify()
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
        return revocation.revoked_at_ms + self._settings.access_token_validity_ms + _SKEW_MS

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
        data = json_text(new_session_data)

        def decide(row: SessionRow | None) -> tuple[Change, bool]:
            if row is None:
                return None, False
            return dataclasses.replace(row, session_data=data), True

        return await self._store.update_session(handle, self._now(), decide)

    async def merge_into_access_token_payload(self, handle: str, update: dict[str, Any]) -> bool:
        check_session_handle(handle)
        check_custom_claims(update, "access_token_payload_update_json")
        return await self._merge_into_stored_payload(
            handle, update, "access_token_payload_update_json"
        )

    async def _merge_into_stored_payload(
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

    async def purge_expired(self, batch_size: int = 1000) -> tuple[int, int]:
        """Delete expired sessions and retired signing keys: (sessions, keys)."""
        now = self._now()
        sessions = await self._store.purge_expired(now, batch_size)
        # The log keeps a revocation while a token of that session can be valid.
        await self._store.purge_revocations(
            now - self._settings.access_token_validity_ms - _SKEW_MS
        )
        await self._keys.signer()  # adopt any rotation first, so retirement is current
        keys = await self._store.delete_signing_keys(self._keys.retired_kids())
        return sessions, keys

    # --- claims ---------------------------------------------------------------------

    async def set_claim_value(self, handle: str, key: str, value: Any) -> bool:
        check_session_handle(handle)
        check_claim_key(key)
        entry = claim_entry(value, self._now())
        return await self._merge_into_stored_payload(handle, {key: entry}, "value_json")

    async def get_claim_value(self, handle: str, key: str) -> tuple[bool, Any]:
        """(session exists, the claim's value or None)."""
        check_session_handle(handle)
        check_claim_key(key)
        row = await self._store.get_session(handle, self._now())
        if row is None:
            return False, None
        _, value, _ = read_claim(json.loads(row.access_token_payload), key)
        return True, value

    async def remove_claim(self, handle: str, key: str) -> bool:
        check_session_handle(handle)
        check_claim_key(key)
        return await self._merge_into_stored_payload(handle, {key: None}, "claim_key")

    async def validate_claims(
        self, payload: dict[str, Any], validators: Sequence[ClaimValidator]
    ) -> list[ClaimValidationError]:
        """Run a caller's validators. Within the input limits this is a few ms of
        work at most; the loop serves other calls before and after it."""
        await asyncio.sleep(0)
        failures = failures_of(validators, payload, self._now())
        await asyncio.sleep(0)
        return failures

    @property
    def global_claim_validators(self) -> tuple[ClaimValidator, ...]:
        return self._settings.global_claim_validators

    # --- JWTs and discovery -----------------------------------------------------------

    async def create_jwt(
        self,
        payload: dict[str, Any],
        validity_seconds: int | None,
        use_static_signing_key: bool | None,
    ) -> str:
        """Sign a payload that is no session token; ``iat``, ``exp`` and ``stt`` are
        set here, ``iss`` unless given.

        The keys are those of access tokens, and SuperTokens' SDKs tell a session
        token by its payload: session-layout claims are refused, and ``"stt": 1``
        (SuperTokens' mark for "not a session token", which its SDKs reject as an
        access token) is set after the caller's claims.
        """
        check_create_jwt_payload(payload, "payload_json")
        validity = DEFAULT_JWT_VALIDITY_S if validity_seconds is None else validity_seconds
        if not 0 < validity <= MAX_JWT_VALIDITY_S:
            raise InvalidArgumentError(
                f"validity_seconds must be between 1 and {MAX_JWT_VALIDITY_S}",
                field="validity_seconds",
            )
        now_s = self._now() // 1000
        claims = {
            "iss": self._settings.issuer,
            **payload,
            "iat": now_s,
            "exp": now_s + validity,
            "stt": NOT_A_SESSION_TOKEN,
        }
        signer = (
            self._keys.static_key
            if use_static_signing_key is None or use_static_signing_key
            else await self._keys.signer()
        )
        return self._minter.mint(signer, claims, access_token=False)

    def open_id_discovery_configuration(self) -> dict[str, Any]:
        """What is true of this authority: who issues its tokens, and where their
        keys are. It is no OpenID Provider (no authorization endpoint, no ID
        tokens), so it claims no response or subject types and no ID-token
        algorithms: a strict OIDC client would be right to reject those."""
        issuer = self._settings.issuer
        return {"issuer": issuer, "jwks_uri": f"{issuer}/.well-known/jwks.json"}

    async def regenerate_access_token(
        self, access_token: str, new_custom_claims: dict[str, Any] | None
    ) -> RegeneratedToken | None:
        if new_custom_claims is not None:
            check_custom_claims(new_custom_claims, "new_access_token_payload_json")
        now = self._now()
        old = await self._verify(access_token, now, check_expiry=False)
        new_text = None if new_custom_claims is None else json_text(new_custom_claims)

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
        payload, token = await self._mint(
            row,
            custom,
            refresh_token_hash=old["refreshTokenHash1"],
            anti_csrf_token=old["antiCsrfToken"],
            now_ms=now,
            expiry_s=old["exp"],
        )
        return RegeneratedToken(row.handle, row.user_id, row.tenant_id, payload, token)
