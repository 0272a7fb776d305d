"""`consumer recordings list|retry`: the archive's rows, and putting final failures back in line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from consumer.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    add_actions,
    add_command,
    add_ids_argument,
    add_json_argument,
    migrated_sink,
    plural,
    print_json_lines,
    shorten,
    text_table,
)
from consumer.config.load import load_config
from consumer.sinks.recordings import STATUSES, Recording, RecordingTable

if TYPE_CHECKING:
    from consumer.cli.common import Subparsers

_COLUMNS = ("ID", "PROVIDER", "CALL_ID", "STATUS", "ATTEMPTS", "BYTES", "ARCHIVE/ERROR", "SOURCE")
_WIDTH = 60


def add_recordings(subparsers: Subparsers) -> None:
    actions = add_actions(
        subparsers,
        "recordings",
        "show the recording archive, or retry failed recordings",
        "The rows of the recording archive (the recordings table).",
    )
    listing = add_command(actions, "list", "show the archive's rows", None, list_command)
    listing.add_argument("--status", choices=STATUSES, help="only rows with this status")
    add_json_argument(listing)
    again = add_command(
        actions,
        "retry",
        "put failed, expired or refused recordings back in line",
        "Set failed, expired and refused recordings (all, or the named ones) back "
        "to pending with a fresh retry budget; a running daemon picks them up.",
        retry_command,
    )
    add_ids_argument(
        again,
        "recording",
        "retry only this recording (repeatable); default: every failed, expired, refused",
    )


def list_command(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    with migrated_sink(args.config, config.sink) as sink:
        rows = RecordingTable(sink).rows(args.status)
    if args.json:
        print_json_lines(row.as_json() for row in rows)
    else:
        print(format_table(rows))
    return EXIT_OK


def retry_command(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    ids = sorted(set(args.ids))
    with migrated_sink(args.config, config.sink) as sink:
        table = RecordingTable(sink)
        known = {row.id: row for row in table.rows(ids=ids)} if ids else {}
        moved = table.retry(ids)
    for row_id in moved:
        print(f"#{row_id}: back in line")
    unknown = [row_id for row_id in args.ids if row_id not in known]
    for row_id in sorted(set(args.ids) - set(moved) - set(unknown)):
        print(f"#{row_id}: not retried, it is {known[row_id].status}")
    for row_id in unknown:
        print(f"#{row_id}: no recording with this id", file=sys.stderr)
    print(f"{plural(len(moved), 'recording')} back in line")
    return EXIT_FAILED if unknown else EXIT_OK


def format_table(rows: Sequence[Recording]) -> str:
    if not rows:
        return "no recordings"
    lines = [
        (
            str(row.id),
            row.provider,
            row.call_id or "-",
            row.status,
            str(row.attempts),
            "-" if row.bytes is None else str(row.bytes),
            shorten(row.archive_uri or row.last_error or "-", _WIDTH),
            shorten(row.source.split("?", 1)[0], _WIDTH),
        )
        for row in rows
    ]
    return text_table(_COLUMNS, lines)


__all__ = ["add_recordings", "format_table"]
