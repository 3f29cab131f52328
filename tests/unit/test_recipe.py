"""The recipe's rules for creating, verifying, expiring, capping, revoking and
regenerating sessions, run against SessionManager directly (no gRPC)."""

from __future__ import annotations

import json

import pytest
from session_authority.errors import (
    InvalidArgumentError,
    TryRefreshTokenError,
    UnauthorisedError,
)
from session_authority_server.assembly import Authority

from ..conftest import ManualClock
from .conftest import MakeAuthority
from .memory_store import MemoryStore
from .support import ISSUER, RecordingObserver, sha256_hex

ACCESS_VALIDITY_MS = 3600 * 1000  # the default access_token_validity
REFRESH_VALIDITY_MS = 8_640_000 * 1000  # the default refresh_token_validity


# --- create and get ------------------------------------------------------------------


async def test_create_issues_a_v5_access_token_and_stores_the_session(
    authority: Authority, store: MemoryStore, clock: ManualClock, observer: RecordingObserver
) -> None:
    now = clock.now_ms()
    created = await authority.sessions.create_new_session(
        "user-1",
        {"role": "admin"},
        {"cart": [1, 2]},
        client_ip="192.0.2.1",
        user_agent="agent/1",
        device="laptop",
    )

    assert (created.user_id, created.tenant_id) == ("user-1", "public")
    assert created.anti_csrf_token is None  # anti_csrf is NONE by default
    assert created.access_token_payload == {
        "sub": "user-1",
        "exp": (now + ACCESS_VALIDITY_MS) // 1000,
        "iat": now // 1000,
        "sessionHandle": created.handle,
        "refreshTokenHash1": sha256_hex(created.refresh_token.token),
        "parentRefreshTokenHash1": None,
        "antiCsrfToken": None,
        "tId": "public",
        "rsub": "user-1",
        "iss": ISSUER,
        "role": "admin",
    }
    assert created.access_token.expiry == now + ACCESS_VALIDITY_MS
    assert created.refresh_token.expiry == now + REFRESH_VALIDITY_MS

    row = store.sessions[created.handle]
    assert (row.user_id, row.created_ms, row.expires_ms) == (
        "user-1",
        now,
        now + REFRESH_VALIDITY_MS,
    )
    assert row.absolute_expires_ms is None
    assert json.loads(row.access_token_payload) == {"role": "admin"}  # custom claims only
    assert json.loads(row.session_data) == {"cart": [1, 2]}
    assert (row.client_ip, row.user_agent, row.device) == ("192.0.2.1", "agent/1", "laptop")
    assert row.prev_refresh_hash is None
    assert observer.events == ["created"]


async def test_get_session_verifies_the_token_and_optionally_the_database(
    authority: Authority,
) -> None:
    created = await authority.sessions.create_new_session("user-1", {"role": "admin"}, {})
    token = created.access_token.token

    for check_database in (False, True):
        verified = await authority.sessions.get_session(
            token, None, anti_csrf_check=None, check_database=check_database
        )
        assert (verified.handle, verified.user_id) == (created.handle, "user-1")
        assert verified.access_token_payload == created.access_token_payload
        assert verified.access_token.token == token

    # Revoked: the token still verifies locally; only the database knows.
    assert await authority.sessions.revoke_session(created.handle)
    verified = await authority.sessions.get_session(
        token, None, anti_csrf_check=None, check_database=False
    )
    assert verified.handle == created.handle
    with pytest.raises(UnauthorisedError):
        await authority.sessions.get_session(token, None, anti_csrf_check=None, check_database=True)


async def test_an_access_token_expires_at_its_exp(authority: Authority, clock: ManualClock) -> None:
    created = await authority.sessions.create_new_session("user-1", {}, {})
    token = created.access_token.token

    clock.ms = created.access_token.expiry - 1
    await authority.sessions.get_session(token, None, anti_csrf_check=None, check_database=False)
    clock.ms = created.access_token.expiry
    with pytest.raises(TryRefreshTokenError):
        await authority.sessions.get_session(
            token, None, anti_csrf_check=None, check_database=False
        )


