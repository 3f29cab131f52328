"""``session-authority serve | migrate | purge-expired``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from .app import serve
from .clock import SystemClock
from .config import ConfigError, Settings, load_settings
from .logs import configure_logging
from .sessions import SessionManager
from .storage import StorageUnavailable, open_store
from .workers import run_workers


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="session-authority", description=__doc__)
    parser.add_argument("--config", type=Path, help="TOML settings file")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="serve the gRPC API")
    serve_parser.add_argument(
        "--workers",
        type=int,
        help="processes serving one port (default 1; or SESSION_AUTHORITY_WORKERS)",
    )
    serve_parser.add_argument(
        "--log-format", choices=["text", "json"], help="text (default) or one JSON object a line"
    )
    # Internal: set by the parent of --workers N on each child process.
    serve_parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    commands.add_parser("migrate", help="apply pending database migrations and exit")
    commands.add_parser(
        "purge-expired", help="delete expired sessions and retired signing keys once"
    )
    return parser


async def _migrate(settings: Settings) -> None:
    store = open_store(settings.database_url, **settings.store_options())
    applied = await store.open()
    await store.close()
    print(f"applied migrations: {', '.join(map(str, applied))}" if applied else "up to date")


async def _purge_expired(settings: Settings) -> None:
    store = open_store(settings.database_url, **settings.store_options())
    await store.open()
    try:
        sessions = await SessionManager.start(settings, store, SystemClock())
        removed, keys = await sessions.purge_expired()
    finally:
        await store.close()
    print(f"removed {removed} expired sessions and {keys} retired signing keys")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {}
    if getattr(args, "workers", None) is not None:
        overrides["workers"] = args.workers
    if getattr(args, "log_format", None) is not None:
        overrides["log_format"] = args.log_format
    try:
        settings = load_settings(args.config, os.environ, **overrides)
    except ConfigError as error:
        print(f"session-authority: configuration error: {error}", file=sys.stderr)
        return 2
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
        print(f"session-authority: configuration error: {error}", file=sys.stderr)
        return 2
    except StorageUnavailable as error:
        print(f"session-authority: storage unavailable: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
