"""HTTP push throughput and latency: requests/s, p50 and p99 at concurrency 1, 16 and 64, into
SQLite and PostgreSQL, side by side.

The receiver (`consumer.sources.http.PushServer`, the real pipeline and sink, logging at info to
/dev/null as a daemon would log) runs in this process; the load comes from a separate process: an
asyncio aiohttp client (this file with `--load`), and also wrk when it is installed
(`scripts/bench-prereqs.sh`). Every request is a distinct Huawei Voice Call status push (one new
event, one new call), answered only after its commit; SQLite runs with `synchronous=FULL`, so
every transaction is fsynced. Each row's figures follow a second of unmeasured warm-up at the
same concurrency (`warm_up`). The load generator shares the machine's CPUs with the receiver, so
each row also gives its CPU per request (`gen us`): the Python client spends about as much per
request as the receiver does, wrk a tenth of that.

    python bench/bench_http.py [--seconds 5] [--postgres URL]

PostgreSQL is the server at 127.0.0.1:5432, database `test` (override with --postgres or
CONSUMER_BENCH_POSTGRES), in a schema of its own that is dropped afterwards; when it cannot be
reached its rows say so and the SQLite rows still print.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONCURRENCY = (1, 16, 64)
UNGROUPED = "aiohttp-1"  # the aiohttp load with group commit off (max_batch=1), for comparison
PATH = "/push/huawei/voice"
WARM_UP_SECONDS = 1.0
POSTGRES = os.environ.get("CONSUMER_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")

WRK_SCRIPT = r"""
local counter = 0
local prefix = ""
function setup(thread)
  thread:set("tid", tostring(math.random(1, 1e9)))
end
function init(args)
  prefix = args[1] .. "-" .. tid
end
request = function()
  counter = counter + 1
  local body = '{"eventType":"disconnect","statusInfo":{"sessionId":"' .. prefix .. "-" ..
    counter .. '@bench","timestamp":"2019-01-24 03:04:49","caller":"+86138****0022",' ..
    '"called":"+86138****0021","stateCode":0,"stateDesc":"The user releases the call."}}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json;charset=UTF-8"}, body)
end
done = function(summary, latency, requests)
  io.write(string.format('WRK {"requests":%d,"seconds":%f,"p50":%f,"p99":%f,"errors":%d,' ..
    '"non2xx":%d}\n', summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3,
    latency:percentile(99) / 1e3, summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout, summary.errors.status))
end
"""


def body(prefix: str, n: int) -> bytes:
    info = {
        "sessionId": f"{prefix}-{n}@bench",
        "timestamp": "2019-01-24 03:04:49",
        "caller": "+86138****0022",
        "called": "+86138****0021",
        "stateCode": 0,
        "stateDesc": "The user releases the call.",
    }
    return json.dumps({"eventType": "disconnect", "statusInfo": info}).encode()


# -- the load generator (a separate process) ---------------------------------------------------


async def _load(url: str, concurrency: int, seconds: float, prefix: str) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    counter = iter(range(10**9))
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Content-Type": "application/json;charset=UTF-8"}
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                data = body(prefix, next(counter))
                started = time.perf_counter()
                try:
                    async with session.post(url, data=data, headers=headers) as reply:
                        await reply.read()
                        ok = reply.status == 200
                except aiohttp.ClientError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

        began, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    return {
        "cpu": cpu,  # the load's own CPU, without the interpreter's start-up
        "requests": len(latencies),
        "seconds": elapsed,
        "p50": _percentile(latencies, 50) * 1000,
        "p99": _percentile(latencies, 99) * 1000,
        "errors": errors,
    }


def _percentile(values: list[float], pct: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


# -- the receiver (this process) ------------------------------------------------------------------


@dataclass
class Row:
    sink: str
    generator: str
    concurrency: int
    requests: int = 0
    rate: float = 0.0
    p50: float = float("nan")
    p99: float = float("nan")
    errors: int = 0
    batch: float = float("nan")
    load_cpu: float = float("nan")
    """The load generator's CPU per request, in microseconds."""
    note: str = ""


