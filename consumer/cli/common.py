"""What every command shares: its parser's pieces, the configured sink opened and migrated, the
config-error printer and the exit-status policy.

The policy (the command-line contract in README.md): a handler returns 0 when it did its job and
1 when it did not (bad configuration, database unavailable, unknown id, a failed query). `run`
alone exits 78 (EX_CONFIG) for a configuration that cannot run, so that systemd's
`RestartPreventExitStatus=78` stops restarting it; it says so by `config_status=EXIT_CONFIG` in
its parser defaults. A handler lets `ConfigError` and `Unreachable` propagate: `main` prints
them here, once.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeAlias

from consumer.config.load import ConfigErrors
from consumer.config.model import SinkConfig
from consumer.errors import ConfigError, TransientError
from consumer.preflight import Unreachable, check_sink, sink_problem
from consumer.runtime.spec import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from consumer.sinks import open_sink
from consumer.sinks.sql import SqlSink

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Handler = Callable[[argparse.Namespace], int]


def report_config_error(exc: ConfigError) -> None:
    """`<file>: <key path>: <problem>` on stderr, one line per problem: for every command."""
    errors = exc.errors if isinstance(exc, ConfigErrors) else [exc]
    for error in errors:
        print(f"{error.location}: {error.problem}", file=sys.stderr)


def config_error_status(args: argparse.Namespace) -> int:
    """The exit status of a configuration error for the command `args` ran."""
    status: int = getattr(args, "config_status", EXIT_FAILED)
    return status


def add_command(
    subparsers: Subparsers,
    name: str,
    help_text: str,
    description: str | None,
    handler: Handler,
    *,
    config: bool = True,
) -> argparse.ArgumentParser:
    """A command's (or an action's) parser, with its `-c PATH` unless it reads no configuration,
    and its handler."""
    parser = subparsers.add_parser(name, help=help_text, description=description)
    if config:
        add_config_argument(parser)
    parser.set_defaults(handler=handler)
    return parser


def add_actions(subparsers: Subparsers, name: str, help_text: str, description: str) -> Subparsers:
    """A command made of actions (`consumer NAME ACTION ...`): the subparsers of its actions."""
    parser = subparsers.add_parser(name, help=help_text, description=description)
    return parser.add_subparsers(title="actions", metavar="ACTION", required=True)


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", required=True, metavar="PATH", help="file or conf.d")


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def add_ids_argument(parser: argparse.ArgumentParser, noun: str, help_text: str) -> None:
    """`--id ID` (repeatable) into `args.ids`: the rows of `noun` to act on."""
    parser.add_argument(
        "--id",
        dest="ids",
        type=positive_id(noun),
        action="append",
        default=[],
        metavar="ID",
        help=help_text,
    )


def positive_id(noun: str) -> Callable[[str], int]:
    """An argparse `type` for the ids of `noun` rows (they start at 1)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {noun} id (a number): {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{noun} ids start at 1: {text!r}")
        return value

    return parse


@contextmanager
def migrated_sink(config_path: str, sink: SinkConfig) -> Iterator[SqlSink]:
    """The configured sink, migrated, closed after use. A database that cannot be reached, or
    fails meanwhile, is `Unreachable`: one line naming the file, the sink and the cause."""
    check_sink(config_path, sink)
    opened = open_sink(sink)
    try:
        opened.migrate()
        yield opened
    except TransientError as exc:
        raise Unreachable(sink_problem(config_path, sink, exc)) from exc
    finally:
        opened.close()


def print_json_lines(items: Iterable[dict[str, Any]]) -> None:
    """`--json`: one object per line, non-ASCII text as it is."""
    for item in items:
        print(json.dumps(item, ensure_ascii=False))


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart, as `ps` prints them."""
    widths = [max(len(cells[i]) for cells in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
        for cells in [header, *rows]
    )


def shorten(text: str, width: int) -> str:
    """One line of at most `width` characters: whitespace runs folded, the rest cut with `…`."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' if count != 1 else ''}"


__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_OK",
    "Handler",
    "Subparsers",
    "add_actions",
    "add_command",
    "add_config_argument",
    "add_ids_argument",
    "add_json_argument",
    "config_error_status",
    "migrated_sink",
    "plural",
    "positive_id",
    "print_json_lines",
    "report_config_error",
    "shorten",
    "text_table",
]
