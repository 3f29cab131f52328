"""Lifetimes, caps and listing (issue 7), on both backends with the injected clock:
the sliding idle timeout, the absolute lifetime, max_sessions_per_user, client
metadata, list_sessions and revoke_other_sessions."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc
import pytest
from session_authority import (
    ClientMetadata,
    InvalidArgumentError,
    SessionClient,
    SessionContainer,
    TryRefreshTokenError,
    UnauthorisedError,
)
from session_authority.v1 import session_service_pb2 as pb
from session_authority.v1 import session_service_pb2_grpc as pb_grpc
from session_authority_server.app import RunningServer

from .conftest import ManualClock

Start = Callable[..., Awaitable[RunningServer]]
Connect = Callable[..., SessionClient]

ACCESS_S = 3600
IDLE_S = 7200  # refresh_token_validity: the idle timeout
ABSOLUTE_S = 10_000


async def logged_revocations(server: RunningServer) -> list[pb.Revocation]:
    """Everything in the revocation log: the first message of a watch from cursor 0."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = pb_grpc.SessionServiceStub(channel).WatchRevocations(
            pb.WatchRevocationsRequest(after_cursor=0)
        )
        try:
            message = await asyncio.wait_for(call.read(), 5)
        finally:
            call.cancel()
    assert isinstance(message, pb.WatchRevocationsResponse)
    return list(message.revocations)


def refresh_token_of(session: SessionContainer) -> str:
    assert session.refresh_token is not None
    return session.refresh_token


# --- idle timeout ----------------------------------------------------------------------


async def test_idle_timeout_slides_with_each_refresh(
    start: Start, connect: Connect, clock: ManualClock, any_database_url: str
) -> None:
    server = await start(
        database_url=any_database_url,
        access_token_validity=ACCESS_S,
        refresh_token_validity=IDLE_S,
    )
    async with connect(server) as client:
        active = await client.create_new_session("active")
        idle = await client.create_new_session("idle")
        created = clock.ms
        assert active.refresh_token_expiry == created + IDLE_S * 1000

        # Refreshed just before each expiry, the session lives on well past one period.
        for _ in range(3):
            clock.advance(IDLE_S - 1)
            active = await client.refresh_session(refresh_token_of(active))
            assert active.refresh_token_expiry == clock.ms + IDLE_S * 1000
            info = await client.get_session_information(active.session_handle)
            assert info is not None and info.expiry == clock.ms + IDLE_S * 1000
        assert clock.ms - created > 3 * IDLE_S * 1000 - 5000

        # The idle one went at created + idle timeout.
        assert await client.get_session_information(idle.session_handle) is None
        with pytest.raises(UnauthorisedError):
            await client.refresh_session(refresh_token_of(idle))
        assert await client.get_all_session_handles_for_user("idle") == []

        # And the active one goes exactly one idle period after its last refresh.
        clock.ms += IDLE_S * 1000 - 1
        assert await client.get_session_information(active.session_handle) is not None
        clock.ms += 1
        assert await client.get_session_information(active.session_handle) is None
        with pytest.raises(UnauthorisedError):
            await client.refresh_session(refresh_token_of(active))
    # Expiry is not a revocation.
    assert await logged_revocations(server) == []


# --- absolute lifetime -------------------------------------------------------------------


async def test_absolute_lifetime_caps_every_refresh(
    start: Start, connect: Connect, clock: ManualClock, any_database_url: str
) -> None:
    server = await start(
        database_url=any_database_url,
        access_token_validity=ACCESS_S,
        refresh_token_validity=IDLE_S,
        session_absolute_lifetime=ABSOLUTE_S,
    )
    async with connect(server) as client:
        session = await client.create_new_session("user-1")
        created = clock.ms
        end = created + ABSOLUTE_S * 1000
        info = await client.get_session_information(session.session_handle)
        assert info is not None and info.expiry == created + IDLE_S * 1000  # idle first

        clock.advance(5000)
        session = await client.refresh_session(refresh_token_of(session))
        info = await client.get_session_information(session.session_handle)
        assert info is not None and info.expiry == end  # not now + idle
        assert session.refresh_token_expiry == end
        assert session.access_token_expiry == clock.ms + ACCESS_S * 1000  # not yet capped

        # Near the end, the access token is cut short too.
        clock.ms = end - 600_000
        session = await client.refresh_session(refresh_token_of(session))
        assert session.access_token_expiry is not None and session.access_token_expiry <= end
        assert session.access_token_payload["exp"] * 1000 <= end
        info = await client.get_session_information(session.session_handle)
        assert info is not None and info.expiry == end
        assert await client.get_session(session.access_token) is not None

        clock.ms = end - 1
        session = await client.refresh_session(refresh_token_of(session))
        assert session.access_token_payload["exp"] * 1000 <= end
        info = await client.get_session_information(session.session_handle)
        assert info is not None and info.expiry == end

        clock.ms = end
        with pytest.raises(UnauthorisedError):
            await client.refresh_session(refresh_token_of(session))
        assert await client.get_session_information(session.session_handle) is None
        with pytest.raises(TryRefreshTokenError):  # its last access token has expired too
            await client.get_session(session.access_token)


