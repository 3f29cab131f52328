"""The unit layer: the recipe wired by assembly.assemble over the in-memory store,
on the manual clock (tests/conftest.py's ``clock``), telling a recording observer.
No server, socket or file; each test assembles its own authority."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from session_authority_server.assembly import Authority, assemble

from ..conftest import ManualClock
from .memory_store import MemoryStore
from .support import RecordingObserver, unit_settings

MakeAuthority = Callable[..., Awaitable[Authority]]


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def observer() -> RecordingObserver:
    return RecordingObserver()


@pytest.fixture
def make_authority(
    store: MemoryStore, clock: ManualClock, observer: RecordingObserver
) -> MakeAuthority:
    """make_authority(**settings) -> an Authority over this test's store and clock."""

    async def make(**overrides: Any) -> Authority:
        return await assemble(unit_settings(**overrides), store, clock, observer)

    return make


@pytest.fixture
async def authority(make_authority: MakeAuthority) -> Authority:
    return await make_authority()
