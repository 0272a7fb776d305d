"""Where the HTTP push path spends its CPU per request, thread by thread.

The receiver of bench_http (`PushServer`, the real pipeline, SQLite, logging at info to
/dev/null) takes distinct Huawei status pushes at concurrency 64 from a load generator in another
process (bench_http's aiohttp client, or wrk with `--load wrk`). Printed per request: the CPU of
the event-loop thread (aiohttp, routing, the answer), of the queue's commit thread (parse, rows,
calls merge, SQLite), of the whole receiver process, and of the load generator, with the
throughput, p50 and p99 of that run, and the sink transactions that took over 20 ms with the
CPU the slowest of them used (far less than its wall time: it waited for the disk). Thread CPU
comes from each thread's own clock, so other load on the machine slows the run but hardly moves
these figures.

With `--profile`, a second run under cProfile (each thread timed by its own CPU clock) prints
each thread's top functions; cProfile slows function-call-heavy code most, so read it for
shares, and the first run for the totals.

    python -m bench.profile_http [--seconds 5] [--load aiohttp|wrk] [--profile] [--top 30]

Run it against another checkout of the package with PYTHONPATH=that/checkout to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.bench_http import PATH, _children_cpu, _histogram, _run_generator, warm_up
from consumer.config.model import HttpQueue, HttpSourceConfig, LogConfig, SinkConfig
from consumer.logs import configure_logging
from consumer.pipeline import push
from consumer.runtime.heap import freeze_startup
from consumer.runtime.push import push_endpoint
from consumer.sinks import open_sink
from consumer.sources.http import PushServer

CONCURRENCY = 64
SLOW_STORE = 0.02
"""A sink transaction slower than this (seconds) is counted, with the CPU it used."""


class StoreTimes:
    """The sink transactions that took longer than `SLOW_STORE`, as (wall, CPU) seconds.

    One whose wall time is many times its thread's CPU time waited: for the disk (the commit's
    fsync) or for the GIL. Every request in flight waits with it, so a handful of them in a
    run decide its p99.
    """

    def __init__(self, sink: Any) -> None:
        self.slow: list[tuple[float, float]] = []
        store = sink.store

        def timed(*args: Any, **kwargs: Any) -> Any:
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return store(*args, **kwargs)
            finally:
                wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
                if wall > SLOW_STORE:
                    self.slow.append((wall, cpu))

        sink.store = timed


async def measure(
    workdir: Path, seconds: float, load: str, profiles: dict[str, cProfile.Profile] | None
) -> dict[str, Any]:
    """One run at concurrency 64: CPU per request per thread, throughput and latency."""
    sink = open_sink(SinkConfig(url=f"sqlite:///{workdir / f'{uuid.uuid4().hex}.db'}"))
    sink.migrate()
    stores = StoreTimes(sink)
    queue = f"profile-{uuid.uuid4().hex[:8]}"
    config = HttpQueue(
        name=queue, source="http", format="huawei.voice_call", http=HttpSourceConfig(path=PATH)
    )
    endpoint = push_endpoint(config, sink)
    commit_thread: threading.Thread = endpoint.commits._thread  # type: ignore[attr-defined]
    if profiles is not None:
        # The commit thread is already waiting in its receive: profile it from the next call.
        profiles["commit"] = commit_profile = cProfile.Profile(time.thread_time)
        worker = endpoint.commits._worker  # type: ignore[attr-defined]
        run_once = worker.run_once

        def profiled_run_once(*args: Any, **kwargs: Any) -> Any:
            return commit_profile.runcall(run_once, *args, **kwargs)

        worker.run_once = profiled_run_once
    server = PushServer([endpoint], listen="127.0.0.1:0")
    await server.start()
    freeze_startup()  # as the daemon's listener does once it is wired
    await warm_up(load, server.url + PATH, CONCURRENCY)
    batches = push.BATCH_MESSAGES.labels(queue)
    committed = _histogram(batches)
    stores.slow.clear()
    assert commit_thread.ident is not None
    commit_clock = time.pthread_getcpuclockid(commit_thread.ident)
    before = (time.thread_time(), time.clock_gettime(commit_clock), time.process_time())
    children = _children_cpu()
    if profiles is not None:
        profiles["loop"] = loop_profile = cProfile.Profile(time.thread_time)
        loop_profile.enable()
    try:
        result = await _run_generator(
            load, server.url + PATH, CONCURRENCY, seconds, uuid.uuid4().hex[:8]
        )
    finally:
        if profiles is not None:
            loop_profile.disable()
    after = (time.thread_time(), time.clock_gettime(commit_clock), time.process_time())
    generator = result.get("cpu", _children_cpu() - children)
    count, total = (now - then for now, then in zip(_histogram(batches), committed, strict=True))
    await server.close()
    sink.close()
    if "error" in result:
        raise RuntimeError(result["error"])
    n = max(int(result["requests"]), 1)
    return {
        "requests/s": result["requests"] / result["seconds"],
        "p50 ms": result["p50"],
        "p99 ms": result["p99"],
        "loop us": (after[0] - before[0]) / n * 1e6,
        "commit us": (after[1] - before[1]) / n * 1e6,
        "process us": (after[2] - before[2]) / n * 1e6,
        "generator us": generator / n * 1e6,
        "batch": total / count if count else float("nan"),
        "errors": result["errors"],
        f"stores over {SLOW_STORE * 1000:g} ms": len(stores.slow),
        "slowest store ms": max((wall for wall, _ in stores.slow), default=0.0) * 1000,
        "its CPU ms": max(stores.slow, default=(0.0, 0.0))[1] * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--load", choices=("aiohttp", "wrk"), default="aiohttp")
    parser.add_argument("--profile", action="store_true", help="a second run under cProfile")
    parser.add_argument("--top", type=int, default=30, help="functions per thread (--profile)")
    args = parser.parse_args(argv)
    configure_logging(LogConfig(level="info", format="json"), stream=open(os.devnull, "w"))  # noqa: SIM115
    with tempfile.TemporaryDirectory(prefix="profile-http-") as tmp:
        figures = asyncio.run(measure(Path(tmp), args.seconds, args.load, None))
        print(
            f"HTTP push, SQLite, concurrency {CONCURRENCY}, {args.load} load, "
            f"{args.seconds:g} s (CPU per request without the profiler):"
        )
        print("  " + ", ".join(f"{name} {value:.1f}" for name, value in figures.items()))
        if args.profile:
            profiles: dict[str, cProfile.Profile] = {}
            asyncio.run(measure(Path(tmp), args.seconds, args.load, profiles))
            for name, profile in profiles.items():
                print(f"\n== {name} thread, by own CPU time")
                pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