async def _measure(sink_name: str, url: str, seconds: float, generators: list[str]) -> list[Row]:
    from consumer.config.model import HttpQueue, HttpSourceConfig, SinkConfig
    from consumer.pipeline.push import BATCH_MESSAGES
    from consumer.runtime.heap import freeze_startup
    from consumer.runtime.push import push_endpoint
    from consumer.sinks import open_sink
    from consumer.sources.http import PushServer

    sink = open_sink(SinkConfig(url=url))
    sink.migrate()
    rows: list[Row] = []
    try:
        for concurrency in CONCURRENCY:
            for generator in generators:
                name = f"bench-{sink_name}-{generator}-{concurrency}"
                config = HttpQueue(
                    name=name,
                    source="http",
                    format="huawei.voice_call",
                    http=HttpSourceConfig(path=PATH),
                )
                endpoint = push_endpoint(config, sink)
                if generator == UNGROUPED:  # the baseline: one transaction per request
                    endpoint.source.max_batch = 1
                server = PushServer([endpoint], listen="127.0.0.1:0")
                await server.start()
                freeze_startup()  # as the daemon's listener does once it is wired
                batches = BATCH_MESSAGES.labels(name)
                try:
                    await warm_up(generator, server.url + PATH, concurrency)
                    before = _histogram(batches)
                    load_cpu = _children_cpu()
                    result = await _run_generator(
                        generator, server.url + PATH, concurrency, seconds, uuid.uuid4().hex[:8]
                    )
                finally:
                    load_cpu = _children_cpu() - load_cpu  # wrk: its start-up is negligible
                    await server.close()
                row = Row(sink_name, generator, concurrency)
                if "error" in result:
                    row.note = result["error"]
                else:
                    row.requests = int(result["requests"])
                    row.rate = result["requests"] / result["seconds"]
                    row.p50, row.p99 = result["p50"], result["p99"]
                    row.errors = int(result["errors"])
                    after = _histogram(batches)
                    count, total = after[0] - before[0], after[1] - before[1]
                    row.batch = total / count if count else float("nan")
                    row.load_cpu = result.get("cpu", load_cpu) / max(row.requests, 1) * 1e6
                rows.append(row)
    finally:
        sink.close()
    return rows


async def warm_up(generator: str, url: str, concurrency: int) -> None:
    """A second of the same load, not measured: the figures are the receiver's steady state.

    The first requests of a fresh listener wait for its connections to be accepted and for the
    first commit's one-time costs (the sink's statements, first calls through each code path):
    at concurrency 64 those 64 requests took 60-100 ms, 0.5% of a 5 s run, which is half of
    what the p99 may exclude.
    """
    result = await _run_generator(generator, url, concurrency, WARM_UP_SECONDS, "warm-up")
    if "error" in result:
        raise RuntimeError(f"warm-up failed: {result['error']}")


async def _run_generator(
    generator: str, url: str, concurrency: int, seconds: float, prefix: str
) -> dict[str, Any]:
    if generator == "wrk":
        return await _run_wrk(url, concurrency, seconds, prefix)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).resolve()),
        "--load",
        url,
        "--concurrency",
        str(concurrency),
        "--seconds",
        str(seconds),
        "--prefix",
        prefix,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        return {"error": f"load generator exited {process.returncode}"}
    parsed: dict[str, Any] = json.loads(out)
    return parsed


