"""The `consumer` command line (the command table in README.md).

Each subcommand is one `add_*` function that declares its parser and sets `handler`, a function
from the parsed arguments to the exit status; `COMMANDS` registers it with one line. Handlers let
a `ConfigError` or `Unreachable` propagate: `main` prints it and picks the exit status
(`consumer.cli.common`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from consumer import __version__
from consumer.cli.check import add_check, masked
from consumer.cli.common import (
    EXIT_FAILED,
    Handler,
    Subparsers,
    config_error_status,
    report_config_error,
)
from consumer.cli.dead_letters import add_dead_letters
from consumer.cli.normalize import add_normalize
from consumer.cli.reconcile import add_calls, add_reconcile
from consumer.cli.recordings import add_recordings
from consumer.cli.run import add_run
from consumer.errors import ConfigError
from consumer.preflight import Unreachable
from consumer.runtime.demo import add_demo

COMMANDS: list[Callable[[Subparsers], None]] = [
    add_check,
    add_normalize,
    add_dead_letters,
    add_run,
    add_demo,
    add_recordings,
    add_calls,
    add_reconcile,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="consumer",
        description="Call events from cloud telephony queues into one clean call-record store.",
    )
    parser.add_argument("--version", action="version", version=f"consumer {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit status is returned rather than raised (tests call this)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return handler(args)
    except ConfigError as exc:
        report_config_error(exc)
        return config_error_status(args)
    except Unreachable as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILED


__all__ = ["COMMANDS", "Subparsers", "build_parser", "main", "masked", "report_config_error"]
