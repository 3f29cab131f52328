"""``session-authority serve | migrate | purge-expired``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from .app import serve
from .clock import SystemClock
from .config import ConfigError, Settings, load_settings
from .sessions import SessionManager
from .storage import StorageUnavailable, open_store


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="session-authority", description=__doc__)
    parser.add_argument("--config", type=Path, help="TOML settings file")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="serve the gRPC API")
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
    try:
        settings = load_settings(args.config, os.environ)
    except ConfigError as error:
        print(f"session-authority: configuration error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "serve":
            asyncio.run(serve(settings))
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
