"""Every SessionClient method against a real server on a real SQLite file."""

from __future__ import annotations

import json
from typing import Any

import pytest
from session_authority import (
    InvalidArgumentError,
    SessionClient,
    SessionContainer,
    SessionInformation,
    UnauthorisedError,
)
from session_authority.verify import b64url_decode

from .conftest import ManualClock

# The largest integer the API carries (JSON numbers are doubles): proves payloads keep
# integers exact, and give them back as int. Past it the SDK refuses to send one.
BIG = 2**53
PAYLOAD: dict[str, Any] = {"role": "admin", "big": BIG, "nested": {"a": [1, 2.5, None, "x"]}}
DATA: dict[str, Any] = {"cart": [1, 2, 3], "big": -BIG, "unicode": "zß水🙂"}


async def test_create_new_session_returns_a_full_container(client: SessionClient) -> None:
    session = await client.create_new_session("user-1", PAYLOAD, DATA)
    assert isinstance(session, SessionContainer)
    assert session.user_id == "user-1"
    assert session.session_handle
    assert session.access_token.count(".") == 2
    assert session.refresh_token
    assert session.anti_csrf_token is None  # default mode NONE
    payload = session.access_token_payload
    assert payload["sub"] == payload["rsub"] == "user-1"
    assert payload["sessionHandle"] == session.session_handle
    assert payload["parentRefreshTokenHash1"] is None
    assert payload["tId"] == "public"
    assert payload["exp"] - payload["iat"] == 3600
    assert {k: payload[k] for k in PAYLOAD} == PAYLOAD
    assert payload["big"] == BIG and isinstance(payload["big"], int)
    assert session.access_token not in repr(session)
    assert session.refresh_token not in repr(session)


async def test_get_session_verifies_locally_and_against_the_database(
    client: SessionClient,
) -> None:
    created = await client.create_new_session("user-1", PAYLOAD)
    for check_database in (False, True):
        verified = await client.get_session(created.access_token, check_database=check_database)
        assert verified is not None
        assert verified.session_handle == created.session_handle
        assert verified.user_id == "user-1"
        assert verified.refresh_token is None
        assert verified.access_token_payload == created.access_token_payload


async def test_get_session_without_a_token(client: SessionClient) -> None:
    assert await client.get_session(None, session_required=False) is None
    assert await client.get_session("", session_required=False) is None
    with pytest.raises(UnauthorisedError) as raised:
        await client.get_session(None)
    assert raised.value.clear_tokens is False


async def test_refresh_session_rotates(client: SessionClient) -> None:
    created = await client.create_new_session("user-1", PAYLOAD)
    assert created.refresh_token is not None
    refreshed = await client.refresh_session(created.refresh_token)
    assert refreshed.session_handle == created.session_handle
    assert refreshed.refresh_token not in (None, created.refresh_token)
    assert refreshed.access_token != created.access_token
    assert refreshed.access_token_payload["big"] == BIG
    verified = await client.get_session(refreshed.access_token, check_database=True)
    assert verified is not None and verified.session_handle == created.session_handle


async def test_revoke_session(client: SessionClient) -> None:
    created = await client.create_new_session("user-1")
    assert await client.revoke_session(created.session_handle) is True
    assert await client.revoke_session(created.session_handle) is False
    assert await client.get_session_information(created.session_handle) is None
    with pytest.raises(UnauthorisedError):
        await client.get_session(created.access_token, check_database=True)
    # Without check_database the access token stays valid until it expires.
    assert await client.get_session(created.access_token) is not None


async def test_revoke_multiple_sessions(client: SessionClient) -> None:
    a = await client.create_new_session("user-1")
    b = await client.create_new_session("user-2")
    c = await client.create_new_session("user-3")
    revoked = await client.revoke_multiple_sessions(
        [a.session_handle, "no-such-handle", b.session_handle, a.session_handle]
    )
    assert revoked == [a.session_handle, b.session_handle]
    assert await client.get_session_information(c.session_handle) is not None
    assert await client.revoke_multiple_sessions([]) == []


async def test_sessions_for_user(client: SessionClient) -> None:
    first = await client.create_new_session("user-1")
    second = await client.create_new_session("user-1")
    other = await client.create_new_session("user-2")
    handles = await client.get_all_session_handles_for_user("user-1")
    assert sorted(handles) == sorted([first.session_handle, second.session_handle])
    assert await client.get_all_session_handles_for_user("nobody") == []
    revoked = await client.revoke_all_sessions_for_user("user-1")
    assert sorted(revoked) == sorted(handles)
    assert await client.get_all_session_handles_for_user("user-1") == []
    assert await client.revoke_all_sessions_for_user("user-1") == []
    assert await client.get_all_session_handles_for_user("user-2") == [other.session_handle]


