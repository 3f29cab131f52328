"""PostgreSQL failing under a running server process: stopped, frozen (up but
never answering), or stuck behind a lock. RPCs that need storage answer
UNAVAILABLE (reason STORAGE_UNAVAILABLE) within the client's timeout, the process
stays up and keeps verifying tokens locally, and once PostgreSQL is back it
serves again without a restart, with every committed session intact.

The outages are staged on a throwaway PostgreSQL server that the test creates
(initdb in a temporary directory, its own port), never on the shared one."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import grpc
import pytest
from google.protobuf import struct_pb2
from session_authority.errors import StorageUnavailableError
from session_authority.v1 import session_service_pb2 as pb
from session_authority.v1 import session_service_pb2_grpc as pb_grpc
from session_authority.wire import error_from_rpc_error

from .conftest import POSTGRES_DSN
from .processes import server_processes

pytestmark = pytest.mark.postgres

T = TypeVar("T")

CLIENT_TIMEOUT_S = 5.0
STATEMENT_TIMEOUT_S = 2
RECOVERY_TIMEOUT_S = 15.0
PG_CTL_TIMEOUT_S = 30
POSTGRESQL_ROOT = Path("/usr/lib/postgresql")


def _postgresql_bin() -> Path:
    """The newest installed PostgreSQL's bin directory, or skip with the reason."""
    if not POSTGRES_DSN:
        pytest.skip("SESSION_AUTHORITY_TEST_POSTGRES_DSN is not set (CI sets it; see .ci/run)")
    if shutil.which("runuser") is None:
        pytest.skip("runuser is missing: cannot run a throwaway PostgreSQL as user postgres")
    if os.geteuid() != 0:
        pytest.skip("a throwaway PostgreSQL is started with runuser, which needs root")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("there is no postgres user to run a throwaway PostgreSQL")
    versions = [
        path.parent
        for path in POSTGRESQL_ROOT.glob("*/bin/initdb")
        if path.parent.parent.name.isdigit() and (path.parent / "pg_ctl").exists()
    ]
    if not versions:
        pytest.skip(f"no initdb under {POSTGRESQL_ROOT}: cannot start a throwaway PostgreSQL")
    return max(versions, key=lambda path: int(path.parent.name))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class ThrowawayPostgres:
    """A PostgreSQL server of this test's own, in a temporary directory owned by
    the postgres user (trust authentication, 127.0.0.1 only)."""

    bin_dir: Path
    base: Path
    port: int

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    async def _run(self, *command: str, check: bool = True) -> int:
        process = await asyncio.create_subprocess_exec(
            "runuser",
            "-u",
            "postgres",
            "--",
            *command,
            cwd=self.base,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        if check and process.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed:\n{output.decode()}")
        assert process.returncode is not None
        return process.returncode

    async def init(self) -> None:
        await self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "--no-locale",
            "-E",
            "UTF8",
        )

    async def start(self) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1"
        await self._run(
            *self._pg_ctl(),
            "-l",
            str(self.base / "postgresql.log"),
            "-o",
            options,
            "-w",
            "-t",
            str(PG_CTL_TIMEOUT_S),
            "start",
        )

    async def stop(self, *, check: bool = True) -> None:
        await self._run(
            *self._pg_ctl(), "-m", "fast", "-w", "-t", str(PG_CTL_TIMEOUT_S), "stop", check=check
        )

    def freeze(self) -> list[int]:
        """Suspend (SIGSTOP) every process of this server: the postmaster first, so
        that it forks no backend unseen, then its children. Returns their pids."""
        postmaster = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        os.kill(postmaster, signal.SIGSTOP)
        children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
        pids = [postmaster, *map(int, children)]
        for pid in pids[1:]:
            os.kill(pid, signal.SIGSTOP)
        return pids

    @staticmethod
    def thaw(pids: list[int]) -> None:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)

    def _pg_ctl(self) -> tuple[str, ...]:
        return (str(self.bin_dir / "pg_ctl"), "-D", str(self.data))