async def _run_wrk(url: str, concurrency: int, seconds: float, prefix: str) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        return {"error": "wrk not installed"}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    try:
        process = await asyncio.create_subprocess_exec(
            wrk,
            f"-t{min(concurrency, 2)}",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            "-s",
            script.name,
            url,
            "--",
            prefix,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await process.communicate()
    finally:
        os.unlink(script.name)
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("WRK "):
            parsed: dict[str, Any] = json.loads(line[4:])
            parsed["errors"] = parsed["errors"] + parsed.pop("non2xx")
            return parsed
    return {"error": f"wrk printed no summary (exit {process.returncode})"}


def _children_cpu() -> float:
    """CPU seconds of the finished child processes (the load generators) so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _histogram(child: Any) -> tuple[float, float]:
    count = total = 0.0
    for metric in child.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                count = sample.value
            elif sample.name.endswith("_sum"):
                total = sample.value
    return count, total


@contextmanager
def _postgres_schema(base: str) -> Iterator[str | None]:
    """A sink URL in a fresh schema, or None (with the reason printed) if PostgreSQL is down."""
    import psycopg

    schema = f"http_bench_{os.getpid()}"
    try:
        admin = psycopg.connect(base, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        print(f"PostgreSQL at {base} unavailable: {exc}", file=sys.stderr)
        yield None
        return
    admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()


async def _bench(seconds: float, postgres: str) -> list[Row]:
    generators = ["aiohttp", UNGROUPED] + (["wrk"] if shutil.which("wrk") else [])
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        rows += await _measure(
            "sqlite", f"sqlite:///{Path(tmp) / 'events.db'}", seconds, generators
        )
    with _postgres_schema(postgres) as url:
        if url is None:
            rows += [
                Row("postgres", g, c, note="PostgreSQL unavailable")
                for c in CONCURRENCY
                for g in generators
            ]
        else:
            rows += await _measure("postgres", url, seconds, generators)
    if "wrk" not in generators:
        print("wrk not installed: aiohttp load generator only", file=sys.stderr)
    return rows


def _table(rows: list[Row]) -> str:
    """One line per load generator and concurrency, SQLite and PostgreSQL side by side."""
    sinks = ("sqlite", "postgres")
    cell = f"{'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'err':>4} {'batch':>5} {'gen us':>6}"
    width = len(cell)
    top = f"{'':<9} {'conc':>4} | " + " | ".join(f"{name:^{width}}" for name in sinks)
    header = f"{'load':<9} {'':>4} | " + " | ".join(cell for _ in sinks)
    lines = [top, header, "-" * len(header)]
    by_key = {(r.generator, r.concurrency, r.sink): r for r in rows}
    for generator in dict.fromkeys(r.generator for r in rows):
        for concurrency in CONCURRENCY:
            cells = []
            for name in sinks:
                row = by_key.get((generator, concurrency, name))
                if row is None or row.note:
                    note = row.note if row is not None else "not measured"
                    cells.append(f"{note[:width]:<{width}}")
                else:
                    cells.append(
                        f"{row.rate:>7.0f} {row.p50:>7.2f} {row.p99:>7.2f} {row.errors:>4} "
                        f"{row.batch:>5.1f} {row.load_cpu:>6.0f}"
                    )
            lines.append(f"{generator:<9} {concurrency:>4} | " + " | ".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--postgres", default=POSTGRES)
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", default="bench", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.load:
        result = asyncio.run(_load(args.load, args.concurrency, args.seconds, args.prefix))
        print(json.dumps(result))
        return 0

    from consumer.config.model import LogConfig
    from consumer.logs import configure_logging

    # The daemon's default: info, one JSON line per stored message (here into /dev/null).
    configure_logging(LogConfig(level="info", format="json"), stream=open(os.devnull, "w"))  # noqa: SIM115
    rows = asyncio.run(_bench(args.seconds, args.postgres))
    print(
        f"HTTP push: distinct Huawei status pushes, {args.seconds:g} s per row, "
        f"{os.cpu_count()} CPUs shared by receiver and load generator; "
        "batch = requests per sink transaction (group commit); "
        "gen us = the load generator's CPU per request; "
        f"{UNGROUPED} = the aiohttp load with group commit off"
    )
    print(_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
