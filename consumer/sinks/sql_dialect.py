"""What a SQL dialect supplies to the shared sink, and how rows pass to and from it.

The column lists fix the order of every statement's values and of every row read back; each
value goes through the dialect's conversion (times, JSON) chosen once per column, not per value.
"""

from __future__ import annotations

import json
import operator
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import fields
from datetime import datetime
from typing import Any, Protocol, TypeVar

import orjson

from consumer.model import CallEvent
from consumer.sinks.base import StoredEvent
from consumer.sinks.merge import CallRow

# What an event and its call row share, in the order both tables list it.
_PARTY_AND_TIME_COLUMNS = (
    "caller",
    "callee",
    "direction",
    "started_at",
    "ringing_at",
    "answered_at",
    "ended_at",
    "duration_seconds",
)
EVENT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "provider",
    "kind",
    "call_id",
    "occurred_at",
    *_PARTY_AND_TIME_COLUMNS,
    "outcome",
    "provider_status",
    "hangup_by",
    "recording_url",
    "correlation_id",
    "refs",
    "extras",
)
STORED_COLUMNS = (*EVENT_COLUMNS, "payload", "queue", "message_id", "received_at")
CALL_COLUMNS: tuple[str, ...] = (
    "provider",
    "call_id",
    "outcome",
    *_PARTY_AND_TIME_COLUMNS,
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
_TIMES = frozenset(
    {"occurred_at", "started_at", "ringing_at", "answered_at", "ended_at", "last_event_at"}
    | {"received_at", "updated_at", "first_seen", "last_seen", "created_at"}
)
_JSON = frozenset({"refs", "extras", "payload"})
_ENUMS = frozenset({"provider", "kind", "direction", "outcome", "hangup_by", "last_event_kind"})


def _conversions(columns: Sequence[str]) -> tuple[tuple[int, ...], ...]:
    """Where `SqlDialect._convert` finds the enums, times and JSON values among `columns`;
    every other value (text, numbers) goes to the driver as it is."""
    return tuple(
        tuple(i for i, column in enumerate(columns) if column in names)
        for names in (_ENUMS, _TIMES, _JSON)
    )


_event_values = operator.attrgetter(*EVENT_COLUMNS)
_CALL_VALUE_COLUMNS = tuple(c for c in CALL_COLUMNS if c != "updated_at")  # the sink stamps it
# `_call_row` takes `MergeState.values()`, a `CallRow`'s fields in order: the columns' order.
if tuple(f.name for f in fields(CallRow)) != _CALL_VALUE_COLUMNS:
    raise AssertionError("CallRow's fields must be CALL_COLUMNS, in order, without updated_at")
_EVENT_CONVERSIONS = _conversions(EVENT_COLUMNS)
_CALL_CONVERSIONS = _conversions(_CALL_VALUE_COLUMNS)
_CHUNK = 200  # rows per multi-row statement: far below SQLite's 32766 variables

CallKey = tuple[str, str]
T = TypeVar("T")


class Cursor(Protocol):
    """The part of a DB-API cursor the shared code uses (sqlite3 and psycopg alike)."""

    def execute(self, sql: Any, params: Sequence[Any] = ..., /) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    @property
    def rowcount(self) -> int: ...


class SqlDialect(ABC):
    """Connections, error mapping and value conversion: what SQLite and PostgreSQL differ in."""

    dialect: str  # the migrations folder
    greatest = "max"  # the two-argument maximum: SQLite's max(), PostgreSQL's GREATEST()
    least = "min"

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

    @abstractmethod
    def close(self) -> None: ...

    # -- rows --------------------------------------------------------------------------------

    def _event_row(self, stored: StoredEvent) -> list[object]:
        event = stored.normalized.event
        row = self._convert(_EVENT_CONVERSIONS, list(_event_values(event)))
        row += [
            self._json(stored.normalized.payload),
            stored.queue,
            stored.message_id,
            self._time(stored.received_at),
        ]
        return row

    def _call_row(self, call: Sequence[Any], now: datetime) -> list[object]:
        """The row of `calls` of a `CallRow`'s fields in order (`MergeState.values()`)."""
        row = self._convert(_CALL_CONVERSIONS, list(call))
        row.append(self._time(now))
        return row

    def _convert(self, conversions: tuple[tuple[int, ...], ...], row: list[Any]) -> list[Any]:
        """Each value of `row` as the driver takes it, in place.

        Only the columns that need a conversion are visited (a dozen of an event's 25, most
        of them empty), each column's kind found once per module: this runs for every event
        and every call row, so every step counts.
        """
        enums, times, jsons = conversions
        for i in enums:
            value = row[i]
            if value is not None:
                row[i] = value._value_  # what .value returns, without the enum property's call
        time = self._time
        for i in times:
            value = row[i]
            if value is not None:
                row[i] = time(value)
        json = self._json
        for i in jsons:
            value = row[i]
            if value is not None:
                row[i] = json(value)
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


def call_key(event: CallEvent) -> CallKey:
    return (event.provider._value_, event.call_id or "")  # .value, without the property call


def by_provider(keys: Sequence[CallKey]) -> dict[str, list[str]]:
    call_ids: dict[str, list[str]] = {}
    for provider, call_id in keys:
        call_ids.setdefault(provider, []).append(call_id)
    return call_ids


def chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=False)


def dumps(value: Any) -> str:
    """Compact JSON that keeps non-ASCII text readable in the database.

    An object of text, integers, booleans and nulls, nested in objects and arrays (a provider's
    record, refs, most extras) goes through orjson, which writes the same document 3-10x
    faster; anything else through the standard encoder, since orjson writes floats differently
    (NaN and Infinity as null, exponents without a sign) and refuses integers beyond 64 bits.
    """
    if type(value) is dict:
        if not value:
            return "{}"  # most events' refs, many extras
        if _plain(value):
            try:
                return orjson.dumps(value).decode("utf-8")
            except orjson.JSONEncodeError:  # a key that is not text, a lone surrogate, 64 bits
                pass
    # json.dumps with options builds an encoder per call; one shared encoder writes the same.
    return _ENCODER.encode(value)


_PLAIN_SCALARS = frozenset({str, int, bool, type(None)})
_PLAIN_CONTAINERS = 1000  # beyond this many objects and arrays, leave it to the standard encoder


def _plain(value: dict[Any, Any]) -> bool:
    """Whether `value` holds nothing but objects, arrays, text, integers, booleans and nulls
    (exact types: a subclass may encode itself differently).

    Iterative and bounded (a cycle, or a huge document, ends the walk), so linear in the size.
    """
    stack: list[Any] = [value]
    budget = _PLAIN_CONTAINERS
    while stack:
        container = stack.pop()
        budget -= 1
        if budget < 0:
            return False
        for item in container.values() if type(container) is dict else container:
            kind = type(item)
            if kind is dict or kind is list:
                stack.append(item)
            elif kind not in _PLAIN_SCALARS:
                return False
    return True


__all__ = [
    "CALL_COLUMNS",
    "EVENT_COLUMNS",
    "STORED_COLUMNS",
    "CallKey",
    "Cursor",
    "SqlDialect",
    "by_provider",
    "call_key",
    "chunks",
    "dumps",
]