async def test_absolute_lifetime_shorter_than_the_idle_timeout(
    start: Start, connect: Connect, clock: ManualClock, any_database_url: str
) -> None:
    server = await start(
        database_url=any_database_url,
        access_token_validity=ACCESS_S,
        refresh_token_validity=IDLE_S,
        session_absolute_lifetime=ACCESS_S + 600,
    )
    async with connect(server) as client:
        session = await client.create_new_session("user-1")
        end = clock.ms + (ACCESS_S + 600) * 1000
        info = await client.get_session_information(session.session_handle)
        assert info is not None and info.expiry == end
        assert session.refresh_token_expiry == end
        clock.advance(ACCESS_S)
        session = await client.refresh_session(refresh_token_of(session))
        assert session.access_token_expiry == end  # 600 s left, not an hour
        clock.ms = end
        with pytest.raises(UnauthorisedError):
            await client.refresh_session(refresh_token_of(session))


# --- max_sessions_per_user ------------------------------------------------------------------


async def test_one_session_too_many_revokes_the_oldest(
    start: Start, connect: Connect, clock: ManualClock, any_database_url: str
) -> None:
    server = await start(database_url=any_database_url, max_sessions_per_user=3)
    async with connect(server) as client:
        other = await client.create_new_session("bob")
        sessions = []
        for _ in range(3):
            sessions.append(await client.create_new_session("alice"))
            clock.advance(1)
        first, second, third = sessions
        assert await logged_revocations(server) == []

        # Refreshing is not a new session: nothing is revoked however often.
        for _ in range(3):
            third = await client.refresh_session(refresh_token_of(third))
        assert await logged_revocations(server) == []

        fourth = await client.create_new_session("alice")
        handles = await client.get_all_session_handles_for_user("alice")
        assert handles == [second.session_handle, third.session_handle, fourth.session_handle]
        with pytest.raises(UnauthorisedError):
            await client.refresh_session(refresh_token_of(first))
        [revocation] = await logged_revocations(server)
        assert revocation.session_handle == first.session_handle
        assert revocation.user_id == "alice" and revocation.revoke_time.ToMilliseconds() == clock.ms

        # The oldest by creation, though it was refreshed most recently.
        clock.advance(1)
        second = await client.refresh_session(refresh_token_of(second))
        clock.advance(1)
        await client.create_new_session("alice")
        assert second.session_handle not in await client.get_all_session_handles_for_user("alice")
        assert [r.session_handle for r in await logged_revocations(server)] == [
            first.session_handle,
            second.session_handle,
        ]
        assert await client.get_all_session_handles_for_user("bob") == [other.session_handle]


async def test_with_a_cap_of_one_each_login_revokes_the_previous(
    start: Start, connect: Connect, clock: ManualClock, any_database_url: str
) -> None:
    server = await start(
        database_url=any_database_url,
        access_token_validity=ACCESS_S,
        refresh_token_validity=IDLE_S,
        max_sessions_per_user=1,
    )
    async with connect(server) as client:
        logins = []
        for _ in range(4):
            logins.append(await client.create_new_session("alice"))
            assert await client.get_all_session_handles_for_user("alice") == [
                logins[-1].session_handle
            ]
            clock.advance(1)
        revocations = await logged_revocations(server)
        assert [r.session_handle for r in revocations] == [s.session_handle for s in logins[:-1]]
        for previous in logins[:-1]:
            with pytest.raises(UnauthorisedError):
                await client.get_session(previous.access_token, check_database=True)
        assert await client.get_session(logins[-1].access_token, check_database=True)

        # An expired session does not count: the next login revokes nothing.
        clock.advance(IDLE_S)
        after_expiry = await client.create_new_session("alice")
        assert await client.get_all_session_handles_for_user("alice") == [
            after_expiry.session_handle
        ]
        assert await logged_revocations(server) == revocations


