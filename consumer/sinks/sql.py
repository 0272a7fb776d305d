"""What SQLite and PostgreSQL share: the `store` transaction, the calls merge, the outbox.

The subclasses supply connections, error mapping and value conversion; the SQL here is the
common dialect of both (`?` placeholders, `INSERT ... ON CONFLICT`, `RETURNING`, row values).
"""

from __future__ import annotations

import json
import operator
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import orjson

from consumer.model import CallEvent
from consumer.sinks import migrations
from consumer.sinks.base import DeadLetter, DeadLetterRow, NonceClaim, Sink, StoredEvent
from consumer.sinks.merge import CallRow, MergeState, shapes_call
from consumer.sinks.reconcile import mark_final
from consumer.sinks.recordings import insert_recordings

EVENT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "provider",
    "kind",
    "call_id",
    "occurred_at",
    "caller",
    "callee",
    "direction",
    "started_at",
    "ringing_at",
    "answered_at",
    "ended_at",
    "duration_seconds",
    "outcome",
    "provider_status",
    "hangup_by",
    "recording_url",
    "correlation_id",
    "refs",
    "extras",
)
_STORED_COLUMNS = (*EVENT_COLUMNS, "payload", "queue", "message_id", "received_at")
CALL_COLUMNS: tuple[str, ...] = (
    "provider",
    "call_id",
    "outcome",
    "caller",
    "callee",
    "direction",
    "started_at",
    "ringing_at",
    "answered_at",
    "ended_at",
    "duration_seconds",
    "recording_url",
    "provider_status",
    "hangup_by",
    "correlation_id",
    "refs",
    "last_event_kind",
    "last_event_at",
    "event_count",
    "updated_at",
)
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
_TIMES = frozenset(
    {"occurred_at", "started_at", "ringing_at", "answered_at", "ended_at", "last_event_at"}
    | {"received_at", "updated_at", "first_seen", "last_seen", "created_at"}
)
_JSON = frozenset({"refs", "extras", "payload"})
_ENUMS = frozenset({"provider", "kind", "direction", "outcome", "hangup_by", "last_event_kind"})
_AS_IS, _ENUM, _TIME, _JSON_VALUE = 0, 1, 2, 3


def _kinds(columns: Sequence[str]) -> tuple[int, ...]:
    """How `SqlSink._values` converts each column."""
    return tuple(
        _TIME
        if column in _TIMES
        else _JSON_VALUE
        if column in _JSON
        else _ENUM
        if column in _ENUMS
        else _AS_IS
        for column in columns
    )


_event_values = operator.attrgetter(*EVENT_COLUMNS)
_CALL_VALUE_COLUMNS = tuple(c for c in CALL_COLUMNS if c != "updated_at")  # the sink stamps it
_call_values = operator.attrgetter(*_CALL_VALUE_COLUMNS)
_EVENT_KINDS = _kinds(EVENT_COLUMNS)
_CALL_KINDS = _kinds(_CALL_VALUE_COLUMNS)
_CHUNK = 200  # rows per multi-row statement: far below SQLite's 32766 variables
_NONCE_PURGE_EVERY = 60.0  # seconds between deletions of expired `push_nonces` rows
_PROBE_NONCE = "readyz-write-probe"  # the row `write_probe` rewrites (always expired)

CallKey = tuple[str, str]
T = TypeVar("T")


