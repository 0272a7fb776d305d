"""The `recordings` table: outbox rows of the recording archive, and the archiver's leases.

`insert_recordings` runs inside the sink's `store` transaction (one row per recording, however
often it is named: `source_key` is unique). `RecordingTable` is what the archiver and the
`consumer recordings` commands use: each row is leased by one archiver at a time, the way the
forwarders lease their outbox, with its backoff kept in the row so every daemon honours it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from consumer.archive.extract import recordings

if TYPE_CHECKING:
    from consumer.model import CallEvent
    from consumer.sinks.sql import Cursor, SqlSink

STATUSES = ("pending", "archived", "failed", "expired", "refused")
RETRYABLE = ("failed", "expired", "refused")
_ERROR_CHARS = 2000
_UNLEASED = "lease_owner = NULL, lease_until = 0"
_COLUMNS = (
    "id",
    "provider",
    "call_id",
    "source",
    "status",
    "attempts",
    "archive_uri",
    "sha256",
    "bytes",
    "content_type",
    "first_seen",
    "archived_at",
    "last_error",
    "last_http_status",
    "next_attempt_at",
)


def insert_recordings(sink: SqlSink, cur: Cursor, new: Sequence[CallEvent], now: datetime) -> None:
    """A pending row for each recording the newly stored events name (in their transaction)."""
    wanted = {w.key: w for event in new for w in recordings(event)}
    if not wanted:
        return
    first_seen = sink._time(now)
    for key in sorted(wanted):  # one order for concurrent writers
        w = wanted[key]
        cur.execute(
            sink._sql(
                "INSERT INTO recordings (provider, call_id, source, source_key, first_seen)"
                " VALUES (?,?,?,?,?) ON CONFLICT (source_key) DO NOTHING"
            ),
            (w.provider, w.call_id, w.source, w.key, first_seen),
        )


@dataclass(frozen=True, slots=True)
class Recording:
    id: int
    provider: str
    call_id: str | None
    source: str
    status: str
    attempts: int
    archive_uri: str | None
    sha256: str | None
    bytes: int | None
    content_type: str | None
    first_seen: datetime
    archived_at: datetime | None
    last_error: str | None
    last_http_status: int | None
    next_attempt_at: float

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {name: getattr(self, name) for name in _COLUMNS}
        data["first_seen"] = self.first_seen.isoformat().replace("+00:00", "Z")
        if self.archived_at is not None:
            data["archived_at"] = self.archived_at.isoformat().replace("+00:00", "Z")
        return data


class RecordingTable:
    """The archiver's and the CLI's view of `recordings` on one sink."""

    def __init__(self, sink: SqlSink) -> None:
        self.sink = sink

    def _sql(self, sql: str) -> Any:
        return self.sink._sql(sql)

    def _row(self, row: Sequence[Any]) -> Recording:
        from_time = self.sink._from_time
        return Recording(
            id=int(row[0]),
            provider=row[1],
            call_id=row[2],
            source=row[3],
            status=row[4],
            attempts=int(row[5]),
            archive_uri=row[6],
            sha256=row[7],
            bytes=None if row[8] is None else int(row[8]),
            content_type=row[9],
            first_seen=_utc(from_time(row[10])),
            archived_at=None if row[11] is None else _utc(from_time(row[11])),
            last_error=row[12],
            last_http_status=None if row[13] is None else int(row[13]),
            next_attempt_at=float(row[14]),
        )

    def claim(self, owner: str, now: float, lease: float, limit: int) -> list[Recording]:
        """Lease up to `limit` due pending rows (oldest first) and count the attempt."""
        columns = ", ".join(_COLUMNS)
        free = (
            "status = 'pending' AND next_attempt_at <= ?"
            " AND (lease_owner IS NULL OR lease_until < ?)"
        )
        with self.sink._write() as cur:
            cur.execute(
                self._sql(
                    "UPDATE recordings SET lease_owner = ?, lease_until = ?,"
                    " attempts = attempts + 1"
                    f" WHERE id IN (SELECT id FROM recordings WHERE {free} ORDER BY id LIMIT ?)"
                    f" AND {free} RETURNING {columns}"
                ),
                (owner, now + lease, now, now, limit, now, now),
            )
            rows = cur.fetchall()
        return sorted((self._row(row) for row in rows), key=lambda r: r.id)

    def renew(self, owner: str, ids: Sequence[int], until: float) -> None:
        if ids:
            with self.sink._write() as cur:
                self._leased(cur, owner, ids, "lease_until = ?", (until,))

    def archived(
        self,
        owner: str,
        row: Recording,
        *,
        uri: str,
        sha256: str,
        size: int,
        content_type: str | None,
        now: datetime,
    ) -> bool:
        """Mark the row archived and point its call at the object; False if the lease was lost."""
        with self.sink._write() as cur:
            done = self._leased(
                cur,
                owner,
                [row.id],
                "status = 'archived', archive_uri = ?, sha256 = ?, bytes = ?, content_type = ?,"
                f" archived_at = ?, last_error = NULL, {_UNLEASED}",
                (uri, sha256, size, content_type, self.sink._time(now)),
            )
            if done != 1:
                return False
            if row.call_id is not None:
                cur.execute(
                    self._sql(
                        "UPDATE calls SET recording_archive_uri = ?"
                        " WHERE provider = ? AND call_id = ?"
                        " AND (recording_archive_uri IS NULL OR recording_archive_uri = ?)"
                    ),
                    (uri, row.provider, row.call_id, uri),
                )
        return True

    def again_later(
        self, owner: str, row_id: int, error: str, http_status: int | None, retry_at: float
    ) -> None:
        with self.sink._write() as cur:
            self._leased(
                cur,
                owner,
                [row_id],
                f"last_error = ?, last_http_status = ?, next_attempt_at = ?, {_UNLEASED}",
                (error[:_ERROR_CHARS], http_status, retry_at),
            )

    def ended(
        self, owner: str, row_id: int, status: str, error: str, http_status: int | None
    ) -> None:
        """A final failure: `failed`, `expired` or `refused`, with the reason."""
        if status not in RETRYABLE:
            raise ValueError(f"not a final failure status: {status!r}")
        with self.sink._write() as cur:
            self._leased(
                cur,
                owner,
                [row_id],
                f"status = ?, last_error = ?, last_http_status = ?, {_UNLEASED}",
                (status, error[:_ERROR_CHARS], http_status),
            )

    def release(self, owner: str, ids: Sequence[int]) -> None:
        """Give rows back at once (a clean shutdown), without counting the attempt."""
        if ids:
            with self.sink._write() as cur:
                self._leased(
                    cur,
                    owner,
                    ids,
                    f"{_UNLEASED}, attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END",
                )

    def _leased(
        self,
        cur: Cursor,
        owner: str,
        ids: Sequence[int],
        assignments: str,
        values: Sequence[object] = (),
    ) -> int:
        """Update the rows `ids` that `owner` still leases (a leased row is pending); how many:
        a row whose lease passed to another archiver is left alone."""
        marks = ",".join("?" * len(ids))
        cur.execute(
            self._sql(
                f"UPDATE recordings SET {assignments}"
                f" WHERE lease_owner = ? AND status = 'pending' AND id IN ({marks})"
            ),
            (*values, owner, *ids),
        )
        return int(cur.rowcount)

    def pending_counts(self) -> dict[str, int]:
        with self.sink._read() as cur:
            cur.execute(
                self._sql(
                    "SELECT provider, count(*) FROM recordings"
                    " WHERE status = 'pending' GROUP BY provider"
                )
            )
            rows = cur.fetchall()
        return {str(row[0]): int(row[1]) for row in rows}

    def rows(self, status: str | None = None, ids: Sequence[int] = ()) -> list[Recording]:
        columns = ", ".join(_COLUMNS)
        sql = f"SELECT {columns} FROM recordings"
        params: list[object] = []
        where: list[str] = []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if ids:
            where.append(f"id IN ({','.join('?' * len(ids))})")
            params.extend(ids)
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self.sink._read() as cur:
            cur.execute(self._sql(sql + " ORDER BY id"), params)
            rows = cur.fetchall()
        return [self._row(row) for row in rows]

    def retry(self, ids: Sequence[int] = ()) -> list[int]:
        """Put failed, expired or refused rows (all, or these) back in line; the ids moved."""
        marks = ",".join("?" * len(RETRYABLE))
        sql = (
            "UPDATE recordings SET status = 'pending', attempts = 0, next_attempt_at = 0,"
            f" {_UNLEASED}"
            f" WHERE status IN ({marks})"
        )
        params: list[object] = list(RETRYABLE)
        if ids:
            sql += f" AND id IN ({','.join('?' * len(ids))})"
            params.extend(ids)
        with self.sink._write() as cur:
            cur.execute(self._sql(sql + " RETURNING id"), params)
            rows = cur.fetchall()
        return sorted(int(row[0]) for row in rows)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


__all__ = ["RETRYABLE", "STATUSES", "Recording", "RecordingTable", "insert_recordings"]
