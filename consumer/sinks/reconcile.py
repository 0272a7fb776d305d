"""The SQL of call states (docs/reconcile.md): kept by `store`, read and moved by the reconciler.

`mark_final` runs inside the sink's store transaction, right after the calls merge: a call
whose newly stored events include its final record becomes `final` whatever its state was;
an `overdue` call that receives a newer intermediate event is `open` again (its deadline counts
from its last event). The reconciler's statements select by `(state, provider, last_event_at)`
ranges of the `calls_state` index, never by a scan of `calls`.

One reconciler at a time holds a lease row in `reconcile_state`, like the forwarders'
`forward_state`: a row works the same on SQLite and PostgreSQL, survives pooled connections
being recycled (a session advisory lock would vanish, or linger, with its connection), and
expires by itself when its holder dies.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from consumer.model import CallEvent
from consumer.reconcile.rules import State, is_final

if TYPE_CHECKING:
    from consumer.sinks.sql import Cursor, SqlSink

_CHUNK = 200


def mark_final(sink: SqlSink, cur: Cursor, new: Sequence[CallEvent], now: datetime) -> None:
    """Move the states of the calls that `new` (the events just inserted) touched.

    One statement per provider and chunk: the calls with a new final record become `final`,
    the others, if `overdue`, `open` again; rows in any other state are not written at all.
    """
    final: dict[str, set[str]] = {}
    touched: dict[str, set[str]] = {}
    for event in new:
        if event.call_id is None:
            continue
        touched.setdefault(event.provider.value, set()).add(event.call_id)
        if is_final(event):
            final.setdefault(event.provider.value, set()).add(event.call_id)
    stamp = sink._time(now)
    for provider, ids in touched.items():
        closed = final.get(provider, set())
        for chunk in _chunks(sorted(ids)):
            marks = ",".join("?" * len(chunk))
            finals = [call_id for call_id in chunk if call_id in closed]
            if not finals:
                cur.execute(
                    sink._sql(
                        f"UPDATE calls SET state = '{State.OPEN}' WHERE provider = ?"
                        f" AND call_id IN ({marks}) AND state = '{State.OVERDUE}'"
                    ),
                    [provider, *chunk],
                )
                continue
            is_closed = f"call_id IN ({','.join('?' * len(finals))})"
            cur.execute(
                sink._sql(
                    f"UPDATE calls SET"
                    f" state = CASE WHEN {is_closed} THEN '{State.FINAL}' ELSE '{State.OPEN}' END,"
                    f" final_at = CASE WHEN {is_closed} THEN ? ELSE final_at END"
                    f" WHERE provider = ? AND call_id IN ({marks}) AND (state = '{State.OVERDUE}'"
                    f" OR ({is_closed} AND state <> '{State.FINAL}'))"
                ),
                [*finals, *finals, stamp, provider, *chunk, *finals],
            )


@dataclass(frozen=True, slots=True)
class OwedCall:
    """A call without its final record, with what a query needs to find it."""

    provider: str
    call_id: str
    state: str
    last_event_kind: str
    last_event_at: datetime
    started_at: datetime | None
    caller: str | None
    callee: str | None
    refs: dict[str, str] = field(default_factory=dict)

    @property
    def earliest(self) -> datetime:
        """The earliest time known of the call (its day is the one Aliyun files it under)."""
        return min(t for t in (self.started_at, self.last_event_at) if t is not None)


_OWED_COLUMNS = (
    "provider, call_id, state, last_event_kind, last_event_at, started_at, caller, callee, refs"
)


class CallStates:
    """The reconciler's view of a sink's `calls` states."""

    def __init__(self, sink: SqlSink) -> None:
        self.sink = sink

    # -- the lease ---------------------------------------------------------------------------

    def claim(self, name: str, owner: str, now: float, lease: float) -> bool:
        """Take or renew the lease `name` until `now + lease`; False if another holder has it."""
        s = self.sink
        with s._write() as cur:
            cur.execute(
                s._sql("INSERT INTO reconcile_state (name) VALUES (?) ON CONFLICT DO NOTHING"),
                (name,),
            )
            cur.execute(
                s._sql(
                    "UPDATE reconcile_state SET lease_owner = ?, lease_until = ?"
                    " WHERE name = ? AND (lease_owner IS NULL OR lease_owner = ?"
                    " OR lease_until < ?) RETURNING name"
                ),
                (owner, now + lease, name, owner, now),
            )
            return bool(cur.fetchall())

    def release(self, name: str, owner: str, now: float) -> None:
        s = self.sink
        with s._write() as cur:
            cur.execute(
                s._sql(
                    "UPDATE reconcile_state SET lease_owner = NULL, lease_until = 0,"
                    " last_pass_at = ? WHERE name = ? AND lease_owner = ?"
                ),
                (now, name, owner),
            )

    # -- moving states -----------------------------------------------------------------------

    def mark_overdue(self, provider: str, cutoff: datetime) -> int:
        """Open calls whose last event is older than `cutoff` become overdue; how many."""
        return len(self._move(provider, State.OPEN, State.OVERDUE, cutoff))

    def mark_lost(self, provider: str, cutoff: datetime) -> list[str]:
        """Overdue calls whose last event is older than `cutoff` are lost; their call ids."""
        return sorted(self._move(provider, State.OVERDUE, State.LOST, cutoff))

    def _move(self, provider: str, old: State, new: State, cutoff: datetime) -> list[str]:
        """The calls of `provider` in state `old` with no event since `cutoff` go to `new`."""
        s = self.sink
        with s._write() as cur:
            cur.execute(
                s._sql(
                    f"UPDATE calls SET state = '{new}' WHERE state = '{old}'"
                    " AND provider = ? AND last_event_at < ? RETURNING call_id"
                ),
                (provider, s._time(cutoff)),
            )
            return [str(row[0]) for row in cur.fetchall()]

    # -- reading -----------------------------------------------------------------------------

    def overdue(self, provider: str | None = None, limit: int | None = None) -> list[OwedCall]:
        """The overdue calls (of one provider), oldest last event first."""
        s = self.sink
        where = f"state = '{State.OVERDUE}'"
        params: list[Any] = []
        if provider is not None:
            where += " AND provider = ?"
            params.append(provider)
        sql = f"SELECT {_OWED_COLUMNS} FROM calls WHERE {where} ORDER BY last_event_at"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with s._read() as cur:
            cur.execute(s._sql(sql), params)
            rows = cur.fetchall()
        return [self._owed(row) for row in rows]

    def past_deadline(self, cutoffs: Mapping[str, datetime]) -> list[OwedCall]:
        """Overdue calls, and open calls whose last event is older than their provider's cutoff
        (a pass has not marked them yet), oldest last event first."""
        s = self.sink
        rows: list[Any] = []
        with s._read() as cur:
            for provider, cutoff in cutoffs.items():
                cur.execute(
                    s._sql(
                        f"SELECT {_OWED_COLUMNS} FROM calls WHERE state = '{State.OVERDUE}'"
                        f" AND provider = ? UNION ALL SELECT {_OWED_COLUMNS} FROM calls"
                        f" WHERE state = '{State.OPEN}' AND provider = ? AND last_event_at < ?"
                    ),
                    (provider, provider, s._time(cutoff)),
                )
                rows.extend(cur.fetchall())
        owed = [self._owed(row) for row in rows]
        return sorted(owed, key=lambda call: (call.last_event_at, call.provider, call.call_id))

    def calls(self, call_ids: Sequence[str]) -> list[OwedCall]:
        """The named calls (any provider, any state), for `consumer reconcile --call`."""
        s = self.sink
        rows: list[Any] = []
        with s._read() as cur:
            for chunk in _chunks(sorted(set(call_ids))):
                marks = ",".join("?" * len(chunk))
                cur.execute(
                    s._sql(
                        f"SELECT {_OWED_COLUMNS} FROM calls WHERE call_id IN ({marks})"
                        " ORDER BY provider, call_id"
                    ),
                    chunk,
                )
                rows.extend(cur.fetchall())
        return [self._owed(row) for row in rows]

    def state(self, provider: str, call_id: str) -> str | None:
        s = self.sink
        with s._read() as cur:
            cur.execute(
                s._sql("SELECT state FROM calls WHERE provider = ? AND call_id = ?"),
                (provider, call_id),
            )
            rows = cur.fetchall()
        return str(rows[0][0]) if rows else None

    def counts(self) -> dict[tuple[str, str], int]:
        """(provider, state) → calls, for the open and overdue states (from the index alone)."""
        s = self.sink
        with s._read() as cur:
            cur.execute(
                s._sql(
                    "SELECT provider, state, count(*) FROM calls"
                    f" WHERE state IN ('{State.OPEN}', '{State.OVERDUE}') GROUP BY state, provider"
                )
            )
            rows = cur.fetchall()
        return {(str(row[0]), str(row[1])): int(row[2]) for row in rows}

    def _owed(self, row: Sequence[Any]) -> OwedCall:
        s = self.sink
        refs = s._from_json(row[8]) if row[8] is not None else {}
        return OwedCall(
            provider=str(row[0]),
            call_id=str(row[1]),
            state=str(row[2]),
            last_event_kind=str(row[3]),
            last_event_at=s._from_time(row[4]),
            started_at=s._from_time(row[5]) if row[5] is not None else None,
            caller=row[6],
            callee=row[7],
            refs={str(k): str(v) for k, v in refs.items()},
        )


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


__all__ = ["CallStates", "OwedCall", "mark_final"]