async def test_get_session_information(client: SessionClient, clock: ManualClock) -> None:
    created = await client.create_new_session("user-1", PAYLOAD, DATA)
    info = await client.get_session_information(created.session_handle)
    assert info == SessionInformation(
        session_handle=created.session_handle,
        user_id="user-1",
        session_data_in_database=DATA,
        expiry=clock.ms + 8_640_000_000,
        custom_claims_in_access_token_payload=PAYLOAD,
        time_created=clock.ms,
        tenant_id="public",
    )
    assert await client.get_session_information("no-such-handle") is None


async def test_update_session_data_in_database_replaces_it(client: SessionClient) -> None:
    created = await client.create_new_session("user-1", None, {"old": 1, "keep": 2})
    assert await client.update_session_data_in_database(created.session_handle, DATA) is True
    info = await client.get_session_information(created.session_handle)
    assert info is not None and info.session_data_in_database == DATA
    assert await client.update_session_data_in_database("no-such-handle", DATA) is False


async def test_merge_into_access_token_payload(client: SessionClient) -> None:
    created = await client.create_new_session("user-1", {"a": 1, "b": 2})
    merged = await client.merge_into_access_token_payload(
        created.session_handle, {"b": None, "c": BIG}
    )
    assert merged is True
    info = await client.get_session_information(created.session_handle)
    assert info is not None
    assert info.custom_claims_in_access_token_payload == {"a": 1, "c": BIG}
    # Live access tokens see it at their next refresh.
    assert created.refresh_token is not None
    refreshed = await client.refresh_session(created.refresh_token)
    assert refreshed.custom_claims == {"a": 1, "c": BIG}
    assert await client.merge_into_access_token_payload("no-such-handle", {"x": 1}) is False
    with pytest.raises(InvalidArgumentError):
        await client.merge_into_access_token_payload(created.session_handle, {"sub": "x"})


async def test_regenerate_access_token(client: SessionClient, clock: ManualClock) -> None:
    created = await client.create_new_session("user-1", {"a": 1})
    clock.advance(10)
    regenerated = await client.regenerate_access_token(created.access_token, {"b": 2})
    assert regenerated is not None and regenerated.access_token is not None
    assert regenerated.access_token.token != created.access_token
    # Same expiry, new payload, stored copy replaced.
    assert regenerated.access_token.expiry == created.access_token_payload["exp"] * 1000
    assert (
        regenerated.access_token_payload["b"] == 2 and "a" not in regenerated.access_token_payload
    )
    info = await client.get_session_information(created.session_handle)
    assert info is not None and info.custom_claims_in_access_token_payload == {"b": 2}
    verified = await client.get_session(regenerated.access_token.token)
    assert verified is not None and verified.access_token_payload["b"] == 2

    # Without a new payload it re-mints from the stored one.
    await client.merge_into_access_token_payload(created.session_handle, {"c": 3})
    again = await client.regenerate_access_token(created.access_token)
    assert again is not None and again.access_token_payload["c"] == 3

    # An expired token: only the stored payload changes, no token comes back.
    clock.advance(3600)
    expired = await client.regenerate_access_token(created.access_token, {"d": 4})
    assert expired is not None and expired.access_token is None
    info = await client.get_session_information(created.session_handle)
    assert info is not None and info.custom_claims_in_access_token_payload == {"d": 4}

    await client.revoke_session(created.session_handle)
    assert await client.regenerate_access_token(created.access_token) is None


async def test_get_jwks(client: SessionClient) -> None:
    created = await client.create_new_session("user-1")
    jwks = await client.get_jwks()
    # The dynamic key that signs access tokens, and the static one for CreateJwt.
    (key,) = [k for k in jwks["keys"] if k["kid"].startswith("d-")]
    assert [k["kid"][:2] for k in jwks["keys"]].count("s-") == 1
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig"
    assert key["kid"].startswith("d-") and key["kid"][2:].isdigit()
    assert {"n", "e"} <= key.keys() and "d" not in key  # never a private part
    header = json.loads(b64url_decode(created.access_token.split(".")[0]))
    assert header == {"alg": "RS256", "kid": key["kid"], "typ": "JWT", "version": "5"}


async def test_container_methods(client: SessionClient, clock: ManualClock) -> None:
    created = await client.create_new_session("user-1", {"a": 1}, {"d": 1})
    assert await created.get_session_data_from_database() == {"d": 1}
    await created.update_session_data_in_database({"d": 2})
    assert await created.get_session_data_from_database() == {"d": 2}
    assert await created.get_time_created() == clock.ms
    assert await created.get_expiry() == clock.ms + 8_640_000_000

    old_token = created.access_token
    await created.merge_into_access_token_payload({"b": 2, "a": None})
    assert created.access_token != old_token
    assert created.custom_claims == {"b": 2}
    verified = await client.get_session(created.access_token)
    assert verified is not None and verified.custom_claims == {"b": 2}

    assert await created.revoke_session() is True
    with pytest.raises(UnauthorisedError):
        await created.get_session_data_from_database()
    with pytest.raises(UnauthorisedError):
        await created.update_session_data_in_database({"x": 1})
