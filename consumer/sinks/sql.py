"""What SQLite and PostgreSQL share: the `store` transaction, nonces and dead letters.

The dialects (`sqlite.py`, `postgres.py`) supply connections, error mapping and value conversion
(`sql_dialect.py`); the SQL here is the common dialect of both (`?` placeholders, `INSERT ... ON
CONFLICT`, `RETURNING`, row values). A transaction's `calls` step is in `sql_calls.py`, the
outbox in `sql_outbox.py`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from consumer.model import CallEvent
from consumer.sinks import migrations
from consumer.sinks.base import DeadLetter, DeadLetterRow, NonceClaim, Sink, StoredEvent
from consumer.sinks.merge import shapes_call
from consumer.sinks.reconcile import mark_final
from consumer.sinks.recordings import insert_recordings
from consumer.sinks.sql_calls import CallsMerge
from consumer.sinks.sql_dialect import (
    CALL_COLUMNS,
    EVENT_COLUMNS,
    STORED_COLUMNS,
    CallKey,
    Cursor,
    call_key,
    chunks,
    dumps,
)
from consumer.sinks.sql_outbox import Pending, SqlOutbox

_DEAD_LETTER_COLUMNS = (
    "id",
    "queue",
    "message_id",
    "reason",
    "error",
    "payload",
    "attempts",
    "first_seen",
    "last_seen",
)
_NONCE_PURGE_EVERY = 60.0  # seconds between deletions of expired `push_nonces` rows
_PROBE_NONCE = "readyz-write-probe"  # the row `write_probe` rewrites (always expired)


class SqlSink(CallsMerge, SqlOutbox):
    """A `Sink` and an `Outbox` on one SQL database."""

    def __init__(self, forwarders: Sequence[str] = ()) -> None:
        self.forwarders = tuple(forwarders)
        self._nonces_purged_at = 0.0

    # -- Sink --------------------------------------------------------------------------------

    def migrate(self) -> None:
        known = migrations.load(self.dialect)
        with self._migration() as cur:
            cur.execute(self._sql(self._schema_version_ddl()))
            cur.execute(self._sql("SELECT version FROM schema_version"))
            applied = {int(row[0]) for row in cur.fetchall()}
            migrations.check_not_newer(applied, known, "the database")
            for migration in known:
                if migration.version in applied:
                    continue
                for statement in migration.statements:
                    cur.execute(self._sql(statement))
                cur.execute(
                    self._sql(
                        "INSERT INTO schema_version (version, name, applied_at) VALUES (?,?,?)"
                    ),
                    (migration.version, migration.name, self._time(_now())),
                )

    def schema_version(self) -> int:
        with self._read() as cur:
            cur.execute(self._sql("SELECT max(version) FROM schema_version"))
            rows = cur.fetchall()
        return int(rows[0][0] or 0)

    def store(self, events: Sequence[StoredEvent], dead_letters: Sequence[DeadLetter]) -> None:
        self.store_claimed(events, dead_letters, ())

    def store_claimed(
        self,
        events: Sequence[StoredEvent],
        dead_letters: Sequence[DeadLetter],
        claims: Sequence[NonceClaim],
    ) -> set[str]:
        """`store`, where a message holding a claim is stored only if its nonce is new.

        The nonces go into `push_nonces` in the same transaction as the events, so a request is
        remembered exactly when it is stored: a replay (after a restart, at another daemon on
        this database) stores nothing. Returns the ids of the messages refused as replays.
        """
        if not events and not dead_letters and not claims:
            return set()
        now = _now()
        with self._write() as cur:
            refused = self._claim_nonces(cur, claims) if claims else set()
            if refused:
                events = [e for e in events if e.message_id not in refused]
                dead_letters = [d for d in dead_letters if d.message_id not in refused]
            self._store(cur, _unique_events(events), _unique_letters(dead_letters), now)
        return refused

    def write_probe(self) -> None:
        """A write transaction that changes a row, so it needs what a commit needs (disk space,
        a writable file, a primary server): readiness after a failed commit."""
        with self._write() as cur:
            cur.execute(
                self._sql(
                    "INSERT INTO push_nonces (nonce, queue, expires_at) VALUES (?, '', ?)"
                    " ON CONFLICT (nonce) DO UPDATE SET expires_at = excluded.expires_at"
                ),
                (_PROBE_NONCE, 0.0),
            )

    def _claim_nonces(self, cur: Cursor, claims: Sequence[NonceClaim]) -> set[str]:
        """Insert the claims' nonces; the message ids whose nonce is already remembered."""
        now = time.time()
        if now - self._nonces_purged_at > _NONCE_PURGE_EVERY:
            cur.execute(self._sql("DELETE FROM push_nonces WHERE expires_at < ?"), (now,))
            self._nonces_purged_at = now
        first: dict[str, NonceClaim] = {}
        for claim in claims:
            first.setdefault(claim.key, claim)
        rows = [first[key] for key in sorted(first)]  # one order: concurrent writers don't deadlock
        claimed: set[str] = set()
        for chunk in chunks(rows):
            # An expired row is taken over: its Created can no longer pass, this one did.
            sql = (
                "INSERT INTO push_nonces (nonce, queue, expires_at) VALUES "
                + ",".join(["(?,?,?)"] * len(chunk))
                + " ON CONFLICT (nonce) DO UPDATE SET queue = excluded.queue,"
                " expires_at = excluded.expires_at WHERE push_nonces.expires_at < ?"
                " RETURNING nonce"
            )
            params = [v for c in chunk for v in (c.key, c.queue, c.expires_at)]
            cur.execute(self._sql(sql), [*params, now])
            claimed.update(str(row[0]) for row in cur.fetchall())
        return {c.message_id for c in claims if c.key not in claimed or first[c.key] is not c}

    def _store(
        self,
        cur: Cursor,
        batch: Sequence[StoredEvent],
        letters: Sequence[DeadLetter],
        now: datetime,
    ) -> None:
        if batch or letters:
            candidates = sorted(
                {call_key(s.normalized.event) for s in batch if shapes_call(s.normalized.event)}
            )
            self._lock_calls(cur, candidates)
            new = self._insert_events(cur, batch)
            touched = sorted({call_key(e) for e in new if shapes_call(e)})
            self._recompute_calls(cur, touched, now, new)
            mark_final(self, cur, new, now)  # calls.state: sinks/reconcile.py
            self._insert_outbox(cur, new, now)
            insert_recordings(self, cur, new, now)
            self._upsert_dead_letters(cur, letters)

    def dead_letters(self, ids: Sequence[int] = ()) -> list[DeadLetterRow]:
        columns = ", ".join(_DEAD_LETTER_COLUMNS)
        rows: list[Any] = []
        with self._read() as cur:
            if not ids:
                cur.execute(self._sql(f"SELECT {columns} FROM dead_letters ORDER BY id"))
                rows = cur.fetchall()
            for chunk in chunks(sorted(set(ids))):
                marks = ",".join("?" * len(chunk))
                cur.execute(
                    self._sql(
                        f"SELECT {columns} FROM dead_letters WHERE id IN ({marks}) ORDER BY id"
                    ),
                    chunk,
                )
                rows.extend(cur.fetchall())
        return [
            DeadLetterRow(
                id=int(row[0]),
                queue=row[1],
                message_id=row[2],
                reason=row[3],
                error=row[4],
                payload=bytes(row[5]),
                attempts=int(row[6]),
                first_seen=self._from_time(row[7]),
                last_seen=self._from_time(row[8]),
            )
            for row in rows
        ]

    def discard_dead_letters(self, ids: Sequence[int]) -> None:
        with self._write() as cur:
            for chunk in chunks(sorted(set(ids))):
                marks = ",".join("?" * len(chunk))
                cur.execute(self._sql(f"DELETE FROM dead_letters WHERE id IN ({marks})"), chunk)

    # -- store, step by step -----------------------------------------------------------------

    def _insert_events(self, cur: Cursor, batch: Sequence[StoredEvent]) -> list[CallEvent]:
        """Insert what is new; the events actually inserted, in batch order."""
        columns = ", ".join(STORED_COLUMNS)
        row_marks = "(" + ",".join("?" * len(STORED_COLUMNS)) + ")"
        inserted: set[str] = set()
        for chunk in chunks(batch):
            sql = (
                f"INSERT INTO call_events ({columns}) VALUES "
                + ",".join([row_marks] * len(chunk))
                + " ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
            )
            cur.execute(self._sql(sql), [v for stored in chunk for v in self._event_row(stored)])
            inserted.update(row[0] for row in cur.fetchall())
        return [s.normalized.event for s in batch if s.normalized.event.event_id in inserted]

    def _upsert_dead_letters(self, cur: Cursor, letters: Sequence[DeadLetter]) -> None:
        greatest, least = self.greatest, self.least
        for chunk in chunks(letters):
            sql = (
                "INSERT INTO dead_letters (queue, message_id, reason, error, payload, attempts,"
                " first_seen, last_seen) VALUES "
                + ",".join(["(?,?,?,?,?,?,?,?)"] * len(chunk))
                + " ON CONFLICT (queue, message_id) DO UPDATE SET"
                " reason = excluded.reason, error = excluded.error,"
                f" attempts = {greatest}(dead_letters.attempts, excluded.attempts),"
                f" first_seen = {least}(dead_letters.first_seen, excluded.first_seen),"
                f" last_seen = {greatest}(dead_letters.last_seen, excluded.last_seen)"
            )
            params: list[object] = []
            for letter in chunk:
                seen = self._time(letter.seen_at)
                params += [letter.queue, letter.message_id, letter.reason, letter.error]
                params += [bytes(letter.payload), letter.attempts, seen, seen]
            cur.execute(self._sql(sql), params)