async def test_a_tampered_access_token_is_refused(authority: Authority) -> None:
    created = await authority.sessions.create_new_session("user-1", {"role": "user"}, {})
    header, _, signature = created.access_token.token.split(".")
    other = await authority.sessions.create_new_session("user-2", {"role": "admin"}, {})
    forged = f"{header}.{other.access_token.token.split('.')[1]}.{signature}"
    with pytest.raises(TryRefreshTokenError):
        await authority.sessions.get_session(
            forged, None, anti_csrf_check=None, check_database=False
        )
    with pytest.raises(UnauthorisedError):
        await authority.sessions.get_session(
            "not.a-token", None, anti_csrf_check=None, check_database=False
        )


@pytest.mark.parametrize("claim", ["sub", "exp", "sessionHandle", "antiCsrfToken", "stt"])
async def test_create_refuses_protected_claims_and_stores_nothing(
    authority: Authority, store: MemoryStore, observer: RecordingObserver, claim: str
) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        await authority.sessions.create_new_session("user-1", {claim: "x"}, {})
    assert refused.value.field == "access_token_payload"
    assert store.sessions == {}
    assert observer.events == []


# --- anti-CSRF (VIA_TOKEN) -------------------------------------------------------------


async def test_via_token_issues_an_anti_csrf_token_that_get_session_requires(
    make_authority: MakeAuthority,
) -> None:
    authority = await make_authority(anti_csrf="VIA_TOKEN")
    created = await authority.sessions.create_new_session("user-1", {}, {})
    anti_csrf = created.anti_csrf_token
    assert anti_csrf
    assert created.access_token_payload["antiCsrfToken"] == anti_csrf
    token = created.access_token.token

    async def get(presented: str | None, check: bool | None) -> str:
        verified = await authority.sessions.get_session(
            token, presented, anti_csrf_check=check, check_database=False
        )
        return verified.handle

    for presented, check in ((None, None), (None, True), ("wrong", None), ("wrong", True)):
        with pytest.raises(TryRefreshTokenError):
            await get(presented, check)
    assert await get(anti_csrf, None) == created.handle
    assert await get(anti_csrf, True) == created.handle
    assert await get(None, False) == created.handle  # the caller turned the check off


async def test_via_token_with_anti_csrf_disabled_issues_none(
    make_authority: MakeAuthority,
) -> None:
    authority = await make_authority(anti_csrf="VIA_TOKEN")
    created = await authority.sessions.create_new_session("user-1", {}, {}, disable_anti_csrf=True)
    assert created.anti_csrf_token is None
    assert created.access_token_payload["antiCsrfToken"] is None
    verified = await authority.sessions.get_session(
        created.access_token.token, None, anti_csrf_check=True, check_database=False
    )
    assert verified.handle == created.handle
    # Nor does its refresh token ask for one.
    refreshed = await authority.sessions.refresh_session(
        created.refresh_token.token, None, disable_anti_csrf=True
    )
    assert refreshed.anti_csrf_token is None


async def test_via_token_refresh_needs_the_anti_csrf_token_of_the_pair(
    make_authority: MakeAuthority, store: MemoryStore, observer: RecordingObserver
) -> None:
    authority = await make_authority(anti_csrf="VIA_TOKEN")
    created = await authority.sessions.create_new_session("user-1", {}, {})
    refresh_token = created.refresh_token.token
    row = store.sessions[created.handle]

    for presented in (None, "wrong", ""):
        with pytest.raises(UnauthorisedError):
            await authority.sessions.refresh_session(
                refresh_token, presented, disable_anti_csrf=False
            )
    # Refused before storage: no rotation, no theft, the session is as it was.
    assert store.sessions[created.handle] == row
    assert observer.take() == ["created"]

    refreshed = await authority.sessions.refresh_session(
        refresh_token, created.anti_csrf_token, disable_anti_csrf=False
    )
    assert refreshed.anti_csrf_token and refreshed.anti_csrf_token != created.anti_csrf_token
    assert refreshed.access_token_payload["antiCsrfToken"] == refreshed.anti_csrf_token
    assert observer.events == ["refreshed"]


