"""``serve --workers N``: N processes serving one port (SO_REUSEPORT), sharing the
database, so that every core does gRPC work. The parent applies migrations once,
starts the workers, forwards SIGTERM/SIGINT to them and waits; if a worker dies
on its own, the parent stops the others and exits non-zero so that the process
supervisor (systemd, Kubernetes) restarts the whole group."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import time
from types import FrameType

from .config import ConfigError, Settings, env_name
from .startup_checks import check_addresses, open_database

log = logging.getLogger(__name__)


async def _migrate(settings: Settings) -> None:
    store, _ = await open_database(settings)
    await store.close()


def run_workers(settings: Settings, argv: list[str]) -> int:
    if settings.listen.endswith(":0") or (settings.http_listen.endswith(":0")):
        raise ConfigError(
            f"{env_name('workers')}: several workers need fixed ports "
            f"({env_name('listen')}, {env_name('http_listen')})"
        )
    check_addresses(settings)  # once, so that a taken port is one line, not one per worker
    asyncio.run(_migrate(settings))
    command = [sys.executable, "-m", "session_authority_server", *argv, "--worker"]
    workers = [subprocess.Popen(command) for _ in range(settings.workers)]  # noqa: S603
    log.info("started %d workers on %s", len(workers), settings.listen)
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        codes = [worker.poll() for worker in workers]
        if all(code is not None for code in codes):
            return 0 if stopping and all(code == 0 for code in codes) else 1
        if not stopping and any(code is not None for code in codes):
            log.error("a worker exited unexpectedly; stopping the others")
            forward(signal.SIGTERM, None)
        time.sleep(0.2)