def _now() -> datetime:
    return datetime.now(UTC)


def _unique_events(events: Sequence[StoredEvent]) -> list[StoredEvent]:
    """First copy of each event, sorted by id so concurrent writers lock rows in one order."""
    unique: dict[str, StoredEvent] = {}
    for stored in events:
        unique.setdefault(stored.normalized.event.event_id, stored)
    return [unique[key] for key in sorted(unique)]


def _unique_letters(letters: Sequence[DeadLetter]) -> list[DeadLetter]:
    """One letter per (queue, message_id): one statement may not update a row twice."""
    unique: dict[tuple[str, str], DeadLetter] = {}
    for letter in letters:
        key = (letter.queue, letter.message_id)
        seen = unique.get(key)
        if seen is None:
            unique[key] = letter
            continue
        older, newer = sorted((seen, letter), key=lambda each: each.seen_at)
        attempts = max(older.attempts, newer.attempts)
        unique[key] = replace(newer, payload=older.payload, attempts=attempts)
    return [unique[key] for key in sorted(unique)]


if TYPE_CHECKING:

    def _implements_the_protocol(sink: SqlSink) -> Sink:
        return sink  # mypy proves here that every SqlSink is a Sink


__all__ = [
    "CALL_COLUMNS",
    "EVENT_COLUMNS",
    "CallKey",
    "Cursor",
    "Pending",
    "SqlSink",
    "dumps",
]
