"""One reconciler pass over 100,000 open calls of which 1% are overdue, on SQLite and PostgreSQL.

A pass (no query API configured, so no network: what is measured is the database work) takes the
lease, marks the overdue calls and the lost ones per provider, and reads the open and overdue
counts. It must find them through the `calls_state (state, provider, last_event_at)` index, not
by scanning `calls`: the EXPLAIN of every statement is printed and checked, and the same pass
with the index disabled (SQLite `NOT INDEXED`, PostgreSQL `enable_*scan = off`) is the baseline.
Rounds interleave the two; figures are the median and the spread (min-max) in milliseconds.

    python -m bench.bench_reconcile [--calls 100000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta

import structlog
from prometheus_client import CollectorRegistry

from bench import bench_sinks
from consumer.config.model import ReconcileConfig
from consumer.model import Provider
from consumer.reconcile.metrics import ReconcileMetrics
from consumer.reconcile.runner import Reconciler
from consumer.sinks.reconcile import CallStates
from consumer.sinks.sql import SqlSink

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PROVIDERS = [p.value for p in Provider]


def fill(sink: SqlSink, calls: int, final: int) -> None:
    """`calls` open calls, providers in turn; every hundredth call of a provider silent for 12 h
    (past every default deadline, within give_up_after), the others for one minute. Then
    `final` calls that have their final record (most of a real table), silent for 10 days."""
    recent, old = sink._time(NOW - timedelta(minutes=1)), sink._time(NOW - timedelta(hours=12))
    done = sink._time(NOW - timedelta(days=10))
    cases = " ".join(f"WHEN {i} THEN '{p}'" for i, p in enumerate(PROVIDERS))
    mod = "%" if sink.dialect == "sqlite" else "%%"  # psycopg's placeholders take a single %
    select = (
        f"SELECT CASE i {mod} 5 {cases} END, 'call-' || i, 'call.ringing',"
        f" CASE WHEN i >= {calls} THEN ? WHEN (i / 5) {mod} 100 = 0 THEN ? ELSE ? END, 1, ?,"
        f" CASE WHEN i >= {calls} THEN 'final' ELSE 'open' END"
    )
    columns = "provider, call_id, last_event_kind, last_event_at, event_count, updated_at, state"
    last = calls + final - 1
    with sink._write() as cur:
        if sink.dialect == "sqlite":
            cur.execute(
                f"INSERT INTO calls ({columns}) WITH RECURSIVE n(i) AS"
                f" (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {last}) {select} FROM n",
                (done, old, recent, recent),
            )
        else:
            cur.execute(
                sink._sql(
                    f"INSERT INTO calls ({columns}) {select}"
                    f" FROM generate_series(0, {last}) AS n(i)"
                ),
                (done, old, recent, recent),
            )
    with sink._write() as cur:
        cur.execute("ANALYZE")


def reopen(sink: SqlSink) -> None:
    with sink._write() as cur:
        cur.execute("UPDATE calls SET state = 'open' WHERE state = 'overdue'")


@contextmanager
def index_disabled(sink: SqlSink) -> Iterator[None]:
    """The pass's statements without the calls_state index (the plain-scan baseline)."""
    if sink.dialect == "sqlite":
        original = sink._sql

        def not_indexed(sql: str) -> object:
            text = str(original(sql))
            for verb in ("UPDATE calls SET", "FROM calls WHERE"):
                text = text.replace(verb, verb.replace("calls", "calls NOT INDEXED"))
            return text

        sink._sql = not_indexed  # type: ignore[method-assign]
        try:
            yield
        finally:
            del sink._sql
        return
    settings = ("enable_indexscan", "enable_bitmapscan", "enable_indexonlyscan")
    pool = sink._pool  # type: ignore[attr-defined]
    with pool.connection() as conn:  # the pool's only connection with these settings
        for name in settings:
            conn.execute(f"SET {name} = off")
        conn.commit()
    # Every connection of the pool must have it: the bench pool has one (max_size=1).
    try:
        yield
    finally:
        with pool.connection() as conn:
            for name in settings:
                conn.execute(f"RESET {name}")
            conn.commit()


def plans(sink: SqlSink) -> list[tuple[str, str]]:
    """(statement, plan) of the pass's statements on calls."""
    cutoff = sink._time(NOW - timedelta(minutes=15))
    statements = [
        (
            "mark overdue",
            "UPDATE calls SET state = 'overdue' WHERE state = 'open'"
            " AND provider = ? AND last_event_at < ?",
            ("aliyun_vms", cutoff),
        ),
        (
            "list overdue",
            "SELECT call_id FROM calls WHERE state = 'overdue' AND provider = ?"
            " ORDER BY last_event_at",
            ("aliyun_vms",),
        ),
        (
            "counts",
            "SELECT provider, state, count(*) FROM calls"
            " WHERE state IN ('open', 'overdue') GROUP BY state, provider",
            (),
        ),
    ]
    found: list[tuple[str, str]] = []
    prefix = "EXPLAIN QUERY PLAN " if sink.dialect == "sqlite" else "EXPLAIN "
    for name, sql, params in statements:
        with sink._read() as cur:
            cur.execute(sink._sql(prefix + sql), params)
            rows = cur.fetchall()
        text = "\n".join(str(row[-1]) for row in rows)
        found.append((name, text))
    return found


def uses_index(plan: str) -> bool:
    scans = ("SCAN calls\n", "Seq Scan on calls")
    return "calls_state" in plan and not any(s in plan + "\n" for s in scans)


def one_pass(sink: SqlSink) -> float:
    worker = Reconciler(
        ReconcileConfig(),
        sink,
        {},
        metrics=ReconcileMetrics(CollectorRegistry()),
        clock=NOW.timestamp,
    )
    started = time.perf_counter()
    worker.run_pass()
    elapsed = time.perf_counter() - started
    overdue = sum(n for (_, state), n in CallStates(sink).counts().items() if state == "overdue")
    reopen(sink)
    return elapsed * 1000 if overdue else float("nan")


def sqlite_sink() -> AbstractContextManager[SqlSink]:
    return bench_sinks.sqlite_sink(forwarders=())


def postgres_sink() -> AbstractContextManager[SqlSink]:
    return bench_sinks.postgres_sink(forwarders=(), min_size=1, max_size=1)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):8.1f} ({min(values):.1f}-{max(values):.1f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=100_000, help="open calls")
    parser.add_argument("--final", type=int, default=400_000, help="calls already final")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv if argv is not None else [])
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(
        f"one reconciler pass, ms: {args.calls:,} open calls (1% overdue) among"
        f" {args.calls + args.final:,}, no query API;"
        f" median (min-max) of {args.rounds} interleaved rounds"
    )
    openers: tuple[tuple[str, Callable[[], AbstractContextManager[SqlSink]]], ...] = (
        ("sqlite", sqlite_sink),
        ("postgres", postgres_sink),
    )
    failed = False
    for name, opener in openers:
        with opener() as sink:
            sink.migrate()
            fill(sink, args.calls, args.final)
            for statement, plan in plans(sink):
                ok = uses_index(plan)
                failed |= not ok and statement != "counts"  # counts reads every open call
                shown = plan.replace("\n", " | ")
                print(f"  {name} {statement}: {'index' if ok else 'SCAN'}: {shown}")
            indexed: list[float] = []
            scanned: list[float] = []
            for _ in range(args.rounds):
                indexed.append(one_pass(sink))
                with index_disabled(sink):
                    scanned.append(one_pass(sink))
            print(f"{name:<10} pass with the index {spread(indexed)}", flush=True)
            print(f"{name:<10} pass scanning calls {spread(scanned)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
