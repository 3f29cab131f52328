"""The README's quick start runs as written against a real server."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Callable
from pathlib import Path

from session_authority_server.app import start_server
from session_authority_server.config import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


async def _run_block(block: str, port: int, tmp_path: Path) -> list[str]:
    script = tmp_path / "example.py"
    script.write_text(block.replace("127.0.0.1:50051", f"127.0.0.1:{port}"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), stdout=asyncio.subprocess.PIPE
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    return stdout.decode().splitlines()


async def test_readme_examples_run_as_written(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # The scripts verify tokens with the real clock, so the server uses it too.
    server = await start_server(make_settings())
    try:
        quick_start, claims = [b for b in _python_blocks() if "create_new_session" in b]
        lines = await _run_block(quick_start, server.port, tmp_path)
        assert lines[0] == "verified user-42 admin"
        assert lines[1].startswith("theft detected, session revoked:")
        assert lines[2] == "revoked True"

        lines = await _run_block(claims, server.port, tmp_path)
        assert lines == ["admin access for user-42", "refused: st-role wrong value"]
    finally:
        await server.stop(None)
