"""Reading a sink's tables back in tests, the same way on both databases."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from consumer.sinks.sql import CALL_COLUMNS, SqlSink


def query(sink: SqlSink, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of a read-only query through the sink's own connections (`?` placeholders)."""
    with sink._read() as cur:
        cur.execute(sink._sql(sql), params)
        return [tuple(row) for row in cur.fetchall()]


def count(sink: SqlSink, table: str) -> int:
    return int(query(sink, f"SELECT count(*) FROM {table}")[0][0])


def call_row(sink: SqlSink, provider: str, call_id: str) -> dict[str, Any] | None:
    """The `calls` row with times as UTC datetimes and refs as a dict, whatever the database."""
    columns = ", ".join(CALL_COLUMNS)
    rows = query(
        sink, f"SELECT {columns} FROM calls WHERE provider = ? AND call_id = ?", (provider, call_id)
    )
    if not rows:
        return None
    row = dict(zip(CALL_COLUMNS, rows[0], strict=True))
    for name, value in row.items():
        if value is not None and name.endswith("_at"):
            row[name] = value if isinstance(value, datetime) else sink._from_time(value)
    row["refs"] = sink._from_json(row["refs"])
    return row
