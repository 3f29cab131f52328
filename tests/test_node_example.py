"""examples/node as a newcomer finds it: a README that says what to build first, and
tests that, without the Python authority to start, stop with one line saying so
(rather than four tests "cancelled" and the cause on line 50 of 64)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "node"


def test_the_readme_says_what_to_build_first() -> None:
    text = (NODE_EXAMPLE / "README.md").read_text()
    assert "make node-test" in text
    assert ".venv/bin/pip install -e '.[server]'" in text
    assert "SESSION_AUTHORITY_TEST_PYTHON" in text


@pytest.mark.skipif(shutil.which("npm") is None, reason="Node.js (npm) is not installed")
@pytest.mark.parametrize("python", ["/nonexistent/bin/python", "/bin/false"])
def test_without_the_authority_npm_test_fails_with_one_line(tmp_path: Path, python: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_AUTHORITY_")}
    env["SESSION_AUTHORITY_TEST_PYTHON"] = python
    completed = subprocess.run(
        ["npm", "test"],
        cwd=NODE_EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode != 0
    assert "cancelled" not in completed.stdout + completed.stderr
    lines = completed.stderr.splitlines()
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith(f"examples/node: {python} ")
    assert "make node-test" in lines[0]
