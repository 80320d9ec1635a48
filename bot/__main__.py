"""Command line: python -m bot {run,migrate,doctor,bench}."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from bot.config import Config, ConfigError, load_config
from bot.ops import migrate

log = logging.getLogger("bot")


async def migrate_command(config: Config) -> int:
    created = await migrate.ensure_database(config.database)
    before, after = await migrate.upgrade(config.database)
    url = config.database.sqlalchemy_url.render_as_string(hide_password=True)
    print(f"database {url}{' (created)' if created else ''}")
    print(f"schema revision {before or 'empty'} -> {after} (head {migrate.head_revision()})")
    return 0


async def run_command(config: Config) -> int:
    """Serve Telegram (polling or webhook), or local mode without a token: bot/runtime/run.py."""
    from bot.runtime.run import run

    return await run(config)


async def doctor_command(config: Config) -> int:
    from bot.ops.doctor import doctor_command as doctor

    return await doctor(config)


COMMANDS = {"run": run_command, "migrate": migrate_command, "doctor": doctor_command}


def bench_command(argv: list[str]) -> int:
    """The benchmark parses its own options and runs its own (uvloop) event loop."""
    from bot.bench.cli import main as bench

    return bench(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        return bench_command(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__)
    parser.add_argument("command", choices=sorted([*COMMANDS, "bench"]))
    parser.add_argument(
        "--config", help="path to config.toml (default: ESCROW_CONFIG or ./config.toml)"
    )
    args = parser.parse_args(argv)
    if args.command == "bench":  # `python -m bot --config FILE bench`
        return bench_command(["--config", args.config] if args.config else [])
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # alembic narrates every step at INFO; the commands report what matters
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "run":  # logging from [observability], uvloop, signals
        from bot.runtime.run import main as run

        return run(config, Path(args.config) if args.config else None)
    return asyncio.run(COMMANDS[args.command](config))


if __name__ == "__main__":
    sys.exit(main())
