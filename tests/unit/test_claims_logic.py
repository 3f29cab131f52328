"""The stored access-token payload: merging into it (protected claims and
oversized results refused), claim values set, read and removed, and the global
claim validators that get_session runs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from session_authority.claims import HAS_VALUE, ClaimValidator
from session_authority.errors import InvalidArgumentError, InvalidClaimsError
from session_authority_server.assembly import Authority
from session_authority_server.validation import MAX_ACCESS_TOKEN_PAYLOAD_BYTES

from ..conftest import ManualClock
from .conftest import MakeAuthority
from .memory_store import MemoryStore

MISSING_HANDLE = "f00d0000-0000-4000-8000-000000000000"


def stored_payload(store: MemoryStore, handle: str) -> dict[str, Any]:
    payload = json.loads(store.sessions[handle].access_token_payload)
    assert isinstance(payload, dict)
    return payload


# --- merge_into_access_token_payload ----------------------------------------------------


async def test_merge_is_shallow_and_none_deletes(authority: Authority, store: MemoryStore) -> None:
    created = await authority.sessions.create_new_session(
        "user-1", {"role": "admin", "org": {"id": 1, "name": "a"}, "gone": True}, {}
    )
    merged = await authority.sessions.merge_into_access_token_payload(
        created.handle, {"org": {"id": 2}, "gone": None, "plan": "pro", "absent": None}
    )
    assert merged is True
    assert stored_payload(store, created.handle) == {
        "role": "admin",
        "org": {"id": 2},  # replaced, not merged deeply
        "plan": "pro",
    }
    # Tokens issued from now on carry it; the old access token does not change.
    refreshed = await authority.sessions.refresh_session(
        created.refresh_token.token, None, disable_anti_csrf=False
    )
    assert refreshed.access_token_payload["plan"] == "pro"
    assert "gone" not in refreshed.access_token_payload
    assert "plan" not in created.access_token_payload


@pytest.mark.parametrize("claim", ["sub", "iss", "sessionHandle", "refreshTokenHash1", "tId"])
async def test_merge_refuses_protected_claims(
    authority: Authority, store: MemoryStore, claim: str
) -> None:
    created = await authority.sessions.create_new_session("user-1", {"role": "admin"}, {})
    with pytest.raises(InvalidArgumentError) as refused:
        await authority.sessions.merge_into_access_token_payload(created.handle, {claim: "x"})
    assert refused.value.field == "access_token_payload_update"
    assert stored_payload(store, created.handle) == {"role": "admin"}


async def test_merge_refuses_a_result_over_the_payload_limit(
    authority: Authority, store: MemoryStore
) -> None:
    half = "x" * (MAX_ACCESS_TOKEN_PAYLOAD_BYTES // 2)
    created = await authority.sessions.create_new_session("user-1", {"a": half}, {})
    # Each half fits alone; together (with the JSON around them) they do not.
    with pytest.raises(InvalidArgumentError) as refused:
        await authority.sessions.merge_into_access_token_payload(created.handle, {"b": half})
    assert refused.value.field == "access_token_payload_update"
    assert stored_payload(store, created.handle) == {"a": half}
    # Replacing the big value instead keeps the result within the limit.
    assert await authority.sessions.merge_into_access_token_payload(
        created.handle, {"a": None, "b": half}
    )
    assert stored_payload(store, created.handle) == {"b": half}


async def test_merge_into_a_missing_session_is_false(authority: Authority) -> None:
    assert not await authority.sessions.merge_into_access_token_payload(MISSING_HANDLE, {"a": 1})


# --- claim values -------------------------------------------------------------------------


async def test_set_get_and_remove_a_claim_value(
    authority: Authority, store: MemoryStore, clock: ManualClock
) -> None:
    created = await authority.sessions.create_new_session("user-1", {"role": "admin"}, {})
    claims = authority.claims

    assert await claims.get_claim_value(created.handle, "st-perm") == (True, None)
    assert await claims.set_claim_value(created.handle, "st-perm", ["read", "write"])
    assert await claims.get_claim_value(created.handle, "st-perm") == (True, ["read", "write"])
    assert stored_payload(store, created.handle) == {
        "role": "admin",
        "st-perm": {"v": ["read", "write"], "t": clock.now_ms()},  # when it was fetched
    }

    assert await claims.remove_claim(created.handle, "st-perm")
    assert await claims.get_claim_value(created.handle, "st-perm") == (True, None)
    assert stored_payload(store, created.handle) == {"role": "admin"}


async def test_claim_values_of_a_missing_session(authority: Authority) -> None:
    claims = authority.claims
    assert await claims.get_claim_value(MISSING_HANDLE, "st-perm") == (False, None)
    assert not await claims.set_claim_value(MISSING_HANDLE, "st-perm", True)
    assert not await claims.remove_claim(MISSING_HANDLE, "st-perm")


@pytest.mark.parametrize("key", ["", "sub", "exp", "stt", "x" * 129, "nul\0"])
async def test_claim_keys_are_checked(authority: Authority, key: str) -> None:
    created = await authority.sessions.create_new_session("user-1", {}, {})
    with pytest.raises(InvalidArgumentError):
        await authority.claims.set_claim_value(created.handle, key, True)
    with pytest.raises(InvalidArgumentError):
        await authority.claims.get_claim_value(created.handle, key)
    with pytest.raises(InvalidArgumentError):
        await authority.claims.remove_claim(created.handle, key)


async def test_set_claim_value_refuses_an_oversized_result(
    authority: Authority, store: MemoryStore
) -> None:
    created = await authority.sessions.create_new_session("user-1", {}, {})
    with pytest.raises(InvalidArgumentError) as refused:
        await authority.claims.set_claim_value(
            created.handle, "big", "x" * MAX_ACCESS_TOKEN_PAYLOAD_BYTES
        )
    assert refused.value.field == "value"
    assert stored_payload(store, created.handle) == {}


# --- validators ---------------------------------------------------------------------------


async def test_global_validators_run_on_get_session_until_a_token_carries_the_claim(
    make_authority: MakeAuthority,
) -> None:
    authority = await make_authority(
        global_claim_validators=[{"claim": "st-ev", "kind": "is_true"}]
    )
    created = await authority.sessions.create_new_session("user-1", {}, {})

    async def get(token: str, validators: list[ClaimValidator] | None = None) -> str:
        verified = await authority.sessions.get_session(
            token, None, anti_csrf_check=None, check_database=False, claim_validators=validators
        )
        return verified.handle

    with pytest.raises(InvalidClaimsError) as invalid:
        await get(created.access_token.token)
    assert [failure.id for failure in invalid.value.invalid_claims] == ["st-ev"]
    # The caller's validators replace the global ones.
    assert await get(created.access_token.token, []) == created.handle

    # Set in the database, the claim reaches the next token (not the old one).
    await authority.claims.set_claim_value(created.handle, "st-ev", True)
    with pytest.raises(InvalidClaimsError):
        await get(created.access_token.token)
    refreshed = await authority.sessions.refresh_session(
        created.refresh_token.token, None, disable_anti_csrf=False
    )
    assert await get(refreshed.access_token.token) == created.handle


async def test_max_age_of_a_claim_follows_the_clock(
    authority: Authority, clock: ManualClock
) -> None:
    created = await authority.sessions.create_new_session("user-1", {}, {})
    await authority.claims.set_claim_value(created.handle, "st-role", "admin")
    regenerated = await authority.sessions.regenerate_access_token(created.access_token.token, None)
    assert regenerated is not None
    validator = ClaimValidator("st-role", HAS_VALUE, "admin", max_age_in_seconds=60)

    assert (
        await authority.claims.validate_claims(regenerated.access_token_payload, [validator]) == []
    )
    clock.advance(60.001)
    failures = await authority.claims.validate_claims(regenerated.access_token_payload, [validator])
    assert [(f.id, f.reason["message"]) for f in failures] == [("st-role", "expired")]