def _directory_for_postgres() -> Path:
    """A new directory under /tmp that the postgres user owns (and can reach)."""
    base = Path(tempfile.mkdtemp(prefix="session-authority-pg-", dir="/tmp"))
    base.chmod(0o755)
    postgres = pwd.getpwnam("postgres")
    os.chown(base, postgres.pw_uid, postgres.pw_gid)
    return base


@pytest.fixture
async def throwaway_postgres() -> AsyncIterator[ThrowawayPostgres]:
    bin_dir = _postgresql_bin()
    base = _directory_for_postgres()
    try:
        server = ThrowawayPostgres(bin_dir, base, _free_port())
        await server.init()
        await server.start()
        try:
            yield server
        finally:
            await server.stop(check=False)
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def timed(call: Awaitable[T]) -> tuple[T | BaseException, float]:
    """(the call's result or the exception it raised, seconds it took)."""
    started = time.monotonic()
    try:
        outcome: T | BaseException = await call
    except Exception as error:
        outcome = error
    return outcome, time.monotonic() - started


async def storage_outcomes(calls: dict[str, Callable[[], Awaitable[Any]]]) -> dict[str, str]:
    """Run each call in turn; describe how it ended and whether within the timeout."""
    outcomes = {}
    for name, call in calls.items():
        outcome, seconds = await timed(call())
        verdict = "in time" if seconds < CLIENT_TIMEOUT_S else f"after {seconds:.1f} s"
        outcomes[name] = f"{type(outcome).__name__} {verdict}"
    return outcomes


def all_unavailable_in_time(calls: dict[str, Any]) -> dict[str, str]:
    return dict.fromkeys(calls, "StorageUnavailableError in time")


async def retry_while_unavailable(call: Callable[[], Awaitable[T]], timeout_s: float) -> T:
    """Poll call() until it stops raising StorageUnavailableError (bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await call()
        except StorageUnavailableError:
            if time.monotonic() >= deadline:
                raise
        await asyncio.sleep(0.2)


async def raw_create_new_session(target: str) -> grpc.aio.AioRpcError:
    """CreateNewSession through the bare generated stub; returns the RPC's error."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.SessionServiceStub(channel)
        try:
            await stub.CreateNewSession(
                pb.CreateNewSessionRequest(
                    user_id="raw",
                    access_token_payload=struct_pb2.Struct(),
                    session_data_in_database=struct_pb2.Struct(),
                ),
                timeout=CLIENT_TIMEOUT_S,
            )
        except grpc.aio.AioRpcError as error:
            return error
    raise AssertionError("CreateNewSession succeeded without its database")


def server_settings(database_url: str) -> dict[str, str]:
    return {
        "database_url": database_url,
        "database_statement_timeout": str(STATEMENT_TIMEOUT_S),
    }


