"""`consumer dead-letters list|replay`: look at quarantined messages, and push them through again.

The replay itself (what is stored, what is kept and why) is `consumer.pipeline.replay`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from consumer.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    add_actions,
    add_command,
    add_ids_argument,
    add_json_argument,
    migrated_sink,
    print_json_lines,
    shorten,
    text_table,
)
from consumer.config.load import load_config
from consumer.logs import configure_from
from consumer.model import rfc3339
from consumer.pipeline.replay import replay
from consumer.sinks.base import DeadLetterRow

if TYPE_CHECKING:
    from consumer.cli.common import Subparsers


def add_dead_letters(subparsers: Subparsers) -> None:
    actions = add_actions(
        subparsers,
        "dead-letters",
        "show quarantined messages, or push them through the pipeline again",
        "Quarantined messages (the dead_letters table) of the configured sink.",
    )
    listing = add_command(
        actions,
        "list",
        "show quarantined messages",
        "One line per quarantined message; --json prints every column, the raw "
        "payload as base64 (and as text when it is UTF-8).",
        list_command,
    )
    add_json_argument(listing)
    again = add_command(
        actions,
        "replay",
        "normalize and store quarantined messages again",
        "Normalize each quarantined message with its queue's format and store it. "
        "Messages that now store are removed; those that still fail are kept with the new error.",
        replay_command,
    )
    add_ids_argument(
        again, "dead letter", "replay only this dead letter (repeatable); default: all"
    )


def list_command(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    with migrated_sink(args.config, config.sink) as sink:
        rows = sink.dead_letters()
    if args.json:
        print_json_lines(row_json(row) for row in rows)
    else:
        print(format_table(rows))
    return EXIT_OK


def replay_command(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    configure_from(config)
    with migrated_sink(args.config, config.sink) as sink:
        report = replay(config, sink, args.ids)
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