async def test_concurrent_logins_never_exceed_the_cap(
    start: Start, connect: Connect, any_database_url: str
) -> None:
    server = await start(database_url=any_database_url, max_sessions_per_user=2)
    async with connect(server) as client:
        created = [await client.create_new_session("alice")]
        for _ in range(3):
            created += await asyncio.gather(
                *(client.create_new_session("alice") for _ in range(10))
            )
            page = await client.list_sessions("alice")
            assert page.total_count == 2
        # Every session created and now gone was revoked through the log.
        revoked = {r.session_handle for r in await logged_revocations(server)}
        kept = {s.session_handle for s in page.sessions}
        assert revoked == {s.session_handle for s in created} - kept


# --- client metadata --------------------------------------------------------------------------


async def test_client_metadata_is_stored_and_listed(
    start: Start, connect: Connect, clock: ManualClock, any_database_url: str
) -> None:
    server = await start(database_url=any_database_url)
    laptop = ClientMetadata(
        "203.0.113.7", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0", "Firefox on Linux"
    )
    phone = ClientMetadata("2001:db8::1", "Ünïcode-Agent/1.0", "Téléphone")
    async with connect(server) as client:
        await client.create_new_session("alice", client_metadata=laptop)
        clock.advance(1)
        await client.create_new_session("alice", client_metadata=phone)
        clock.advance(1)
        await client.create_new_session("alice")  # none given: empty fields
        page = await client.list_sessions("alice")
        assert [s.client_metadata for s in page.sessions] == [ClientMetadata(), phone, laptop]


INVALID_METADATA = [
    (ClientMetadata(ip="not-an-ip"), "client_metadata.ip"),
    (ClientMetadata(ip="203.0.113.300"), "client_metadata.ip"),
    (ClientMetadata(ip="1" * 65), "client_metadata.ip"),
    (ClientMetadata(user_agent="a" * 513), "client_metadata.user_agent"),
    (ClientMetadata(user_agent="Agent\r\nX-Injected: 1"), "client_metadata.user_agent"),
    (ClientMetadata(device="d" * 129), "client_metadata.device"),
    (ClientMetadata(device="tab\tlabel"), "client_metadata.device"),
    (ClientMetadata(device="nul\x00"), "client_metadata.device"),
]


async def test_client_metadata_is_validated_and_size_limited(client: SessionClient) -> None:
    for metadata, field in INVALID_METADATA:
        with pytest.raises(InvalidArgumentError) as raised:
            await client.create_new_session("alice", client_metadata=metadata)
        assert raised.value.field == field, metadata
    assert await client.get_all_session_handles_for_user("alice") == []

    # At the limits, accepted.
    metadata = ClientMetadata("1.2.3.4", "a" * 512, "d" * 128)
    await client.create_new_session("alice", client_metadata=metadata)
    [summary] = (await client.list_sessions("alice")).sessions
    assert summary.client_metadata == metadata


# --- list_sessions --------------------------------------------------------------------------


async def test_list_sessions_pages_newest_first(
    start: Start, connect: Connect, clock: ManualClock, any_database_url: str
) -> None:
    server = await start(
        database_url=any_database_url,
        access_token_validity=ACCESS_S,
        refresh_token_validity=IDLE_S,
    )
    async with connect(server) as client:
        sessions = []
        for i in range(5):
            sessions.append(
                await client.create_new_session(
                    "alice", client_metadata=ClientMetadata(device=f"d{i}")
                )
            )
            await client.create_new_session("bob")
            clock.advance(1)
        start_ms = clock.ms - 5000

        seen, token, pages = [], None, 0
        while True:
            page = await client.list_sessions("alice", page_size=2, page_token=token)
            pages += 1
            assert page.total_count == 5
            assert len(page.sessions) <= 2
            seen += page.sessions
            token = page.next_page_token
            if token is None:
                break
        assert pages == 3
        assert [s.session_handle for s in seen] == [s.session_handle for s in reversed(sessions)]
        for i, summary in enumerate(reversed(seen)):
            assert summary.user_id == "alice"
            assert summary.client_metadata.device == f"d{i}"
            assert summary.time_created == start_ms + i * 1000
            assert summary.last_refreshed == summary.time_created
            assert summary.expiry == summary.time_created + IDLE_S * 1000

        # A refresh moves last_refreshed and expiry, not the order (creation time).
        clock.advance(100)
        refreshed = await client.refresh_session(refresh_token_of(sessions[1]))
        page = await client.list_sessions("alice")
        assert page.next_page_token is None
        assert [s.session_handle for s in page.sessions] == [
            s.session_handle for s in reversed(sessions)
        ]
        summary = next(s for s in page.sessions if s.session_handle == refreshed.session_handle)
        assert summary.last_refreshed == clock.ms
        assert summary.expiry == clock.ms + IDLE_S * 1000
        assert summary.time_created == start_ms + 1000

        # Expired sessions are neither listed nor counted.
        clock.ms = start_ms + IDLE_S * 1000 + 3500  # all but the newest and the refreshed one
        page = await client.list_sessions("alice", page_size=1)
        assert page.total_count == 2
        assert [s.session_handle for s in page.sessions] == [sessions[4].session_handle]
        assert page.next_page_token is not None
        last = await client.list_sessions("alice", page_size=1, page_token=page.next_page_token)
        assert [s.session_handle for s in last.sessions] == [sessions[1].session_handle]

        # Nobody else's sessions, and nothing for an unknown user.
        bob = await client.list_sessions("bob")
        assert all(s.user_id == "bob" for s in bob.sessions) and bob.total_count == 1
        nobody = await client.list_sessions("nobody")
        assert nobody.sessions == [] and nobody.total_count == 0
        assert nobody.next_page_token is None