async def serve_through_outage(
    postgres: ThrowawayPostgres, outage: Callable[[], AbstractAsyncContextManager[None]]
) -> None:
    """Sessions, then an outage: storage RPCs answer UNAVAILABLE in time, the
    process lives on and verifies locally. After it: the server serves again
    without a restart and every session committed before the outage is intact."""
    async with server_processes(server_settings(postgres.url)) as (server,):
        async with server.client(timeout=CLIENT_TIMEOUT_S) as client:
            sessions = [
                await client.create_new_session(f"user-{i}", {"n": i}, {"d": i}) for i in range(4)
            ]
            # One session has rotated before the outage: its newest tokens count.
            assert sessions[0].refresh_token is not None
            sessions[0] = await client.refresh_session(sessions[0].refresh_token)
            # Local verification needs the JWKS (and the global validators) cached.
            for session in sessions:
                assert await client.get_session(session.access_token) is not None
            refresh_token = sessions[1].refresh_token
            assert refresh_token is not None
            calls: dict[str, Callable[[], Awaitable[Any]]] = {
                "create_new_session": lambda: client.create_new_session("user-new"),
                "refresh_session": lambda: client.refresh_session(refresh_token),
                "get_session(check_database=True)": lambda: client.get_session(
                    sessions[2].access_token, check_database=True
                ),
                "revoke_session": lambda: client.revoke_session(sessions[3].session_handle),
            }

            async with outage():
                assert await storage_outcomes(calls) == all_unavailable_in_time(calls)
                error, seconds = await timed(raw_create_new_session(server.target))
                assert isinstance(error, grpc.aio.AioRpcError), error
                assert seconds < CLIENT_TIMEOUT_S
                assert error.code() == grpc.StatusCode.UNAVAILABLE
                assert isinstance(error_from_rpc_error(error), StorageUnavailableError)
                assert server.process.returncode is None, "the server died with its database"
                for session in sessions:  # needs no database
                    verified = await client.get_session(session.access_token)
                    assert verified is not None
                    assert verified.session_handle == session.session_handle

            fresh = await retry_while_unavailable(
                lambda: client.create_new_session("user-after"), RECOVERY_TIMEOUT_S
            )
            assert await client.get_session(fresh.access_token, check_database=True)
            for i, session in enumerate(sessions):
                verified = await client.get_session(session.access_token, check_database=True)
                assert verified is not None and verified.access_token_payload["n"] == i
                info_after = await client.get_session_information(session.session_handle)
                assert info_after is not None and info_after.session_data_in_database == {"d": i}
                assert session.refresh_token is not None
                refreshed = await client.refresh_session(session.refresh_token)
                assert refreshed.session_handle == session.session_handle
                assert await client.get_session(refreshed.access_token, check_database=True)
        assert server.process.returncode is None
        assert await server.stop() == 0


async def test_postgresql_stopped_and_started_again_under_a_running_server(
    throwaway_postgres: ThrowawayPostgres,
) -> None:
    @asynccontextmanager
    async def stopped() -> AsyncIterator[None]:
        await throwaway_postgres.stop()
        yield
        await throwaway_postgres.start()

    await serve_through_outage(throwaway_postgres, stopped)


async def test_frozen_postgresql_answers_unavailable_within_the_client_timeout(
    throwaway_postgres: ThrowawayPostgres,
) -> None:
    """A database that accepts connections but never answers (every one of its
    processes suspended, as behind a network partition): no server-side timeout
    can fire, so the authority's own timeouts must bound each RPC."""

    @asynccontextmanager
    async def frozen() -> AsyncIterator[None]:
        pids = throwaway_postgres.freeze()
        try:
            yield
        finally:
            throwaway_postgres.thaw(pids)

    await serve_through_outage(throwaway_postgres, frozen)


async def test_stuck_database_answers_unavailable_after_the_statement_timeout(
    postgres_url: str,
) -> None:
    """A row locked by someone else stalls a refresh inside PostgreSQL; the
    statement timeout ends the wait and the RPC answers, well within the client's
    timeout. Once the lock is gone the same token refreshes."""
    async with server_processes(server_settings(postgres_url)) as (server,):
        async with server.client(timeout=CLIENT_TIMEOUT_S) as client:
            session = await client.create_new_session("stuck")
            assert session.refresh_token is not None
            blocker = await asyncpg.connect(postgres_url)
            try:
                transaction = blocker.transaction()
                await transaction.start()
                await blocker.execute(
                    "SELECT 1 FROM sessions WHERE handle = $1 FOR UPDATE", session.session_handle
                )
                outcome, seconds = await timed(client.refresh_session(session.refresh_token))
                assert isinstance(outcome, StorageUnavailableError), repr(outcome)
                assert STATEMENT_TIMEOUT_S - 0.5 <= seconds < CLIENT_TIMEOUT_S
                assert server.process.returncode is None
                await transaction.rollback()
            finally:
                await blocker.close()
            refreshed = await client.refresh_session(session.refresh_token)
            assert refreshed.session_handle == session.session_handle
            assert await client.get_session(refreshed.access_token, check_database=True)
        assert await server.stop() == 0
