"""Server processes under measurement: the product (`session-authority serve`, one
process or `--workers N`) and the ceiling (bench/ceiling.py), each started as an
operator would, from the environment, on an ephemeral port read from its log.
Their CPU time and memory are read with psutil, over the whole process tree."""

from __future__ import annotations

import collections
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import psutil

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
_SERVING = re.compile(r"serving gRPC on [\w.\[\]:]+:(\d+)")
# The product's line once the HTTP listener also carries SessionService (Connect).
_SERVING_CONNECT = re.compile(
    r"serving SessionService over Connect and gRPC-Web at https?://[\w.\[\]:]+:(\d+)/"
)


@dataclass(frozen=True, slots=True)
class CpuSample:
    """CPU seconds (user + system) of a process tree: all threads, and the main
    threads alone (where the event loop, and so the GIL-bound work, runs)."""

    total_s: float
    main_threads_s: float

    def __sub__(self, other: CpuSample) -> CpuSample:
        return CpuSample(self.total_s - other.total_s, self.main_threads_s - other.main_threads_s)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_env(settings: dict[str, str]) -> dict[str, str]:
    """This environment without SESSION_AUTHORITY_* variables, then the settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_AUTHORITY_")}
    env.update({f"SESSION_AUTHORITY_{k.upper()}": v for k, v in settings.items()})
    return env


class ServerProcess:
    """A running server; its stderr is drained by a thread (the last lines are
    kept for error messages), so a chatty server never blocks on a full pipe."""

    def __init__(self, label: str, command: list[str], env: dict[str, str], serving: int = 1):
        self.label = label
        self.port = 0
        self._http_port = 0
        self.log: collections.deque[str] = collections.deque(maxlen=200)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._popen = subprocess.Popen(
            command,
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self._popen.stderr is not None
        self._drain = threading.Thread(target=self._read, args=(self._popen.stderr,), daemon=True)
        self._drain.start()
        try:
            self._wait_serving(serving)
        except BaseException:
            self.stop()
            raise
        self._process = psutil.Process(self._popen.pid)

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.log.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def _wait_for(self, pattern: re.Pattern[str], count: int) -> list[int]:
        """The ports of the next count log lines matching pattern (lines before
        them are consumed; the log keeps them)."""
        ports = []
        while len(ports) < count:
            try:
                line = self._lines.get(timeout=START_TIMEOUT_S)
            except queue.Empty:
                raise RuntimeError(f"{self.label}: not serving after {START_TIMEOUT_S} s") from None
            if line is None:
                raise RuntimeError(f"{self.label} exited before serving:\n{self.log_text()}")
            match = pattern.search(line)
            if match:
                ports.append(int(match.group(1)))
        return ports

    def _wait_serving(self, count: int) -> None:
        self.port = self._wait_for(_SERVING, count)[0]

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http_target(self) -> str:
        """Where SessionService is served over Connect (the HTTP listener); read
        from the log the first time (the line follows the gRPC one)."""
        if not self._http_port:
            self._http_port = self._wait_for(_SERVING_CONNECT, 1)[0]
        return f"127.0.0.1:{self._http_port}"

    def log_text(self) -> str:
        return "".join(self.log)

    def _tree(self) -> list[psutil.Process]:
        return [self._process, *self._process.children(recursive=True)]

    def cpu(self) -> CpuSample:
        total = main = 0.0
        for process in self._tree():
            try:
                times = process.cpu_times()
                total += times.user + times.system
                for thread in process.threads():
                    if thread.id == process.pid:
                        main += thread.user_time + thread.system_time
            except psutil.NoSuchProcess:
                continue
        return CpuSample(total, main)

    def rss(self) -> int:
        """Resident memory of the serving processes (bytes)."""
        total = 0
        for process in self._tree():
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total

    def check_alive(self) -> None:
        if self._popen.poll() is not None:
            raise RuntimeError(
                f"{self.label} exited ({self._popen.returncode}):\n{self.log_text()}"
            )

    def stop(self) -> None:
        if self._popen.poll() is None:
            self._popen.send_signal(signal.SIGTERM)
            try:
                self._popen.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
        self._drain.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_product(
    label: str,
    database_url: str,
    *,
    algorithm: str = "RS256",
    workers: int = 1,
    sqlite_synchronous: str = "FULL",
) -> ServerProcess:
    """`session-authority serve` with default settings but these; no API key, so
    loopback callers are served, as with `make run`."""
    settings = {
        "database_url": database_url,
        "signing_algorithm": algorithm,
        "sqlite_synchronous": sqlite_synchronous,
        "listen": "127.0.0.1:0",
        "http_listen": "127.0.0.1:0",
    }
    command = [sys.executable, "-m", "session_authority_server", "serve"]
    if workers > 1:  # several workers need fixed ports
        settings["listen"] = f"127.0.0.1:{free_port()}"
        settings["http_listen"] = f"127.0.0.1:{free_port()}"
        command += ["--workers", str(workers)]
    return ServerProcess(label, command, server_env(settings), serving=workers)


def start_ceiling(label: str, database_url: str, responses: dict[str, bytes]) -> ServerProcess:
    """The product's server built by the product's code, every SessionService
    method answered at once with a canned response (see bench/ceiling.py)."""
    canned = Path(database_url.removeprefix("sqlite:///")).with_suffix(".responses.json")
    canned.write_text(json.dumps({method: body.hex() for method, body in responses.items()}))
    settings = {
        "database_url": database_url,
        "listen": "127.0.0.1:0",
        "http_listen": "127.0.0.1:0",
    }
    command = [sys.executable, "-m", "bench.ceiling", str(canned)]
    return ServerProcess(label, command, server_env(settings))