class Cursor(Protocol):
    """The part of a DB-API cursor the shared code uses (sqlite3 and psycopg alike)."""

    def execute(self, sql: Any, params: Sequence[Any] = ..., /) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    @property
    def rowcount(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Pending:
    """An outbox row with the event it stands for."""

    id: int
    event: CallEvent


class SqlSink(ABC):
    """A `Sink` and an `Outbox` on one SQL database."""

    dialect: str  # the migrations folder

    def __init__(self, forwarders: Sequence[str] = ()) -> None:
        self.forwarders = tuple(forwarders)
        self._nonces_purged_at = 0.0

    # -- what a dialect supplies ------------------------------------------------------------

    @abstractmethod
    def _write(self) -> AbstractContextManager[Cursor]:
        """A write transaction: commits on exit, rolls back on error, maps transient errors."""

    @abstractmethod
    def _read(self) -> AbstractContextManager[Cursor]:
        """A read-only snapshot with the same error mapping."""

    @abstractmethod
    def _migration(self) -> AbstractContextManager[Cursor]:
        """A write transaction holding the database-wide migration lock."""

    @abstractmethod
    def _schema_version_ddl(self) -> str: ...

    @abstractmethod
    def _time(self, value: datetime) -> object: ...

    @abstractmethod
    def _from_time(self, value: Any) -> datetime: ...

    @abstractmethod
    def _json(self, value: Any) -> object: ...

    @abstractmethod
    def _from_json(self, value: Any) -> Any: ...

    def _sql(self, sql: str) -> Any:
        """The statement in the driver's placeholder style."""
        return sql

    def _lock_calls(self, cur: Cursor, keys: Sequence[CallKey]) -> None:  # noqa: B027
        """Serialize concurrent writers of the same calls (where the database does not)."""

    greatest = "max"  # the two-argument maximum: SQLite's max(), PostgreSQL's GREATEST()
    least = "min"

    @abstractmethod
    def close(self) -> None: ...

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
        for chunk in _chunks(rows):
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
                {_call_key(s.normalized.event) for s in batch if shapes_call(s.normalized.event)}
            )
            self._lock_calls(cur, candidates)
            new = self._insert_events(cur, batch)
            touched = sorted({_call_key(e) for e in new if shapes_call(e)})
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
            for chunk in _chunks(sorted(set(ids))):
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
            for chunk in _chunks(sorted(set(ids))):
                marks = ",".join("?" * len(chunk))
                cur.execute(self._sql(f"DELETE FROM dead_letters WHERE id IN ({marks})"), chunk)

    # -- store, step by step -----------------------------------------------------------------

    def _insert_events(self, cur: Cursor, batch: Sequence[StoredEvent]) -> list[CallEvent]:
        """Insert what is new; the events actually inserted, in batch order."""
        columns = ", ".join(_STORED_COLUMNS)
        row_marks = "(" + ",".join("?" * len(_STORED_COLUMNS)) + ")"
        inserted: set[str] = set()
        for chunk in _chunks(batch):
            sql = (
                f"INSERT INTO call_events ({columns}) VALUES "
                + ",".join([row_marks] * len(chunk))
                + " ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
            )
            cur.execute(self._sql(sql), [v for stored in chunk for v in self._event_row(stored)])
            inserted.update(row[0] for row in cur.fetchall())
        return [s.normalized.event for s in batch if s.normalized.event.event_id in inserted]

    def _recompute_calls(
        self, cur: Cursor, keys: Sequence[CallKey], now: datetime, inserted: Sequence[CallEvent]
    ) -> None:
        """Fold the events this transaction inserted into their calls' `calls` rows.

        Each row keeps its `MergeState`, so an event costs the same however many events its
        call already has. A row without a usable one (written before migration 0003, or
        damaged) is recomputed once from all of its call's stored events, `inserted` among
        them, and kept from then on.
        """
        if not keys:
            return
        states = self._merge_states(cur, keys)
        legacy = [key for key in keys if key in states and states[key] is None]
        rebuilt = self._states_from_events(cur, legacy, inserted)
        for event in inserted:
            key = _call_key(event)
            if key in rebuilt or not shapes_call(event):
                continue
            state = states.get(key)
            if state is None:
                state = states[key] = MergeState()
            state.fold(event)
        states.update(rebuilt)
        merged = [(key, state) for key, state in states.items() if state is not None]
        self._upsert_calls(cur, merged, now)

    def _merge_states(
        self, cur: Cursor, keys: Sequence[CallKey]
    ) -> dict[CallKey, MergeState | None]:
        """The stored state of each call that has a row: a `MergeState`, or None to rebuild."""
        states: dict[CallKey, MergeState | None] = {}
        for provider, ids in _by_provider(keys).items():
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                cur.execute(
                    self._sql(
                        "SELECT call_id, merge_state FROM calls"
                        f" WHERE provider = ? AND call_id IN ({marks})"
                    ),
                    [provider, *chunk],
                )
                for call_id, raw in cur.fetchall():
                    states[(provider, call_id)] = _read_state(raw)
        return states

    def _states_from_events(
        self, cur: Cursor, keys: Sequence[CallKey], inserted: Sequence[CallEvent]
    ) -> dict[CallKey, MergeState]:
        """Merge states recomputed from every stored event of the calls (one query for all).

        The rows this transaction has just inserted are taken from `inserted` instead of being
        parsed back: the same events, without a model validation per row.
        """
        if not keys:
            return {}
        known = {event.event_id: event for event in inserted}
        states = {key: MergeState() for key in keys}
        columns = ", ".join(EVENT_COLUMNS)
        # provider = ? AND call_id IN (...) looks each call up in call_events_call (the IN
        # implies the index's call_id IS NOT NULL). A row-value IN (VALUES ...), or spelling
        # out call_id IS NOT NULL, makes SQLite scan the whole index on every batch instead:
        # 13-18 ms per batch at 200,000 events, growing with the table.
        for provider, ids in _by_provider(keys).items():
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                cur.execute(
                    self._sql(
                        f"SELECT {columns} FROM call_events"
                        f" WHERE provider = ? AND call_id IN ({marks})"
                    ),
                    [provider, *chunk],
                )
                for row in cur.fetchall():
                    event = known.get(row[0])
                    if event is None:
                        event = self.event_from_row(row)
                    if shapes_call(event):
                        states[_call_key(event)].fold(event)
        return states

    def _upsert_calls(
        self, cur: Cursor, merged: Sequence[tuple[CallKey, MergeState]], now: datetime
    ) -> None:
        columns = ", ".join((*CALL_COLUMNS, "merge_state"))
        row_marks = "(" + ",".join("?" * (len(CALL_COLUMNS) + 1)) + ")"
        updates = ", ".join(f"{c} = excluded.{c}" for c in (*CALL_COLUMNS[2:], "merge_state"))
        for chunk in _chunks(merged):
            sql = (
                f"INSERT INTO calls ({columns}) VALUES "
                + ",".join([row_marks] * len(chunk))
                + f" ON CONFLICT (provider, call_id) DO UPDATE SET {updates}"
            )
            params: list[object] = []
            for (provider, call_id), state in chunk:
                params += self._call_row(state.row(provider, call_id), now)
                params.append(_dumps_state(state.to_json()))
            cur.execute(self._sql(sql), params)

    def _insert_outbox(self, cur: Cursor, new: Sequence[CallEvent], now: datetime) -> None:
        entries = [(name, event.event_id) for name in self.forwarders for event in new]
        created = self._time(now)
        for chunk in _chunks(entries):
            sql = "INSERT INTO outbox (forwarder, event_id, created_at) VALUES " + ",".join(
                ["(?,?,?)"] * len(chunk)
            )
            cur.execute(self._sql(sql), [v for entry in chunk for v in (*entry, created)])

    def _upsert_dead_letters(self, cur: Cursor, letters: Sequence[DeadLetter]) -> None:
        greatest, least = self.greatest, self.least
        for chunk in _chunks(letters):
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

    # -- rows --------------------------------------------------------------------------------

    def _event_row(self, stored: StoredEvent) -> list[object]:
        event = stored.normalized.event
        row = self._values(_EVENT_KINDS, _event_values(event))
        row.append(self._json(stored.normalized.payload))
        row += [stored.queue, stored.message_id, self._time(stored.received_at)]
        return row

    def _call_row(self, call: CallRow, now: datetime) -> list[object]:
        row = self._values(_CALL_KINDS, _call_values(call))
        row.append(self._time(now))
        return row

    def _values(self, kinds: Sequence[int], values: Sequence[Any]) -> list[object]:
        """Each value as the driver takes it; what it takes as is (text, numbers) goes untouched.

        Inlined, with each column's kind looked up once per module: ~40 values per event make
        every call and test count.
        """
        row: list[object] = []
        append, time, json = row.append, self._time, self._json
        for kind, value in zip(kinds, values, strict=True):
            if value is None or kind == _AS_IS:
                append(value)
            elif kind == _ENUM:
                append(value._value_)  # what .value returns, without the enum property's call
            elif kind == _TIME:
                append(time(value))
            else:
                append(json(value))
        return row

    def event_from_row(self, row: Sequence[Any]) -> CallEvent:
        """A `CallEvent` from the `EVENT_COLUMNS` of a `call_events` row."""
        data: dict[str, Any] = {}
        for column, raw in zip(EVENT_COLUMNS, row, strict=True):
            value = raw
            if raw is not None and column in _TIMES:
                value = self._from_time(raw)
            elif column in _JSON:
                value = self._from_json(raw) if raw is not None else {}
            data[column] = value
        return CallEvent.model_validate(data)

    # -- Outbox ------------------------------------------------------------------------------

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
            for chunk in _chunks(sorted(ids)):
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


