"""The `consumer` command line (interfaces.md §1).

Each subcommand is one `add_*` function that declares its parser and sets `handler`, a function
from the parsed arguments to the exit status; `COMMANDS` registers it with one line. A new command
(`run`, `dead-letters`, `demo`) may live in its own module and only add its line here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import yaml
from pydantic import SecretStr

from consumer import __version__
from consumer.archive.cli import add_recordings
from consumer.config.load import ConfigErrors, load_config
from consumer.config.model import Config
from consumer.errors import ConfigError, InvalidMessage
from consumer.formats import FORMAT_NAMES, get_format
from consumer.logs import effective_format
from consumer.pipeline.replay import add_dead_letters
from consumer.reconcile.cli import add_calls, add_reconcile
from consumer.runtime.cli import add_run
from consumer.runtime.demo import add_demo

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Handler = Callable[[argparse.Namespace], int]
MASK = "***"


def add_check(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "check",
        help="validate a configuration without connecting anywhere",
        description="Validate PATH and print every queue's resolved settings, secrets masked.",
    )
    parser.add_argument("-c", "--config", required=True, metavar="PATH", help="file or conf.d")
    parser.set_defaults(handler=check)


def report_config_error(exc: ConfigError) -> None:
    """`<file>: <key path>: <problem>` on stderr, one line per problem: for every command."""
    errors = exc.errors if isinstance(exc, ConfigErrors) else [exc]
    for error in errors:
        print(f"{error.location}: {error.problem}", file=sys.stderr)


def check(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        report_config_error(exc)
        return 1
    count = len(config.queues)
    print(f"# {args.config}: valid, {count} queue{'s' if count != 1 else ''}")
    print(yaml.safe_dump(masked(config), sort_keys=False, allow_unicode=True), end="")
    return 0


def masked(config: Config) -> dict[str, Any]:
    """The resolved configuration as plain data, every secret shown as `***`."""
    data: dict[str, Any] = _mask(config.model_dump(mode="python"))  # durations dump as "1s"
    data["sink"]["url"] = config.sink.redacted_url
    data["log"]["format"] = effective_format(config.log)  # not null: what `run` here would use
    data["sink"]["forward"] = [
        {kind: settings for kind, settings in entry.items() if settings is not None}
        for entry in data["sink"]["forward"]
    ]
    if data.get("recordings") is None:
        data.pop("recordings", None)  # an optional section left out stays out
    if data.get("reconcile") is None:
        data.pop("reconcile", None)  # optional section: shown only when configured
    for queue in data["queues"]:
        for section in ("mns", "rocketmq", "http"):
            if queue[section] is None:
                del queue[section]  # only the queue's own source section is meaningful
    return data


def _mask(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, dict):
        return {key: _mask(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_mask(item) for item in value]
    return value


def add_normalize(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "normalize",
        help="print the normalized events of one raw message body",
        description="Read one raw message body (FILE, or stdin) and print each normalized "
        "event as one JSON object per line.",
    )
    parser.add_argument(
        "--format",
        required=True,
        choices=FORMAT_NAMES,
        metavar="FORMAT",
        help=f"one of: {', '.join(FORMAT_NAMES)}",
    )
    parser.add_argument("file", nargs="?", default="-", metavar="FILE", help="default: stdin")
    parser.set_defaults(handler=normalize)


def normalize(args: argparse.Namespace) -> int:
    try:
        body = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        print(f"{args.file}: cannot read: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        fmt = get_format(args.format)
    except ImportError as exc:
        print(f"format {args.format} is not available: {exc}", file=sys.stderr)
        return 1
    try:
        normalized = fmt.parse(body)
    except InvalidMessage as exc:
        source = "stdin" if args.file == "-" else args.file
        print(f"{source}: not a valid {args.format} message: {exc}", file=sys.stderr)
        return 1
    for item in normalized:
        print(item.event.model_dump_json())
    return 0


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
    return handler(args)


__all__ = ["COMMANDS", "Subparsers", "build_parser", "main", "masked", "report_config_error"]
