"""What `consumer demo` prints at the end: the `calls` table of its database, the counts of
events and dead letters, and a legend saying what the rows are."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COLUMNS = (
    ("provider", "provider", 20),
    ("outcome", "outcome", 14),
    ("caller", "caller", 16),
    ("callee", "callee", 16),
    ("started_at", "started (UTC)", 19),
    ("duration_seconds", "talk s", 6),
    ("event_count", "events", 6),
    ("last_event_kind", "last event", 16),
    ("call_id", "call_id", 80),  # last, and wide enough: an id is shown whole
)
LEGEND = """\
One row per call: the call's id as its provider gives it, merged from all of its events in
whatever order they arrived ("events"). Aliyun VMS: status reports, the CDR, the recording and
two ASR sentences, from four MNS queues read with the Alicom token flow; Outbound Bot: five
events on a RocketMQ topic; Huawei Voice Call, Huawei Private Number and 7moor: status events
and a CDR pushed over HTTP. The numbers are fictitious and stored as sent (log lines mask them);
the broken 7moor body is kept in dead_letters with its raw bytes."""


def print_report(database: Path, out: Any) -> None:
    with contextlib.closing(sqlite3.connect(database)) as db:
        db.row_factory = sqlite3.Row
        calls = db.execute(
            f"SELECT {', '.join(column for column, _, _ in COLUMNS)} FROM calls "
            "ORDER BY provider, started_at, call_id"
        ).fetchall()
        events = db.execute(
            "SELECT provider, COUNT(*) AS n FROM call_events GROUP BY provider ORDER BY provider"
        ).fetchall()
        dead = db.execute(
            "SELECT queue, reason, COUNT(*) AS n FROM dead_letters GROUP BY queue, reason"
        ).fetchall()
    print(f"calls ({len(calls)} rows)", file=out)
    print(render_table([[row[column] for column, _, _ in COLUMNS] for row in calls]), file=out)
    per_provider = ", ".join(f"{row['provider']} {row['n']}" for row in events)
    print(f"\ncall_events: {sum(row['n'] for row in events)} ({per_provider})", file=out)
    quarantined = "; ".join(f"{row['queue']}: {row['reason']} x{row['n']}" for row in dead)
    print(f"dead_letters: {sum(row['n'] for row in dead)} ({quarantined or 'none'})", file=out)
    print(f"\n{LEGEND}", file=out)


def render_table(rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table: long values are cut with an ellipsis, times shown without zone."""
    cells = [
        [_cell(value, width) for value, (_, _, width) in zip(row, COLUMNS, strict=True)]
        for row in rows
    ]
    headers = [title for _, title, _ in COLUMNS]
    widths = [max([len(title), *(len(row[i]) for row in cells)]) for i, title in enumerate(headers)]
    lines = ["  ".join(title.ljust(widths[i]) for i, title in enumerate(headers)).rstrip()]
    lines.append("  ".join("-" * width for width in widths))
    for row in cells:
        lines.append("  ".join(value.ljust(widths[i]) for i, value in enumerate(row)).rstrip())
    return "\n".join(lines)


def _cell(value: object, width: int) -> str:
    if value is None:
        return "-"
    text = str(value)
    if len(text) >= 20 and text[4] == "-" and text[10] == "T":  # an RFC 3339 UTC time
        text = text[:19].replace("T", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


__all__ = ["COLUMNS", "print_report", "render_table"]
