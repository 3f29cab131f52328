"""ListSessions: a user's live sessions, newest first, page by page; page tokens
are authenticated and bound to the user they were issued for."""

from __future__ import annotations

import pytest
from session_authority.errors import InvalidArgumentError
from session_authority_server.assembly import Authority
from session_authority_server.tokens import PageTokenCodec

from ..conftest import ManualClock


async def create_sessions(
    authority: Authority, clock: ManualClock, user_id: str, count: int
) -> list[str]:
    """Handles of new sessions, oldest first (1 ms apart: a well-defined order)."""
    handles = []
    for _ in range(count):
        clock.advance(0.001)
        handles.append((await authority.sessions.create_new_session(user_id, {}, {})).handle)
    return handles


async def test_pages_run_newest_first_and_end_with_an_empty_token(
    authority: Authority, clock: ManualClock
) -> None:
    mine = await create_sessions(authority, clock, "user-1", 5)
    await create_sessions(authority, clock, "user-2", 2)

    seen: list[str] = []
    token = ""
    for expected_size in (2, 2, 1):
        rows, token, total = await authority.sessions.list_sessions("user-1", 2, token)
        assert total == 5
        assert len(rows) == expected_size
        assert all(row.user_id == "user-1" for row in rows)
        seen += [row.handle for row in rows]
    assert token == ""
    assert seen == mine[::-1]


async def test_listing_skips_ended_sessions(authority: Authority, clock: ManualClock) -> None:
    mine = await create_sessions(authority, clock, "user-1", 3)
    await authority.sessions.revoke_session(mine[1])
    rows, token, total = await authority.sessions.list_sessions("user-1", 0, "")
    assert ([row.handle for row in rows], token, total) == ([mine[2], mine[0]], "", 2)


async def test_a_page_token_pages_only_the_user_it_was_issued_for(
    authority: Authority, clock: ManualClock
) -> None:
    await create_sessions(authority, clock, "user-1", 3)
    await create_sessions(authority, clock, "user-2", 3)
    _, token, _ = await authority.sessions.list_sessions("user-1", 1, "")
    assert token

    with pytest.raises(InvalidArgumentError) as refused:
        await authority.sessions.list_sessions("user-2", 1, token)
    assert refused.value.field == "page_token"
    rows, _, _ = await authority.sessions.list_sessions("user-1", 1, token)
    assert len(rows) == 1


@pytest.mark.parametrize("token", ["garbage", "A" * 76, "A" * 77])
async def test_a_made_up_page_token_is_refused(
    authority: Authority, clock: ManualClock, token: str
) -> None:
    await create_sessions(authority, clock, "user-1", 1)
    with pytest.raises(InvalidArgumentError) as refused:
        await authority.sessions.list_sessions("user-1", 1, token)
    assert refused.value.field == "page_token"


async def test_another_authoritys_page_token_is_refused(
    authority: Authority, clock: ManualClock
) -> None:
    # The same user and position, but MACed with another key.
    handles = await create_sessions(authority, clock, "user-1", 2)
    forged = PageTokenCodec(b"k" * 32).issue("user-1", clock.now_ms(), handles[-1])
    with pytest.raises(InvalidArgumentError):
        await authority.sessions.list_sessions("user-1", 1, forged)


@pytest.mark.parametrize("page_size", [-1, 201])
async def test_page_size_is_checked(authority: Authority, page_size: int) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        await authority.sessions.list_sessions("user-1", page_size, "")
    assert refused.value.field == "page_size"
