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


async def test_readme_quick_start_runs(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # The script verifies tokens with the real clock, so the server uses it too.
    server = await start_server(make_settings())
    (quick_start,) = [block for block in _python_blocks() if "create_new_session" in block]
    script = tmp_path / "quick_start.py"
    script.write_text(quick_start.replace("127.0.0.1:50051", f"127.0.0.1:{server.port}"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), stdout=asyncio.subprocess.PIPE
    )
    try:
        stdout, _ = await asyncio.wait_for(process.communicate(), 60)
    finally:
        await server.stop(None)
    assert process.returncode == 0
    lines = stdout.decode().splitlines()
    assert lines[0] == "verified user-42 admin"
    assert lines[1].startswith("theft detected, session revoked:")
    assert lines[2] == "revoked True"