def _now() -> datetime:
    return datetime.now(UTC)


def _call_key(event: CallEvent) -> CallKey:
    return (event.provider.value, event.call_id or "")


def _read_state(raw: str | None) -> MergeState | None:
    """The stored merge state; None when there is none, or none this code can trust (edited by
    hand, say), so that the row is recomputed from its events rather than blocking the queue."""
    if raw is None:
        return None
    try:
        return MergeState.from_json(_loads(raw))
    except (ValueError, LookupError, TypeError):
        return None


def _by_provider(keys: Sequence[CallKey]) -> dict[str, list[str]]:
    call_ids: dict[str, list[str]] = {}
    for provider, call_id in keys:
        call_ids.setdefault(provider, []).append(call_id)
    return call_ids


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


def _chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _dumps_state(state: dict[str, Any]) -> str:
    """A merge state as JSON: orjson, about ten times faster here than the standard encoder.

    A state holds only text, integers, lists and objects (no floats, which orjson would write
    differently), so both write the same document; the standard encoder takes what orjson
    refuses (an integer beyond 64 bits, a lone surrogate).
    """
    try:
        return orjson.dumps(state).decode("utf-8")
    except orjson.JSONEncodeError:
        return dumps(state)


# Read back with the standard decoder: orjson would turn an integer beyond 64 bits into a float.
_loads = json.loads


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=False)


def dumps(value: Any) -> str:
    """Compact JSON that keeps non-ASCII text readable in the database."""
    # json.dumps with options builds an encoder per call; one shared encoder writes the same.
    return _ENCODER.encode(value)


if TYPE_CHECKING:

    def _implements_the_protocol(sink: SqlSink) -> Sink:
        return sink  # mypy proves here that every SqlSink is a Sink


__all__ = ["CALL_COLUMNS", "EVENT_COLUMNS", "Cursor", "Pending", "SqlSink", "dumps"]
