"""Events per second into SQLite and PostgreSQL, one transaction per batch of 1 and of 16.

The events are realistic: five per call (initiated, ringing, answered, ended, final record), so
each batch also recomputes the calls rows it touches and writes one outbox row per event (one
forwarder configured). SQLite runs with synchronous=FULL: every commit is durable.

    python -m bench.bench_sinks [--seconds 2]

PostgreSQL is the server of CONSUMER_BENCH_POSTGRES (default
postgresql://postgres@127.0.0.1:5432/test), in a schema created for the run and dropped after it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta

import psycopg

from consumer.model import CallEvent, Normalized, event_id
from consumer.sinks.base import StoredEvent
from consumer.sinks.postgres import PostgresSink
from consumer.sinks.sql import SqlSink
from consumer.sinks.sqlite import SqliteSink

POSTGRES = os.environ.get("CONSUMER_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
BATCHES = (1, 16)
_KINDS = ("call.initiated", "call.ringing", "call.answered", "call.ended", "call.record")
_T0 = datetime(2024, 1, 1, tzinfo=UTC)


def events(run: str) -> Iterator[StoredEvent]:
    """An endless stream of calls, five events each, in arrival order."""
    call = 0
    while True:
        call_id = f"{run}-{call}"
        for step, kind in enumerate(_KINDS):
            at = _T0 + timedelta(seconds=call + step)
            event = CallEvent(
                event_id=event_id("bench", call_id, kind),
                provider="huawei_privacy",
                kind=kind,
                call_id=call_id,
                occurred_at=at,
                caller="+8613800000001",
                callee="+8613900000002",
                outcome="answered" if kind == "call.record" else None,
                duration_seconds=12 if kind == "call.record" else None,
                refs={"icid": call_id},
            )
            payload = {"sessionId": call_id, "eventType": kind, "timestamp": at.isoformat()}
            yield StoredEvent(Normalized(event, payload), "bench", f"m-{call_id}-{step}", at)
        call += 1


def measure(sink: SqlSink, batch: int, seconds: float) -> float:
    """Events per second stored for about `seconds`."""
    stream = events(uuid.uuid4().hex[:8])
    stored = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        sink.store([next(stream) for _ in range(batch)], [])
        stored += batch
    return stored / elapsed


@contextmanager
def sqlite_sink(forwarders: Sequence[str] = ("bench",)) -> Iterator[SqlSink]:
    """A sink on a throw-away SQLite file (also used by the other benches)."""
    with tempfile.TemporaryDirectory() as folder:
        sink = SqliteSink(os.path.join(folder, "bench.db"), forwarders=forwarders)
        try:
            yield sink
        finally:
            sink.close()


@contextmanager
def postgres_sink(forwarders: Sequence[str] = ("bench",), **pool: int) -> Iterator[SqlSink]:
    """A sink on a throw-away PostgreSQL schema, dropped afterwards (also used by the other
    benches); `pool` sizes the connection pool."""
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        url = f"{POSTGRES}?options=-csearch_path%3D{schema}"
        sink = PostgresSink(url, forwarders=forwarders, **pool)
        try:
            yield sink
        finally:
            sink.close()
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    args = parser.parse_args(argv if argv is not None else [])
    print(f"sink throughput, events/s ({args.seconds:g} s per figure; 5 events per call)")
    print(f"{'backend':<10}" + "".join(f"{f'batch={b}':>12}" for b in BATCHES))
    openers: tuple[tuple[str, Callable[[], AbstractContextManager[SqlSink]]], ...] = (
        ("sqlite", sqlite_sink),
        ("postgres", postgres_sink),
    )
    for name, opener in openers:
        figures: list[str] = []
        for batch in BATCHES:
            try:
                with opener() as sink:
                    sink.migrate()
                    figures.append(f"{measure(sink, batch, args.seconds):>12,.0f}")
            except Exception as exc:
                figures.append(f"{'n/a':>12}")
                print(f"  {name} batch={batch}: {type(exc).__name__}: {exc}")
        print(f"{name:<10}" + "".join(figures), flush=True)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
