"""`consumer dead-letters list|replay`: look at quarantined messages, and push them through again.

Replay re-parses each dead letter's raw bytes with its queue's format (normally after a fix to a
format module or to the data) and stores the result exactly as the pipeline would. What now
stores is removed from `dead_letters`; what still fails stays, with the new reason and error
(the sink upserts the letter on queue and message id). A replay repeated after a crash is
harmless: the events are idempotent and the letter is removed the next time.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeAlias

from consumer.config.load import load_config
from consumer.config.model import Config
from consumer.errors import ConfigError, TransientError
from consumer.formats import get_format
from consumer.logs import configure_from
from consumer.model import rfc3339
from consumer.pipeline.normalize import Unit, prepare
from consumer.pipeline.results import Disposition, Result
from consumer.pipeline.store import Committer
from consumer.preflight import Unreachable, check_sink, sink_problem
from consumer.sinks import open_sink
from consumer.sinks.base import DeadLetterRow, Sink
from consumer.sources.base import Message

if TYPE_CHECKING:
    Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


@dataclass
class ReplayReport:
    stored: list[tuple[DeadLetterRow, Result]] = field(default_factory=list)
    failing: list[tuple[DeadLetterRow, Result]] = field(default_factory=list)
    """Still permanent failures: kept, with the new reason and error."""
    kept: list[tuple[DeadLetterRow, str]] = field(default_factory=list)
    """Not tried or not committed (queue gone, database unavailable): kept unchanged."""
    missing: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.kept and not self.missing


def replay(config: Config, sink: Sink, ids: Sequence[int] = ()) -> ReplayReport:
    """Replay the dead letters with these ids (all when empty), one queue at a time."""
    report = ReplayReport()
    rows = sink.dead_letters(ids)
    report.missing = sorted(set(ids) - {row.id for row in rows})
    by_queue: dict[str, list[DeadLetterRow]] = {}
    for row in rows:
        by_queue.setdefault(row.queue, []).append(row)
    configured = {queue.name: queue for queue in config.queues}
    for name, letters in by_queue.items():
        queue = configured.get(name)
        if queue is None:
            reason = f"queue {name!r} is not in the configuration; its format is unknown"
            report.kept.extend((row, reason) for row in letters)
            continue
        fmt = get_format(queue.format)
        now = datetime.now(UTC)
        units: list[Unit] = [
            prepare(
                Message(row.message_id, row.payload, row.attempts + 1),
                queue=name,
                fmt=fmt,
                max_deliveries=None,
                received_at=now,
            )
            for row in letters
        ]
        results = Committer(sink, queue.retry, name).commit(units)
        done: list[int] = []
        for row, result in zip(letters, results, strict=True):
            if result.disposition is Disposition.STORED:
                report.stored.append((row, result))
                done.append(row.id)
            elif result.disposition is Disposition.DEAD_LETTERED:
                report.failing.append((row, result))
            else:
                report.kept.append((row, result.error or "transient failure"))
        if done:
            sink.discard_dead_letters(done)
    return report


# -- command line ----------------------------------------------------------------------------


def add_dead_letters(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "dead-letters",
        help="show quarantined messages, or push them through the pipeline again",
        description="Quarantined messages (the dead_letters table) of the configured sink.",
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list",
        help="show quarantined messages",
        description="One line per quarantined message; --json prints every column, the raw "
        "payload as base64 (and as text when it is UTF-8).",
    )
    listing.add_argument("-c", "--config", required=True, metavar="PATH", help="file or conf.d")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(handler=list_command)
    again = actions.add_parser(
        "replay",
        help="normalize and store quarantined messages again",
        description="Normalize each quarantined message with its queue's format and store it. "
        "Messages that now store are removed; those that still fail are kept with the new error.",
    )
    again.add_argument("-c", "--config", required=True, metavar="PATH", help="file or conf.d")
    again.add_argument(
        "--id",
        dest="ids",
        type=_positive_id,
        action="append",
        default=[],
        metavar="ID",
        help="replay only this dead letter (repeatable); default: all",
    )
    again.set_defaults(handler=replay_command)


def _positive_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a dead letter id (a number): {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"dead letter ids start at 1: {text!r}")
    return value


def _open(args: argparse.Namespace) -> tuple[Config, Sink] | None:
    try:
        config = load_config(args.config)
        check_sink(args.config, config.sink)
        sink = open_sink(config.sink)
    except ConfigError as exc:
        for error in getattr(exc, "errors", [exc]):
            print(f"{error.location}: {error.problem}", file=sys.stderr)
        return None
    except Unreachable as exc:
        print(exc, file=sys.stderr)
        return None
    return config, sink


def list_command(args: argparse.Namespace) -> int:
    opened = _open(args)
    if opened is None:
        return 1
    config, sink = opened
    try:
        sink.migrate()
        rows = sink.dead_letters()
    except TransientError as exc:
        print(sink_problem(args.config, config.sink, exc), file=sys.stderr)
        return 1
    finally:
        sink.close()
    if args.json:
        for row in rows:
            print(json.dumps(row_json(row), ensure_ascii=False))
        return 0
    print(format_table(rows))
    return 0


def replay_command(args: argparse.Namespace) -> int:
    opened = _open(args)
    if opened is None:
        return 1
    config, sink = opened
    configure_from(config)
    try:
        sink.migrate()
        report = replay(config, sink, args.ids)
    except TransientError as exc:
        print(sink_problem(args.config, config.sink, exc), file=sys.stderr)
        return 1
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
    return 0 if report.ok else 1


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
            _shorten(row.error),
        )
        for row in rows
    ]
    widths = [max(len(cells[i]) for cells in [_COLUMNS, *lines]) for i in range(len(_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
        for cells in [_COLUMNS, *lines]
    )


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _ERROR_WIDTH else text[: _ERROR_WIDTH - 1] + "…"


__all__ = ["ReplayReport", "add_dead_letters", "format_table", "replay", "row_json"]