async def test_mode_none_issues_no_anti_csrf_token(authority: Authority) -> None:
    created = await authority.sessions.create_new_session("user-1", {}, {})
    refreshed = await authority.sessions.refresh_session(
        created.refresh_token.token, None, disable_anti_csrf=False
    )
    assert created.anti_csrf_token is None and refreshed.anti_csrf_token is None
    assert refreshed.access_token_payload["antiCsrfToken"] is None


# --- idle and absolute lifetimes --------------------------------------------------------


async def test_idle_timeout_slides_on_every_refresh(
    make_authority: MakeAuthority, clock: ManualClock, store: MemoryStore
) -> None:
    authority = await make_authority(refresh_token_validity=100, access_token_validity=10)
    created = await authority.sessions.create_new_session("user-1", {}, {})
    assert store.sessions[created.handle].expires_ms == clock.now_ms() + 100_000

    clock.advance(99.999)  # 1 ms before the idle timeout
    refreshed = await authority.sessions.refresh_session(
        created.refresh_token.token, None, disable_anti_csrf=False
    )
    slid_to = clock.now_ms() + 100_000
    assert refreshed.refresh_token.expiry == slid_to
    assert store.sessions[created.handle].expires_ms == slid_to

    clock.ms = slid_to - 1
    assert await authority.sessions.get_session_information(created.handle) is not None
    clock.ms = slid_to  # expired = expires_ms <= now
    assert await authority.sessions.get_session_information(created.handle) is None
    assert await authority.sessions.get_all_session_handles_for_user("user-1") == []
    with pytest.raises(UnauthorisedError):
        await authority.sessions.refresh_session(
            refreshed.refresh_token.token, None, disable_anti_csrf=False
        )


async def test_expiry_never_slides_past_the_absolute_lifetime(
    make_authority: MakeAuthority, clock: ManualClock, store: MemoryStore
) -> None:
    authority = await make_authority(
        refresh_token_validity=100, access_token_validity=90, session_absolute_lifetime=250
    )
    start = clock.now_ms()
    end = start + 250_000
    created = await authority.sessions.create_new_session("user-1", {}, {})
    row = store.sessions[created.handle]
    assert (row.expires_ms, row.absolute_expires_ms) == (start + 100_000, end)

    clock.advance(90)
    first = await authority.sessions.refresh_session(
        created.refresh_token.token, None, disable_anti_csrf=False
    )
    assert first.refresh_token.expiry == start + 190_000  # still the idle timeout

    clock.advance(90)  # 70 s left: less than the idle timeout and the access validity
    second = await authority.sessions.refresh_session(
        first.refresh_token.token, None, disable_anti_csrf=False
    )
    assert second.refresh_token.expiry == end
    assert store.sessions[created.handle].expires_ms == end
    assert second.access_token.expiry == end  # no access token outlives its session
    assert second.access_token_payload["exp"] == end // 1000

    clock.ms = end - 1
    third = await authority.sessions.refresh_session(
        second.refresh_token.token, None, disable_anti_csrf=False
    )
    assert third.refresh_token.expiry == end
    clock.ms = end
    assert await authority.sessions.get_session_information(created.handle) is None
    with pytest.raises(UnauthorisedError):
        await authority.sessions.refresh_session(
            third.refresh_token.token, None, disable_anti_csrf=False
        )


# --- the per-user cap --------------------------------------------------------------------


async def test_a_login_past_the_cap_evicts_the_oldest_session(
    make_authority: MakeAuthority,
    clock: ManualClock,
    store: MemoryStore,
    observer: RecordingObserver,
) -> None:
    authority = await make_authority(max_sessions_per_user=2)
    theirs = await authority.sessions.create_new_session("user-2", {}, {})
    handles = []
    for _ in range(2):
        clock.advance(0.001)
        handles.append((await authority.sessions.create_new_session("user-1", {}, {})).handle)
    assert observer.take() == ["created"] * 3

    clock.advance(0.001)
    third = await authority.sessions.create_new_session("user-1", {}, {})

    assert observer.events == ["created", "revoked 1 cap"]
    assert await authority.sessions.get_all_session_handles_for_user("user-1") == [
        handles[1],
        third.handle,
    ]
    assert await authority.sessions.get_session_information(handles[0]) is None
    assert await authority.sessions.get_all_session_handles_for_user("user-2") == [theirs.handle]
    assert [(r.handle, r.user_id, r.revoked_at_ms) for r in store.revocations] == [
        (handles[0], "user-1", clock.now_ms())
    ]


