"""The whole flow in one command (`make demo`): the session authority on a fresh
SQLite file, the orders service protected by SessionInterceptor, and the edge
script that logs in, calls, refreshes and revokes.

    python examples/demo/run.py

Ports are chosen by the system and read from each process's first lines.
Everything started here is stopped here, on success, failure or Ctrl-C; the
exit status is the edge script's (0 when every step behaved as expected).
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

HERE = Path(__file__).resolve().parent
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
EDGE_TIMEOUT_S = 120.0
# Short, so that the demo shows an access token expiring without a long wait.
# Token expiry is kept in whole seconds, so a validity of N s lasts between N-1 and N s.
ACCESS_TOKEN_VALIDITY_S = 3


def say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


class Child:
    """A process whose merged stdout/stderr is read by a thread (kept in ``log``),
    so that it never blocks on a full pipe."""

    def __init__(self, name: str, command: Sequence[str], env: dict[str, str]) -> None:
        self.name = name
        self.log: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        # The commands are this interpreter and this directory's scripts.
        self.process = subprocess.Popen(  # noqa: S603
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        self._reader = threading.Thread(target=self._read, name=f"{name}-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:  # the reader owns the pipe: closed at end of output
            for line in self.process.stdout:
                self.log.append(line)
                self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, pattern: str) -> re.Match[str]:
        """The first output line matching pattern (fails if the process exits first)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"{self.name} did not start within {START_TIMEOUT_S:.0f} s")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"{self.name} exited ({self.process.wait()}) before serving")
            match = re.search(pattern, line)
            if match:
                return match

    def stop(self) -> int:
        """SIGTERM, then SIGKILL if it lingers; the exit status, once its output has
        been read to the end (and its pipe closed)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
        status = self.process.wait()
        self._reader.join(STOP_TIMEOUT_S)
        return status


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks below


def main() -> int:
    signal.signal(signal.SIGTERM, _terminate)
    python = sys.executable
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_AUTHORITY_")}
    base_env["PYTHONUNBUFFERED"] = "1"
    children: list[Child] = []
    show_output = False  # the children's output, when something went wrong
    with tempfile.TemporaryDirectory(prefix="session-authority-demo-") as tmp:
        try:
            say(f"starting the session authority on a fresh SQLite file in {tmp}")
            authority = Child(
                "the session authority",
                [python, "-m", "session_authority_server", "serve"],
                {
                    **base_env,
                    "SESSION_AUTHORITY_DATABASE_URL": f"sqlite:///{tmp}/sessions.db",
                    "SESSION_AUTHORITY_LISTEN": "127.0.0.1:0",
                    "SESSION_AUTHORITY_HTTP_LISTEN": "127.0.0.1:0",
                    "SESSION_AUTHORITY_ACCESS_TOKEN_VALIDITY": str(ACCESS_TOKEN_VALIDITY_S),
                },
            )
            children.append(authority)
            authority_target = authority.wait_for(r"serving gRPC on ([\d.]+:\d+)").group(1)
            say(
                f"authority serving gRPC on {authority_target} "
                f"(access tokens valid for {ACCESS_TOKEN_VALIDITY_S} s)"
            )

            downstream = [python, str(HERE / "downstream.py"), "--listen", "127.0.0.1:0"]
            orders = Child(
                "the orders service", [*downstream, "--authority", authority_target], base_env
            )
            children.append(orders)
            orders_target = orders.wait_for(r"listening on ([\d.]+:\d+)").group(1)
            say(f"orders service on {orders_target}, protected by SessionInterceptor")
            say("running the edge script")

            edge_script = [python, str(HERE / "edge.py"), "--authority", authority_target]
            edge = subprocess.Popen(  # noqa: S603 (as above)
                [*edge_script, "--orders", orders_target],
                env=base_env,
                stdin=subprocess.DEVNULL,
            )
            try:
                status = edge.wait(EDGE_TIMEOUT_S)
            finally:
                if edge.poll() is None:
                    edge.kill()
                    edge.wait()
            show_output = status != 0
            return status
        except KeyboardInterrupt:
            say("interrupted")
            return 130
        except RuntimeError as error:
            say(f"failed: {error}")
            show_output = True
            return 1
        except subprocess.TimeoutExpired:
            say(f"failed: the edge script did not finish within {EDGE_TIMEOUT_S:.0f} s")
            show_output = True
            return 1
        finally:
            # Cleanup is bounded (SIGKILL after STOP_TIMEOUT_S): let no signal cut it short.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            say("stopping the orders service and the authority")
            for child in reversed(children):
                status = child.stop()
                if show_output:
                    say(f"{child.name} exited with {status}; its output:")
                    sys.stdout.write("".join(f"    {line}" for line in child.log))
                    sys.stdout.flush()
            say("stopped everything it started")


if __name__ == "__main__":
    sys.exit(main())
