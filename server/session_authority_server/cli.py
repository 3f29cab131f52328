"""``session-authority serve | migrate``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from .app import serve
from .config import ConfigError, Settings, load_settings
from .storage import StorageUnavailable, open_store


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="session-authority", description=__doc__)
    parser.add_argument("--config", type=Path, help="TOML settings file")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="serve the gRPC API")
    commands.add_parser("migrate", help="apply pending database migrations and exit")
    return parser


async def _migrate(settings: Settings) -> None:
    store = open_store(settings.database_url, synchronous=settings.sqlite_synchronous)
    applied = await store.open()
    await store.close()
    print(f"applied migrations: {', '.join(map(str, applied))}" if applied else "up to date")


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
    except ConfigError as error:
        print(f"session-authority: configuration error: {error}", file=sys.stderr)
        return 2
    except StorageUnavailable as error:
        print(f"session-authority: storage unavailable: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
