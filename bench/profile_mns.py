"""Where the MNS path spends its CPU per message: receive, XML decoding, normalize, store, ack.

One thread does what the worker's threads do for each batch of 16: `MnsSource.receive`,
`Pipeline.handle` (parse, one SQLite transaction, the log lines, `settled`) and
`MnsSource.ack`, against the fake MNS of bench_mns in a child process. The total is measured
without a profiler (this process's CPU time per message); the split comes from a second run
under cProfile timed by CPU time, whose shares are applied to that total (cProfile slows the
function-call-heavy parts more, so the split is approximate; the total is not).

    python -m bench.profile_mns [--messages 4000] [--top 0]

Run it against another checkout of the package with PYTHONPATH=that/checkout to compare.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_mns import QUEUE, Broker, _source, bodies
from consumer.config.model import LogConfig, SinkConfig
from consumer.formats import get_format
from consumer.logs import configure_logging
from consumer.pipeline import Pipeline
from consumer.sinks import open_sink

# (bucket, file suffix, function): the cumulative time of the first match of each is the
# bucket's; later buckets are subtracted from the earlier ones they nest in (see `split`).
_POINTS = (
    ("receive (SDK request, HTTP)", "sources/mns.py", "receive"),
    ("  of which XML decoding", "mns_xml_handler.py", "decode"),
    ("  of which XML decoding", "sources/mns_receive.py", "decode_messages"),
    ("normalize (format parse)", "pipeline/normalize.py", "prepare"),
    ("store (SQLite transaction)", "sinks/sql.py", "store"),
    ("  of which calls merge", "sinks/sql_calls.py", "_recompute_calls"),
    ("log lines", "structlog/_native.py", "meth"),
    ("ack (batch delete)", "sources/mns.py", "ack"),
)


def run(endpoint: str, queue: str, count: int, workdir: Path) -> None:
    sink = open_sink(SinkConfig(url=f"sqlite:///{workdir / f'{queue}.db'}"))
    sink.migrate()
    source = _source(endpoint, queue)
    pipeline = Pipeline(queue=queue, format=get_format("aliyun.voice_report"), sink=sink)
    done = 0
    try:
        while done < count:
            messages = source.receive(16, 1)
            started = time.monotonic()
            results = pipeline.handle(messages)
            if not all(result.committed for result in results):
                raise RuntimeError(f"not committed: {[r.error for r in results]}")
            source.ack(messages)
            pipeline.settled(results, started)
            done += len(messages)
    finally:
        source.close()
        sink.close()


def split(stats: pstats.Stats) -> dict[str, float]:
    """Cumulative seconds per bucket, nested buckets taken out of their parents."""
    table: dict[tuple[str, int, str], Any] = stats.stats  # type: ignore[attr-defined]
    found: dict[str, float] = {}
    for bucket, suffix, function in _POINTS:
        for (filename, _line, name), (_cc, _nc, _tt, cumulative, _callers) in table.items():
            if name == function and filename.endswith(suffix):
                found[bucket] = found.get(bucket, 0.0) + cumulative
    total = sum(entry[2] for entry in table.values())  # all own time: the profiled CPU
    buckets = dict(found)
    if "  of which XML decoding" in buckets:
        buckets["receive (SDK request, HTTP)"] -= buckets["  of which XML decoding"]
    if "  of which calls merge" in buckets:
        buckets["store (SQLite transaction)"] -= buckets["  of which calls merge"]
    buckets["everything else (worker, results, GC)"] = total - sum(buckets.values())
    return buckets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--top", type=int, default=0, help="also print the top N functions")
    args = parser.parse_args(argv)
    configure_logging(LogConfig(level="info", format="json"), stream=open(os.devnull, "w"))  # noqa: SIM115
    broker = Broker()
    try:
        with tempfile.TemporaryDirectory(prefix="profile-mns-") as tmp:
            workdir = Path(tmp)
            broker.load(f"{QUEUE}-warm", bodies("w", 64))
            run(broker.endpoint, f"{QUEUE}-warm", 64, workdir)
            broker.load(f"{QUEUE}-plain", bodies("p", args.messages))
            cpu = time.process_time()
            run(broker.endpoint, f"{QUEUE}-plain", args.messages, workdir)
            per_message = (time.process_time() - cpu) / args.messages * 1e6
            broker.load(f"{QUEUE}-profiled", bodies("q", args.messages))
            profiler = cProfile.Profile(time.process_time)  # CPU, not waiting
            profiler.runcall(run, broker.endpoint, f"{QUEUE}-profiled", args.messages, workdir)
    finally:
        broker.close()
    stats = pstats.Stats(profiler)
    buckets = split(stats)
    profiled = sum(buckets.values())
    print(f"MNS path, one thread, CPU per message: {per_message:.0f} us (without the profiler)")
    for bucket, seconds in buckets.items():
        share = seconds / profiled
        print(f"  {bucket:<40} {share * per_message:>6.0f} us  {share:>6.1%}")
    if args.top:
        stats.sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