async def test_expired_sessions_do_not_count_toward_the_cap(
    make_authority: MakeAuthority, clock: ManualClock, observer: RecordingObserver
) -> None:
    authority = await make_authority(
        max_sessions_per_user=1, refresh_token_validity=10, access_token_validity=5
    )
    await authority.sessions.create_new_session("user-1", {}, {})
    clock.advance(10)  # that one has expired
    await authority.sessions.create_new_session("user-1", {}, {})
    assert observer.events == ["created", "created"]  # nothing was revoked


# --- revocation, with its causes ---------------------------------------------------------


async def test_revoke_session_and_revoke_multiple(
    authority: Authority, store: MemoryStore, observer: RecordingObserver
) -> None:
    a, b, c = [await authority.sessions.create_new_session("user-1", {}, {}) for _ in range(3)]
    observer.take()

    assert await authority.sessions.revoke_session(a.handle) is True
    assert await authority.sessions.revoke_session(a.handle) is False  # told once
    revoked = await authority.sessions.revoke_multiple_sessions(
        [c.handle, "f00d0000-0000-4000-8000-000000000000", b.handle, c.handle]
    )
    assert revoked == [c.handle, b.handle]
    assert await authority.sessions.revoke_multiple_sessions([a.handle]) == []

    assert observer.events == ["revoked 1 revoke", "revoked 2 revoke"]
    assert [r.handle for r in store.revocations] == [a.handle, c.handle, b.handle]
    assert store.sessions == {}


async def test_revoke_all_sessions_for_user(
    authority: Authority, observer: RecordingObserver
) -> None:
    mine = [await authority.sessions.create_new_session("user-1", {}, {}) for _ in range(3)]
    theirs = await authority.sessions.create_new_session("user-2", {}, {})
    observer.take()

    revoked = await authority.sessions.revoke_all_sessions_for_user("user-1")
    assert sorted(revoked) == sorted(s.handle for s in mine)
    assert await authority.sessions.revoke_all_sessions_for_user("user-1") == []
    assert await authority.sessions.revoke_all_sessions_for_user("nobody") == []
    assert observer.events == ["revoked 3 revoke_all"]
    assert await authority.sessions.get_all_session_handles_for_user("user-2") == [theirs.handle]


async def test_revoke_other_sessions_keeps_this_one(
    authority: Authority, observer: RecordingObserver, clock: ManualClock
) -> None:
    sessions = []
    for _ in range(3):
        clock.advance(0.001)
        sessions.append(await authority.sessions.create_new_session("user-1", {}, {}))
    theirs = await authority.sessions.create_new_session("user-2", {}, {})
    observer.take()
    keep = sessions[1]

    revoked = await authority.sessions.revoke_other_sessions(keep.handle)
    assert sorted(revoked) == sorted([sessions[0].handle, sessions[2].handle])
    assert observer.events == ["revoked 2 revoke_other"]
    assert await authority.sessions.get_all_session_handles_for_user("user-1") == [keep.handle]
    assert await authority.sessions.get_all_session_handles_for_user("user-2") == [theirs.handle]
    # From a session that is gone, nothing more is revoked.
    assert await authority.sessions.revoke_other_sessions(sessions[0].handle) == []
    assert observer.events == ["revoked 2 revoke_other"]


async def test_revocation_arguments_are_checked_first(authority: Authority) -> None:
    with pytest.raises(InvalidArgumentError):
        await authority.sessions.revoke_session("")
    with pytest.raises(InvalidArgumentError):
        await authority.sessions.revoke_session("nul\0handle")
    with pytest.raises(InvalidArgumentError):
        await authority.sessions.revoke_all_sessions_for_user("")
    with pytest.raises(InvalidArgumentError):
        await authority.sessions.revoke_multiple_sessions(["h"] * 1001)


# --- session data ---------------------------------------------------------------------------


