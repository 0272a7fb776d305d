"""The `calls` step of a store transaction: fold the new events into their calls' rows.

Each row keeps its `MergeState` (`merge.py`), so an event costs the same however many events
its call already has; a row without a usable state is rebuilt once from its call's events.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from consumer.model import CallEvent
from consumer.sinks.merge import MergeState, shapes_call
from consumer.sinks.sql_dialect import (
    CALL_COLUMNS,
    EVENT_COLUMNS,
    CallKey,
    Cursor,
    SqlDialect,
    by_provider,
    call_key,
    chunks,
    dumps,
)


class CallsMerge(SqlDialect):
    """The calls merge of `SqlSink`, on the dialect's connections and conversions."""

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
            key = call_key(event)
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
        for provider, ids in by_provider(keys).items():
            for chunk in chunks(ids):
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
        for provider, ids in by_provider(keys).items():
            for chunk in chunks(ids):
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
                        states[call_key(event)].fold(event)
        return states

    def _upsert_calls(
        self, cur: Cursor, merged: Sequence[tuple[CallKey, MergeState]], now: datetime
    ) -> None:
        columns = ", ".join((*CALL_COLUMNS, "merge_state"))
        row_marks = "(" + ",".join("?" * (len(CALL_COLUMNS) + 1)) + ")"
        updates = ", ".join(f"{c} = excluded.{c}" for c in (*CALL_COLUMNS[2:], "merge_state"))
        for chunk in chunks(merged):
            sql = (
                f"INSERT INTO calls ({columns}) VALUES "
                + ",".join([row_marks] * len(chunk))
                + f" ON CONFLICT (provider, call_id) DO UPDATE SET {updates}"
            )
            params: list[object] = []
            for (provider, call_id), state in chunk:
                params += self._call_row(state.values(provider, call_id), now)
                params.append(_dumps_state(state.to_json()))
            cur.execute(self._sql(sql), params)


def _read_state(raw: str | None) -> MergeState | None:
    """The stored merge state; None when there is none, or none this code can trust (edited by
    hand, say), so that the row is recomputed from its events rather than blocking the queue."""
    if raw is None:
        return None
    try:
        return MergeState.from_json(_loads(raw))
    except (ValueError, LookupError, TypeError):
        return None


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


__all__ = ["CallsMerge"]
