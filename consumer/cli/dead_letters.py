"""`consumer dead-letters list|replay`: look at quarantined messages, and push them through again.

The replay itself (what is stored, what is kept and why) is `consumer.pipeline.replay`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from consumer.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    add_actions,
    add_config_argument,
    add_ids_argument,
    add_json_argument,
    shorten,
    text_table,
)
from consumer.config.load import load_config
from consumer.config.model import Config
from consumer.errors import TransientError
from consumer.logs import configure_from
from consumer.model import rfc3339
from consumer.pipeline.replay import replay
from consumer.preflight import Unreachable, check_sink, sink_problem
from consumer.sinks import open_sink
from consumer.sinks.base import DeadLetterRow, Sink

if TYPE_CHECKING:
    from consumer.cli.common import Subparsers


def add_dead_letters(subparsers: Subparsers) -> None:
    actions = add_actions(
        subparsers,
        "dead-letters",
        "show quarantined messages, or push them through the pipeline again",
        "Quarantined messages (the dead_letters table) of the configured sink.",
    )
    listing = actions.add_parser(
        "list",
        help="show quarantined messages",
        description="One line per quarantined message; --json prints every column, the raw "
        "payload as base64 (and as text when it is UTF-8).",
    )
    add_config_argument(listing)
    add_json_argument(listing)
    listing.set_defaults(handler=list_command)
    again = actions.add_parser(
        "replay",
        help="normalize and store quarantined messages again",
        description="Normalize each quarantined message with its queue's format and store it. "
        "Messages that now store are removed; those that still fail are kept with the new error.",
    )
    add_config_argument(again)
    add_ids_argument(
        again, "dead letter", "replay only this dead letter (repeatable); default: all"
    )
    again.set_defaults(handler=replay_command)


def _open(args: argparse.Namespace) -> tuple[Config, Sink] | None:
    config = load_config(args.config)
    try:
        check_sink(args.config, config.sink)
    except Unreachable as exc:
        print(exc, file=sys.stderr)
        return None
    return config, open_sink(config.sink)


def list_command(args: argparse.Namespace) -> int:
    opened = _open(args)
    if opened is None:
        return EXIT_FAILED
    config, sink = opened
    try:
        sink.migrate()
        rows = sink.dead_letters()
    except TransientError as exc:
        print(sink_problem(args.config, config.sink, exc), file=sys.stderr)
        return EXIT_FAILED
    finally:
        sink.close()
    if args.json:
        for row in rows:
            print(json.dumps(row_json(row), ensure_ascii=False))
        return EXIT_OK
    print(format_table(rows))
    return EXIT_OK


def replay_command(args: argparse.Namespace) -> int:
    opened = _open(args)
    if opened is None:
        return EXIT_FAILED
    config, sink = opened
    configure_from(config)
    try:
        sink.migrate()
        report = replay(config, sink, args.ids)
    except TransientError as exc:
        print(sink_problem(args.config, config.sink, exc), file=sys.stderr)
        return EXIT_FAILED
    finally:
        sink.close()
    for row, result in report.stored:
        print(f"#{row.id} {row.queue} {row.message_id}: stored ({result.events} events), removed")
    for row, result in report.failing:
        print(f"#{row.id} {row.queue} {row.message_id}: still fails, kept: {result.error}")
    for row, why in report.kept:
        print(f"#{row.id} {row.queue} {row.message_id}: not replayed, kept: {why}")
    for missing in report.missing:
        print(f"#{missing}: no dead letter with this id", file=sys.stderr)
    print(
        f"replayed {len(report.stored) + len(report.failing) + len(report.kept)}: "
        f"{len(report.stored)} stored, {len(report.failing)} still failing, "
        f"{len(report.kept)} kept for later"
    )
    return EXIT_OK if report.ok else EXIT_FAILED


def row_json(row: DeadLetterRow) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": row.id,
        "queue": row.queue,
        "message_id": row.message_id,
        "reason": row.reason,
        "error": row.error,
        "attempts": row.attempts,
        "first_seen": rfc3339(row.first_seen),
        "last_seen": rfc3339(row.last_seen),
        "payload_base64": base64.b64encode(row.payload).decode("ascii"),
    }
    with contextlib.suppress(UnicodeDecodeError):
        data["payload_text"] = row.payload.decode("utf-8")
    return data


_COLUMNS = ("ID", "QUEUE", "REASON", "ATTEMPTS", "LAST_SEEN", "BYTES", "MESSAGE_ID", "ERROR")
_ERROR_WIDTH = 80


def format_table(rows: Sequence[DeadLetterRow]) -> str:
    if not rows:
        return "no dead letters"
    lines = [
        (
            str(row.id),
            row.queue,
            row.reason,
            str(row.attempts),
            rfc3339(row.last_seen),
            str(len(row.payload)),
            row.message_id,
            shorten(row.error, _ERROR_WIDTH),
        )
        for row in rows
    ]
    return text_table(_COLUMNS, lines)


__all__ = ["add_dead_letters", "format_table", "row_json"]