async def test_update_session_data_replaces_it(authority: Authority, store: MemoryStore) -> None:
    created = await authority.sessions.create_new_session("user-1", {}, {"a": 1})
    assert await authority.sessions.update_session_data_in_database(created.handle, {"b": 2})
    assert json.loads(store.sessions[created.handle].session_data) == {"b": 2}
    await authority.sessions.revoke_session(created.handle)
    assert not await authority.sessions.update_session_data_in_database(created.handle, {"c": 3})


# --- regenerate_access_token --------------------------------------------------------------


async def test_regenerate_a_live_token_with_new_claims(
    authority: Authority, clock: ManualClock, store: MemoryStore
) -> None:
    created = await authority.sessions.create_new_session("user-1", {"role": "admin", "x": 1}, {})
    clock.advance(60)

    regenerated = await authority.sessions.regenerate_access_token(
        created.access_token.token, {"role": "viewer"}
    )

    assert regenerated is not None and regenerated.access_token is not None
    payload = regenerated.access_token_payload
    old = created.access_token_payload
    # The custom claims are replaced; the token keeps its session, refresh token,
    # anti-CSRF token and expiry, and is issued now.
    kept = {name: value for name, value in old.items() if name != "x"}
    assert payload == {**kept, "iat": clock.now_ms() // 1000, "role": "viewer"}
    assert payload["exp"] == old["exp"]
    assert regenerated.access_token.expiry == created.access_token.expiry
    assert json.loads(store.sessions[created.handle].access_token_payload) == {"role": "viewer"}
    verified = await authority.sessions.get_session(
        regenerated.access_token.token, None, anti_csrf_check=None, check_database=True
    )
    assert verified.access_token_payload == payload
    # The next refresh carries the new claims too.
    refreshed = await authority.sessions.refresh_session(
        created.refresh_token.token, None, disable_anti_csrf=False
    )
    assert refreshed.access_token_payload["role"] == "viewer"


async def test_regenerate_without_new_claims_keeps_the_stored_ones(
    authority: Authority, store: MemoryStore
) -> None:
    created = await authority.sessions.create_new_session("user-1", {"role": "admin"}, {})
    await authority.sessions.merge_into_access_token_payload(created.handle, {"plan": "pro"})
    row = store.sessions[created.handle]

    regenerated = await authority.sessions.regenerate_access_token(created.access_token.token, None)
    assert regenerated is not None and regenerated.access_token is not None
    assert regenerated.access_token_payload["role"] == "admin"
    assert regenerated.access_token_payload["plan"] == "pro"  # the merge, now in a token
    assert store.sessions[created.handle] == row


async def test_regenerate_an_expired_token_updates_the_session_but_mints_none(
    authority: Authority, clock: ManualClock, store: MemoryStore
) -> None:
    created = await authority.sessions.create_new_session("user-1", {"role": "admin"}, {})
    clock.ms = created.access_token.expiry  # the token has expired, the session has not

    regenerated = await authority.sessions.regenerate_access_token(
        created.access_token.token, {"role": "viewer"}
    )

    assert regenerated is not None
    assert regenerated.access_token is None
    protected = {k: v for k, v in created.access_token_payload.items() if k != "role"}
    assert regenerated.access_token_payload == {**protected, "role": "viewer"}
    assert json.loads(store.sessions[created.handle].access_token_payload) == {"role": "viewer"}


async def test_regenerate_for_a_revoked_session_is_none(authority: Authority) -> None:
    created = await authority.sessions.create_new_session("user-1", {}, {})
    await authority.sessions.revoke_session(created.handle)
    assert (
        await authority.sessions.regenerate_access_token(created.access_token.token, None) is None
    )
    assert (
        await authority.sessions.regenerate_access_token(created.access_token.token, {"a": 1})
        is None
    )


async def test_regenerate_refuses_protected_claims(authority: Authority) -> None:
    created = await authority.sessions.create_new_session("user-1", {}, {})
    with pytest.raises(InvalidArgumentError) as refused:
        await authority.sessions.regenerate_access_token(created.access_token.token, {"sub": "x"})
    assert refused.value.field == "new_access_token_payload"
