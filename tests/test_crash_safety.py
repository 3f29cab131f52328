"""Crash safety: SIGKILL a real server process in the middle of a create/refresh load
on a SQLite file, restart it on the same file, and check that nothing the client
was told about is lost.

Eight workers loop create -> refresh -> refresh through one client and record
every answer that reached them. Once a few hundred calls have completed the
process is killed (SIGKILL: no shutdown, no checkpoint, no chance to flush). Then:

- a copy of the database files as the crash left them passes PRAGMA
  integrity_check and already holds every session whose creation was answered;
- after a restart on the same file, every such session exists with its data, and
  the last refresh token the client received for it still refreshes: it is either
  the current token, or, if a later refresh was committed but its answer was lost
  in the crash, the previous one within the grace period (30 s), which yields the
  same successor; neither may look like theft;
- the restarted server serves new sessions, and after a graceful stop the file
  passes PRAGMA integrity_check.

Run with the default synchronous=FULL (durable across power loss) and with NORMAL
(durable across a process crash, which is all SIGKILL is).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import sqlite3
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from session_authority import AuthorityUnreachableError, SessionClient

from .processes import ServerProcess, start_server_process

WORKERS = 8
# Kill once this many calls have been answered: a few hundred, well into the load.
KILL_AFTER_CALLS = 300


@dataclass
class Record:
    """What the client was told about one session."""

    user_id: str
    data: dict[str, int]
    refresh_tokens: list[str] = field(default_factory=list)


@dataclass
class Load:
    records: dict[str, Record] = field(default_factory=dict)
    answered: int = 0
    killed: bool = False
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    # Calls that were sent but never answered: in flight when the process died.
    lost_calls: list[str] = field(default_factory=list)

    def count(self) -> None:
        self.answered += 1
        if self.answered >= KILL_AFTER_CALLS:
            self.reached.set()


async def worker(client: SessionClient, number: int, load: Load) -> None:
    """create -> refresh -> refresh, again and again, until the server dies."""
    for round_number in range(10**6):
        call = "create_new_session"
        try:
            user_id = f"load-{number}-{round_number}-{uuid.uuid4()}"
            data = {"worker": number, "round": round_number}
            created = await client.create_new_session(user_id, {"w": number}, data)
            assert created.refresh_token is not None
            record = Record(user_id, data, [created.refresh_token])
            load.records[created.session_handle] = record
            load.count()
            for _ in range(2):
                call = "refresh_session"
                refreshed = await client.refresh_session(record.refresh_tokens[-1])
                assert refreshed.session_handle == created.session_handle
                assert refreshed.refresh_token is not None
                record.refresh_tokens.append(refreshed.refresh_token)
                load.count()
        except AuthorityUnreachableError:
            if not load.killed:
                raise
            load.lost_calls.append(call)
            return


def integrity(path: Path) -> tuple[str, int]:
    """(PRAGMA integrity_check, number of session rows) of a database file."""
    db = sqlite3.connect(path)
    try:
        (result,) = db.execute("PRAGMA integrity_check").fetchone()
        (sessions,) = db.execute("SELECT count(*) FROM sessions").fetchone()
    finally:
        db.close()
    return result, sessions


def snapshot(database: Path, into: Path) -> Path:
    """Copy the database as the crash left it (main file, WAL, shared memory)."""
    into.mkdir()
    for suffix in ("", "-wal", "-shm"):
        source = database.with_name(database.name + suffix)
        if source.exists():
            shutil.copyfile(source, into / source.name)
    return into / database.name


async def run_load_and_kill(server: ServerProcess) -> Load:
    load = Load()
    async with server.client() as client:
        workers = [asyncio.create_task(worker(client, n, load)) for n in range(WORKERS)]
        try:
            async with asyncio.timeout(60):
                reached = asyncio.create_task(load.reached.wait())
                done, _ = await asyncio.wait(
                    [reached, *workers], return_when=asyncio.FIRST_COMPLETED
                )
                if reached not in done:  # a worker failed before the kill
                    reached.cancel()
                    for task in done:
                        task.result()
                # The next calls are only being sent now: let them reach the server, so
                # that the kill lands in the middle of its work, at no fixed point.
                await asyncio.sleep(random.uniform(0.005, 0.05))
                load.killed = True
                server.process.send_signal(signal.SIGKILL)
                # Wait for the exit here, before anything signals the process again:
                # a second kill would poll (and reap) it behind asyncio's back.
                returncode = await server.process.wait()
                await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            await server.kill()
    assert returncode == -signal.SIGKILL
    return load


@pytest.mark.parametrize("synchronous", [None, "NORMAL"], ids=["default-FULL", "NORMAL"])
async def test_sigkill_mid_load_loses_nothing_the_client_was_told(
    tmp_path: Path, synchronous: str | None
) -> None:
    database = tmp_path / "sessions.db"
    settings: Mapping[str, str] = {
        "database_url": f"sqlite:///{database}",
        "http_listen": "127.0.0.1:0",
        **({"sqlite_synchronous": synchronous} if synchronous else {}),
    }

    load = await run_load_and_kill(await start_server_process(settings))
    assert load.answered >= KILL_AFTER_CALLS
    assert len(load.records) >= KILL_AFTER_CALLS // 3
    assert any(len(record.refresh_tokens) == 3 for record in load.records.values())

    # The files as the crash left them: consistent, and every answered create is there.
    result, rows = integrity(snapshot(database, tmp_path / "after-kill"))
    assert result == "ok"
    assert rows >= len(load.records)

    # Restart on the same file (well within the 30 s refresh grace period).
    server = await start_server_process(settings)
    try:
        async with server.client() as client:
            lost = []
            for handle, record in load.records.items():
                info = await client.get_session_information(handle)
                if info is None:
                    lost.append(handle)
                    continue
                assert info.user_id == record.user_id
                assert info.session_data_in_database == record.data
            assert not lost, f"{len(lost)} of {len(load.records)} answered creates were lost"

            for handle, record in load.records.items():
                # Raises TokenTheftDetectedError or UnauthorisedError if a rotation
                # the client was told about was lost.
                refreshed = await client.refresh_session(record.refresh_tokens[-1])
                assert refreshed.session_handle == handle
                assert refreshed.refresh_token is not None
                verified = await client.get_session(refreshed.access_token, check_database=True)
                assert verified is not None and verified.user_id == record.user_id

            after = await client.create_new_session(f"after-restart-{uuid.uuid4()}")
            assert after.refresh_token is not None
            assert await client.refresh_session(after.refresh_token) is not None
        assert await server.stop() == 0
    finally:
        await server.kill()

    result, rows = integrity(database)
    assert result == "ok"
    assert rows >= len(load.records) + 1
