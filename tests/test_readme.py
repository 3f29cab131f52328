"""The README as a new user reads it: every code block is a whole program that runs
as written (against a real server), or a marked excerpt of a file in examples/
that runs as written, or shell commands that exist; every command line it shows
parses; its table of settings is what `session-authority settings` prints."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from session_authority_server.app import start_server
from session_authority_server.cli import _parser, settings_markdown
from session_authority_server.config import FIELD_NAMES, Settings, env_name

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
MAKEFILE = REPO / "Makefile"

# An excerpt's first line names its file; "# ..." lines separate its parts, each of
# which must appear in the file as it is, in order.
EXCERPT = re.compile(r"# Excerpt of (examples/\S+)\n")
ELISION = "# ...\n"
# Every file an excerpt may come from, and the test here that runs it as written.
EXAMPLES_RUN_HERE = {
    "examples/grpc_service/orders.py": "test_the_grpc_service_example_runs_as_written",
}


@dataclass(frozen=True)
class Block:
    language: str
    text: str
    heading: str  # the section it is in

    @property
    def excerpt_of(self) -> str | None:
        match = EXCERPT.match(self.text)
        return match.group(1) if match else None


def readme_blocks() -> list[Block]:
    text = README.read_text()
    blocks = []
    fence = re.compile(r"^( *)```(\w*)\n(.*?)^\1```$", flags=re.MULTILINE | re.DOTALL)
    for match in fence.finditer(text):
        indent, language, body = match.groups()
        lines = body.splitlines(keepends=True)
        body = "".join(line.removeprefix(indent) for line in lines)
        headings = re.findall(r"^## (.+)$", text[: match.start()], flags=re.MULTILINE)
        blocks.append(Block(language, body, headings[-1] if headings else ""))
    return blocks


def test_every_code_block_is_a_program_an_excerpt_or_commands() -> None:
    blocks = readme_blocks()
    assert blocks
    for block in blocks:
        assert block.language in ("python", "sh"), block
        if block.language == "sh":
            for line in block.text.splitlines():
                check_shell_line(line.split("#")[0].strip())
        elif block.excerpt_of is not None:
            assert block.excerpt_of in EXAMPLES_RUN_HERE, block.excerpt_of
            source = (REPO / block.excerpt_of).read_text()
            position = 0
            for part in EXCERPT.sub("", block.text, count=1).split(ELISION):
                part = part.strip("\n") + "\n"  # the formatter's blank lines around "# ..."
                found = source.find(part, position)
                assert found >= 0, f"not in {block.excerpt_of} as it is:\n{part}"
                position = found + len(part)
        else:
            assert block.heading in WHOLE_PROGRAMS, f"a python block in {block.heading!r}"
            assert "asyncio.run(main())" in block.text


def check_shell_line(line: str) -> None:
    """A shell line in the README: a make target that exists, an export of a setting,
    or a session-authority command that parses."""
    if not line:
        return
    if line.startswith("make "):
        check_make_target(line.split()[1])
    elif line.startswith("export "):
        name = line.removeprefix("export ").split("=")[0]
        assert name in [env_name(field) for field in FIELD_NAMES], line
    elif line.startswith((".venv/bin/session-authority ", "session-authority ")):
        check_command(line)
    elif line.startswith("curl "):
        pass  # the Connect example: tests/test_connect.py runs it as written
    elif line.startswith(PROTOC_BLOCK_PREFIXES):
        pass  # the protoc example: tests/test_protos.py runs it as written
    else:
        pytest.fail(f"a shell line this test does not know how to check: {line}")


# The lines of the README's protoc example, which tests/test_protos.py runs.
PROTOC_BLOCK_PREFIXES = (
    "pip install googleapis-common-protos",
    "GOOGLEAPIS=",
    "mkdir -p gen",
    "protoc ",
)


def check_make_target(target: str) -> None:
    assert re.search(rf"^{re.escape(target)}:", MAKEFILE.read_text(), flags=re.MULTILINE), target


def check_command(line: str) -> None:
    """The CLI's own parser accepts the command line (help and version included)."""
    arguments = line.split()[1:]
    errors = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(errors):
            _parser().parse_args(arguments)
    except SystemExit as exit:
        assert exit.code == 0, f"{line}: {errors.getvalue()}"


def test_every_command_in_the_readme_parses_and_spells_config_one_way() -> None:
    text = README.read_text()
    commands = re.findall(r"`((?:\.venv/bin/)?session-authority(?: [^`]*)?)`", text)
    assert "session-authority serve --config file.toml" in commands
    for command in commands:
        if command.split()[1:]:
            check_command(command)
    assert not re.search(r"session-authority --config", text)  # one spelling: after the command
    for target in re.findall(r"`make ([\w-]+)", text):
        check_make_target(target)


def test_the_settings_table_is_what_the_cli_prints() -> None:
    assert settings_markdown() in README.read_text()
    assert len(FIELD_NAMES) == len(Settings.__dataclass_fields__)


# --- the programs, run as written against a real server -----------------------------------


def check_quick_start(lines: list[str]) -> None:
    assert lines[0] == "verified user-42 admin"
    assert lines[1].startswith("theft detected, session revoked:")
    assert lines[2] == "revoked True"


def check_claims(lines: list[str]) -> None:
    assert lines == ["admin access for user-42", "refused: st-role wrong value"]


WHOLE_PROGRAMS: dict[str, Callable[[list[str]], None]] = {
    "Quick start with the Python client": check_quick_start,
    "Claims": check_claims,
}


async def run_python(arguments: list[str]) -> list[str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode().splitlines()


async def test_the_whole_programs_run_as_written(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    programs = [b for b in readme_blocks() if b.language == "python" and b.excerpt_of is None]
    assert sorted(b.heading for b in programs) == sorted(WHOLE_PROGRAMS)
    # The scripts verify tokens with the real clock, so the server uses it too.
    server = await start_server(make_settings())
    try:
        for block in programs:
            script = tmp_path / "example.py"
            script.write_text(block.text.replace("127.0.0.1:50051", f"127.0.0.1:{server.port}"))
            WHOLE_PROGRAMS[block.heading](await run_python([str(script)]))
    finally:
        await server.stop(None)


async def test_the_grpc_service_example_runs_as_written(
    make_settings: Callable[..., Settings],
) -> None:
    server = await start_server(make_settings())
    try:
        lines = await run_python(["examples/grpc_service/orders.py", f"127.0.0.1:{server.port}"])
    finally:
        await server.stop(None)
    assert lines == [
        "Menu: {'menu': ['tea', 'coffee', 'scones']}",
        "List: {'user': 'user-42', 'orders': ['tea', 'scones']}",
        "List without a session: UNAUTHENTICATED",
    ]
