"""The ``session-authority`` command: serve, migrate, purge-expired, settings."""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import sys
import textwrap
from pathlib import Path

from .app import serve
from .assembly import assemble
from .clock import SystemClock
from .config import (
    DESCRIPTIONS,
    FIELD_NAMES,
    ConfigError,
    Settings,
    env_name,
    load_settings,
    shown_default,
)
from .events import NoObserver
from .logs import configure_logging
from .startup_checks import open_database
from .storage import StorageUnavailable
from .workers import run_workers

DESCRIPTION = """\
The session authority: creates, verifies, refreshes and revokes user sessions
(the SuperTokens session recipe) for a fleet of services, over gRPC.

Settings come from their defaults, then a TOML file (--config FILE), then
SESSION_AUTHORITY_* environment variables; `session-authority settings` lists
every one. A bad setting stops the start with one line naming it (exit code 2)."""

SERVE_DESCRIPTION = """\
Serve the gRPC API on SESSION_AUTHORITY_LISTEN (127.0.0.1:50051) and the HTTP
side (JWKS, discovery, probes, metrics) on SESSION_AUTHORITY_HTTP_LISTEN
(127.0.0.1:3567) until SIGTERM or SIGINT; pending migrations are applied first.
Every setting, with its default: `session-authority settings`."""

SETTINGS_INTRO = """\
Every setting, as an environment variable or a key of the --config TOML file
(the environment wins). Durations are whole seconds."""


def _version() -> str:
    try:
        return importlib.metadata.version("session-authority")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "unknown"


def _add_config_option(parser: argparse.ArgumentParser, *, on_subcommand: bool) -> None:
    # Accepted before and after the command. On a command it has no default, so
    # that it never overwrites one given before the command.
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        default=argparse.SUPPRESS if on_subcommand else None,
        help="TOML settings file (its keys: `session-authority settings`)",
    )


def _parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="session-authority", description=DESCRIPTION, formatter_class=formatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    _add_config_option(parser, on_subcommand=False)
    commands = parser.add_subparsers(
        dest="command", required=True, title="commands", metavar="COMMAND"
    )

    def command(name: str, summary: str, description: str | None = None) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=summary,
            description=description or summary[:1].upper() + summary[1:] + ".",
            formatter_class=formatter,
        )
        if name != "settings":
            _add_config_option(sub, on_subcommand=True)
        return sub

    serve_parser = command("serve", "serve the gRPC API and the HTTP side", SERVE_DESCRIPTION)
    serve_parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="processes serving one port (default 1; or SESSION_AUTHORITY_WORKERS)",
    )
    serve_parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="text (default) or one JSON object a line (or SESSION_AUTHORITY_LOG_FORMAT)",
    )
    # Internal: set by the parent of --workers N on each child process.
    serve_parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    command("migrate", "apply pending database migrations and exit")
    command("purge-expired", "delete expired sessions and retired signing keys once")
    settings_parser = command(
        "settings", "list every setting: environment variable, TOML key, default"
    )
    settings_parser.add_argument(
        "--markdown", action="store_true", help="as the table in the README"
    )
    return parser


def settings_text() -> str:
    """What `session-authority settings` prints."""
    lines = [SETTINGS_INTRO, ""]
    for name in FIELD_NAMES:
        lines.append(f"{env_name(name)}  (TOML: {name})  default: {shown_default(name)}")
        lines.extend(
            textwrap.wrap(DESCRIPTIONS[name], 76, initial_indent="    ", subsequent_indent="    ")
        )
    return "\n".join(lines) + "\n"


def settings_markdown() -> str:
    """The README's table of settings: `session-authority settings --markdown`."""

    def code(text: str) -> str:
        return text if text in ("none", "derived") else f"`{text}`"

    lines = ["| variable | TOML key | default | |", "|---|---|---|---|"]
    for name in FIELD_NAMES:
        row = [code(env_name(name)), code(name), code(shown_default(name)), DESCRIPTIONS[name]]
        lines.append(f"| {' | '.join(row)} |")
    return "\n".join(lines) + "\n"


async def _migrate(settings: Settings) -> None:
    store, applied = await open_database(settings)
    await store.close()
    print(f"applied migrations: {', '.join(map(str, applied))}" if applied else "up to date")


async def _purge_expired(settings: Settings) -> None:
    store, _ = await open_database(settings)
    try:
        authority = await assemble(settings, store, SystemClock(), NoObserver())
        removed, keys = await authority.housekeeping.purge_expired()
    finally:
        await store.close()
    print(f"removed {removed} expired sessions and {keys} retired signing keys")


def _fail(message: str, code: int) -> int:
    print(f"session-authority: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "settings":
        print(settings_markdown() if args.markdown else settings_text(), end="")
        return 0
    overrides = {}
    if getattr(args, "workers", None) is not None:
        overrides["workers"] = args.workers
    if getattr(args, "log_format", None) is not None:
        overrides["log_format"] = args.log_format
    try:
        settings = load_settings(args.config, os.environ, **overrides)
    except ConfigError as error:
        return _fail(f"configuration error: {error}", 2)
    configure_logging(settings.log_level, settings.log_format)
    try:
        if args.command == "serve" and settings.workers > 1 and not args.worker:
            return run_workers(settings, argv if argv is not None else sys.argv[1:])
        if args.command == "serve":
            asyncio.run(serve(settings, reuse_port=args.worker))
        elif args.command == "migrate":
            asyncio.run(_migrate(settings))
        elif args.command == "purge-expired":
            asyncio.run(_purge_expired(settings))
    except ConfigError as error:
        return _fail(f"configuration error: {error}", 2)
    except StorageUnavailable as error:
        return _fail(f"{env_name('database_url')}: storage unavailable: {error}", 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
