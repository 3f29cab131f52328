"""`make demo` as a new user runs it: examples/demo/run.py starts the authority, the
orders service and the edge script, every step behaves, and nothing is left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

RUN = Path(__file__).resolve().parent.parent / "examples" / "demo" / "run.py"
TIMEOUT_S = 60


def run_demo() -> tuple[int, str, str]:
    """Run the demo in its own process group; on a timeout, SIGTERM lets run.py stop
    what it started, and the group is killed if that does not end it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_AUTHORITY_")}
    process = subprocess.Popen(
        [sys.executable, str(RUN)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            stdout, stderr = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
        raise AssertionError(f"the demo took over {TIMEOUT_S} s:\n{stdout}{stderr}") from None
    return process.returncode, stdout, stderr


def test_demo_runs_every_step_and_stops_everything() -> None:
    status, output, errors = run_demo()
    assert status == 0, output + errors
    lines = [line.strip() for line in output.splitlines()]

    def line_with(*parts: str) -> int:
        """The index of the first line containing every part (failing if none does)."""
        for index, line in enumerate(lines):
            if all(part in line for part in parts):
                return index
        raise AssertionError(f"no line with {parts!r} in:\n{output}")

    steps = [
        line_with("[demo] authority serving gRPC on 127.0.0.1:"),
        line_with("[demo] orders service on 127.0.0.1:", "SessionInterceptor"),
        line_with("[edge]", "alice logs in"),
        line_with("-> ok: ['tea', 'coffee', 'scones']"),  # public, no token
        line_with("-> refused: UNAUTHENTICATED UNAUTHORISED"),  # no token
        line_with("-> ok: the orders service saw user alice"),
        line_with("-> refused: PERMISSION_DENIED INVALID_CLAIMS: st-role", "'admin'"),
        line_with("-> ok: refunded orders [1, 2] by alice"),  # after the claim changed
        line_with("-> refused: UNAUTHENTICATED TRY_REFRESH_TOKEN"),
        line_with("refreshed: new access and refresh tokens"),
        line_with("-> retried: ok, user alice"),
        line_with("-> refused: UNAUTHENTICATED UNAUTHORISED: the session has been revoked"),
        line_with("revocation reached the orders service by its stream"),
        line_with("-> refused: UNAUTHORISED: log in again"),
        line_with("[edge] demo finished"),
        line_with("[demo] stopped everything it started"),
    ]
    assert steps == sorted(steps), output
    assert "FAILED" not in output
    assert "Traceback" not in output + errors
