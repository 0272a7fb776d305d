"""CPU per event of the `calls` merge for calls of 1, 64 and 512 events, one event per batch.

The worst case for a merge that re-reads a call's events: a call that receives its events one
by one (real-time ASR sentences, one message each), each in a batch of its own. Every figure
stores the same number of events, in calls of the given size (so 512 one-event calls against
one 512-event call), and measures this process's CPU time per stored event (the database
server's CPU is not included; SQLite runs in this process). Rounds are interleaved, and the
ratio to the 1-event calls is computed per round; medians and the spread (min-max) are shown.

    python -m bench.bench_merge [--events 1024] [--rounds 3] [--backend sqlite,postgres]

Target: a 512-event call costs at most 1.5x the CPU per event of a 1-event call.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta

from bench.bench_sinks import postgres_sink, sqlite_sink
from consumer.model import CallEvent, Normalized, event_id
from consumer.sinks.base import StoredEvent
from consumer.sinks.sql import SqlSink

SIZES = (1, 64, 512)
_T0 = datetime(2024, 1, 1, tzinfo=UTC)


def call_events(run: str, size: int, total: int) -> Iterator[StoredEvent]:
    """`total` events in calls of `size`: a call.initiated, then ASR sentences, in order."""
    for number in range(total):
        call, step = divmod(number, size)
        call_id = f"{run}-{call}"
        kind = "call.initiated" if step == 0 else "asr.sentence"
        at = _T0 + timedelta(seconds=call * size + step)
        event = CallEvent(
            event_id=event_id("bench.merge", call_id, step),
            provider="aliyun_vms",
            kind=kind,
            call_id=call_id,
            occurred_at=at,
            caller="0571000****" if step == 0 else None,
            callee="1380000****" if step == 0 else None,
            refs={"out_id": f"order-{call}"},
            extras={"sentence": f"第{step}句"} if step else {},
        )
        payload = {"call_id": call_id, "step": step, "text": f"第{step}句"}
        yield StoredEvent(Normalized(event, payload), "bench", f"m-{call_id}-{step}", at)


def measure(sink: SqlSink, size: int, total: int) -> float:
    """CPU microseconds per event, each event stored in a transaction of its own."""
    events = list(call_events(uuid.uuid4().hex[:8], size, total))
    started = time.process_time()
    for stored in events:
        sink.store([stored], [])
    return (time.process_time() - started) / total * 1e6


def _spread(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1024, help="per figure and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", default="sqlite,postgres")
    args = parser.parse_args(argv)
    if args.events % max(SIZES):
        parser.error(f"--events must be a multiple of {max(SIZES)}")
    openers: dict[str, Callable[[], AbstractContextManager[SqlSink]]] = {
        "sqlite": sqlite_sink,
        "postgres": postgres_sink,
    }
    print(
        f"calls merge: CPU us per event (this process), {args.events} events per figure, "
        f"one event per transaction; median [min-max] of {args.rounds} interleaved rounds"
    )
    failed = 0
    for backend in args.backend.split(","):
        cpu: dict[int, list[float]] = {size: [] for size in SIZES}
        try:
            with openers[backend]() as sink:
                sink.migrate()
                measure(sink, 8, 64)  # warm up: connections, statements, the file
                for round_ in range(args.rounds):
                    shift = round_ % len(SIZES)
                    for size in SIZES[shift:] + SIZES[:shift]:
                        cpu[size].append(measure(sink, size, args.events))
        except Exception as exc:
            print(f"  {backend}: {type(exc).__name__}: {exc}")
            failed += 1
            continue
        print(f"-- {backend}")
        for size in SIZES:
            ratios = [c / one for c, one in zip(cpu[size], cpu[1], strict=True)]
            print(
                f"  {size:>4} events/call {_spread(cpu[size], '>6.0f')} us/event"
                f"   x{_spread(ratios, '.2f')} of a 1-event call"
            )
    print("  target: 512 events/call at most x1.50")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
