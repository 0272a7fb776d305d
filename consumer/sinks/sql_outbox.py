"""The outbox on the shared SQL: a row per new event and forwarder, written in the store
transaction, then claimed, read and forgotten by the forwarders (`forward.py`) under a lease."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from consumer.model import CallEvent
from consumer.sinks.sql_dialect import EVENT_COLUMNS, Cursor, SqlDialect, chunks


@dataclass(frozen=True, slots=True)
class Pending:
    """An outbox row with the event it stands for."""

    id: int
    event: CallEvent


class SqlOutbox(SqlDialect):
    """The `Outbox` protocol of `sinks/base.py`, and the rows `store` adds to it."""

    forwarders: tuple[str, ...]

    def _insert_outbox(self, cur: Cursor, new: Sequence[CallEvent], now: datetime) -> None:
        entries = [(name, event.event_id) for name in self.forwarders for event in new]
        created = self._time(now)
        for chunk in chunks(entries):
            sql = "INSERT INTO outbox (forwarder, event_id, created_at) VALUES " + ",".join(
                ["(?,?,?)"] * len(chunk)
            )
            cur.execute(self._sql(sql), [v for entry in chunk for v in (*entry, created)])

    def outbox_claim(self, forwarder: str, owner: str, now: float, lease: float) -> int | None:
        """Take the forwarder's lease if its backoff has passed; its failures so far, or None."""
        with self._write() as cur:
            cur.execute(
                self._sql(
                    "INSERT INTO forward_state (forwarder) VALUES (?) ON CONFLICT DO NOTHING"
                ),
                (forwarder,),
            )
            cur.execute(
                self._sql(
                    "UPDATE forward_state SET lease_owner = ?, lease_until = ?"
                    " WHERE forwarder = ? AND next_attempt_at <= ?"
                    " AND (lease_owner IS NULL OR lease_owner = ? OR lease_until < ?)"
                    " RETURNING failures"
                ),
                (owner, now + lease, forwarder, now, owner, now),
            )
            rows = cur.fetchall()
        return int(rows[0][0]) if rows else None

    def outbox_pending(self, forwarder: str, limit: int) -> list[Pending]:
        columns = ", ".join(f"e.{c}" for c in EVENT_COLUMNS)
        with self._read() as cur:
            cur.execute(
                self._sql(
                    f"SELECT o.id, {columns} FROM outbox o"
                    " JOIN call_events e ON e.event_id = o.event_id"
                    " WHERE o.forwarder = ? ORDER BY o.id LIMIT ?"
                ),
                (forwarder, limit),
            )
            rows = cur.fetchall()
        return [Pending(int(row[0]), self.event_from_row(row[1:])) for row in rows]

    def outbox_delivered(self, forwarder: str, owner: str, ids: Sequence[int]) -> None:
        """Forget delivered rows (by id: a row committed late with a lower id stays pending)."""
        with self._write() as cur:
            for chunk in chunks(sorted(ids)):
                marks = ",".join("?" * len(chunk))
                cur.execute(
                    self._sql(f"DELETE FROM outbox WHERE forwarder = ? AND id IN ({marks})"),
                    (forwarder, *chunk),
                )
            cur.execute(
                self._sql(
                    "UPDATE forward_state SET failures = 0, next_attempt_at = 0,"
                    " last_error = NULL, delivered = delivered + ?"
                    " WHERE forwarder = ? AND lease_owner = ?"
                ),
                (len(ids), forwarder, owner),
            )

    def outbox_failed(self, forwarder: str, owner: str, error: str, retry_at: float) -> None:
        with self._write() as cur:
            cur.execute(
                self._sql(
                    "UPDATE forward_state SET failures = failures + 1, next_attempt_at = ?,"
                    " last_error = ?, lease_owner = NULL, lease_until = 0"
                    " WHERE forwarder = ? AND lease_owner = ?"
                ),
                (retry_at, error[:2000], forwarder, owner),
            )

    def outbox_release(self, forwarder: str, owner: str) -> None:
        with self._write() as cur:
            cur.execute(
                self._sql(
                    "UPDATE forward_state SET lease_owner = NULL, lease_until = 0"
                    " WHERE forwarder = ? AND lease_owner = ?"
                ),
                (forwarder, owner),
            )

    def outbox_backlog(self) -> dict[str, int]:
        """Undelivered rows per forwarder (for metrics and readiness)."""
        with self._read() as cur:
            cur.execute(self._sql("SELECT forwarder, count(*) FROM outbox GROUP BY forwarder"))
            rows = cur.fetchall()
        return {str(row[0]): int(row[1]) for row in rows}


__all__ = ["Pending", "SqlOutbox"]