async def test_list_sessions_page_size_and_token_checks(
    start: Start, connect: Connect, any_database_url: str
) -> None:
    server = await start(database_url=any_database_url)
    async with connect(server) as client:
        # 51 sessions created in one millisecond (the clock stands still): pages are
        # ordered by (created, handle), so none is listed twice or missed.
        created = await asyncio.gather(*(client.create_new_session("alice") for _ in range(51)))
        default = await client.list_sessions("alice", page_size=0)  # 0 means 50
        assert len(default.sessions) == 50 and default.total_count == 51
        assert default.next_page_token is not None
        rest = await client.list_sessions("alice", page_size=0, page_token=default.next_page_token)
        assert len(rest.sessions) == 1 and rest.next_page_token is None
        listed = [s.session_handle for s in default.sessions + rest.sessions]
        assert sorted(listed) == sorted(s.session_handle for s in created)
        assert len((await client.list_sessions("alice", page_size=200)).sessions) == 51
        listed, token = [], None
        for _ in range(20):
            page = await client.list_sessions("alice", page_size=3, page_token=token)
            listed += [s.session_handle for s in page.sessions]
            token = page.next_page_token
            if token is None:
                break
        assert sorted(listed) == sorted(s.session_handle for s in created)

        for size in (201, -1):
            with pytest.raises(InvalidArgumentError) as raised:
                await client.list_sessions("alice", page_size=size)
            assert raised.value.field == "page_size"
        for token in ("not a token", "bm90IGpzb24", "WzEsMl0", "W10"):
            with pytest.raises(InvalidArgumentError) as raised:
                await client.list_sessions("alice", page_token=token)
            assert raised.value.field == "page_token"
        with pytest.raises(InvalidArgumentError) as raised:
            await client.list_sessions("")
        assert raised.value.field == "user_id"


# --- revoke_other_sessions ------------------------------------------------------------------


async def test_revoke_other_sessions_keeps_only_this_one(
    start: Start, connect: Connect, clock: ManualClock, any_database_url: str
) -> None:
    server = await start(database_url=any_database_url)
    async with connect(server) as client:
        alice = [await client.create_new_session("alice") for _ in range(4)]
        bob = await client.create_new_session("bob")
        keep = alice[2]

        revoked = await client.revoke_other_sessions(keep.session_handle)
        others = [s.session_handle for s in alice if s is not keep]
        assert sorted(revoked) == sorted(others)
        assert await client.get_all_session_handles_for_user("alice") == [keep.session_handle]
        assert await client.get_all_session_handles_for_user("bob") == [bob.session_handle]
        assert await client.get_session(keep.access_token, check_database=True)
        for handle in others:
            assert await client.get_session_information(handle) is None
        logged = await logged_revocations(server)
        assert sorted(r.session_handle for r in logged) == sorted(others)
        assert all(
            r.user_id == "alice" and r.revoke_time.ToMilliseconds() == clock.ms for r in logged
        )

        # Nothing left to revoke; unknown and revoked handles revoke nothing.
        assert await client.revoke_other_sessions(keep.session_handle) == []
        assert await client.revoke_other_sessions("no-such-handle") == []
        assert await client.revoke_other_sessions(alice[0].session_handle) == []
        assert await client.get_all_session_handles_for_user("alice") == [keep.session_handle]
        with pytest.raises(InvalidArgumentError):
            await client.revoke_other_sessions("")
