"""Aliyun VMS HTTP batch push: is every one of 64 concurrent pushes answered within 700 ms?

Aliyun waits 700 ms for the answer and retries otherwise
(https://help.aliyun.com/document_detail/112503.html). Each round fires a burst of 64 concurrent
pushes, each a JSON array of `--records` VoiceReport records (the voicereport-6 page example with
distinct call ids), at the real receiver (`PushServer`, pipeline, sink, logging at info to
/dev/null), into SQLite (`synchronous=FULL`) and PostgreSQL, and at the strongest plain loop: an
aiohttp handler that answers the same body at once and stores nothing. The rounds interleave the
targets; the table gives the median over rounds of each burst's p50, p99 and slowest answer,
with the spread (min–max over rounds) of the slowest, and how many answers took over 700 ms.

    python bench/bench_aliyun_push.py [--rounds 7] [--records 1] [--postgres URL]

The load comes from a separate process (this file with `--burst`), as Aliyun's would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

CONCURRENCY = 64
DEADLINE_MS = 700.0
PATH = "/push/aliyun/voice-report"
POSTGRES = os.environ.get("CONSUMER_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
SAMPLE = (
    Path(__file__).parents[1]
    / "consumer"
    / "testing"
    / "samples"
    / "aliyun.voice_report.vms_push.json"
)


def batch(prefix: str, n: int, records: int) -> bytes:
    [record] = json.loads(SAMPLE.read_bytes())
    items = [record | {"call_id": f"{prefix}^{n}-{r}"} for r in range(records)]
    return json.dumps(items, ensure_ascii=False).encode("utf-8")


# -- the load generator (a separate process) ---------------------------------------------------


async def _burst(url: str, records: int, prefix: str) -> dict[str, Any]:
    import aiohttp

    bodies = [batch(prefix, n, records) for n in range(CONCURRENCY)]
    headers = {"Content-Type": "application/json;charset=UTF-8"}
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def push(body: bytes) -> tuple[float, bool]:
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as reply:
                answer = await reply.read()
                ok = reply.status == 200 and json.loads(answer).get("code") == 0
            return (time.perf_counter() - started) * 1000, ok

        results = await asyncio.gather(*(push(body) for body in bodies))
    return {"ms": [ms for ms, _ in results], "failed": sum(not ok for _, ok in results)}


# -- the targets (this process) -----------------------------------------------------------------


@asynccontextmanager
async def _receiver(url: str) -> AsyncIterator[str]:
    from consumer.config.model import HttpQueue, HttpSourceConfig, SinkConfig
    from consumer.runtime.push import push_endpoint
    from consumer.sinks import open_sink
    from consumer.sources.http import PushServer

    sink = open_sink(SinkConfig(url=url))
    sink.migrate()
    queue = HttpQueue(
        name="bench-aliyun-push",
        source="http",
        format="aliyun.voice_report",
        http=HttpSourceConfig(path=PATH),
    )
    server = PushServer([push_endpoint(queue, sink)], listen="127.0.0.1:0")
    await server.start()
    try:
        yield server.url + PATH
    finally:
        await server.close()
        sink.close()


@asynccontextmanager
async def _plain_loop() -> AsyncIterator[str]:
    """The floor: aiohttp answering the documented body at once, storing nothing."""
    from aiohttp import web

    from consumer.formats.aliyun_vms import PUSH_ANSWER

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=PUSH_ANSWER, content_type="application/json")

    app = web.Application()
    app.router.add_post(PATH, answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}{PATH}"
    finally:
        await runner.cleanup()


async def _fire(url: str, records: int) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).resolve()),
        "--burst",
        url,
        "--records",
        str(records),
        "--prefix",
        uuid.uuid4().hex[:12],
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"load generator exited {process.returncode}")
    parsed: dict[str, Any] = json.loads(out)
    return parsed


def _quantile(values: list[float], pct: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


async def _bench(rounds: int, records: int, postgres: str) -> dict[str, list[dict[str, Any]]]:
    from bench.bench_http import _postgres_schema

    targets: dict[str, Callable[[], AbstractAsyncContextManager[str]]] = {}
    results: dict[str, list[dict[str, Any]]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-aliyun-") as tmp,
        _postgres_schema(postgres) as pg_url,
    ):
        targets["plain loop"] = _plain_loop
        targets["sqlite"] = lambda: _receiver(f"sqlite:///{Path(tmp) / 'events.db'}")
        if pg_url is not None:
            targets["postgres"] = lambda: _receiver(pg_url)
        for _ in range(rounds):
            for name, target in targets.items():  # interleaved: every target each round
                async with target() as url:
                    results.setdefault(name, []).append(await _fire(url, records))
    return results


def _table(results: dict[str, list[dict[str, Any]]]) -> str:
    header = (
        f"{'target':<10} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'max spread':>13} "
        f"{'>700ms':>7} {'failed':>6}"
    )
    lines = [header, "-" * len(header)]
    for name, bursts in results.items():
        p50 = statistics.median(_quantile(b["ms"], 50) for b in bursts)
        p99 = statistics.median(_quantile(b["ms"], 99) for b in bursts)
        slowest = [max(b["ms"]) for b in bursts]
        late = sum(ms > DEADLINE_MS for b in bursts for ms in b["ms"])
        failed = sum(b["failed"] for b in bursts)
        spread = f"{min(slowest):.0f}–{max(slowest):.0f}"
        lines.append(
            f"{name:<10} {p50:>7.1f} {p99:>7.1f} {statistics.median(slowest):>7.1f} "
            f"{spread:>13} {late:>7} {failed:>6}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--records", type=int, default=1, help="records per push (array length)")
    parser.add_argument("--postgres", default=POSTGRES)
    parser.add_argument("--burst", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", default="bench", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.burst:
        print(json.dumps(asyncio.run(_burst(args.burst, args.records, args.prefix))))
        return 0

    from consumer.config.model import LogConfig
    from consumer.logs import configure_logging

    configure_logging(LogConfig(level="info", format="json"), stream=open(os.devnull, "w"))  # noqa: SIM115
    results = asyncio.run(_bench(args.rounds, args.records, args.postgres))
    print(
        f"Aliyun HTTP batch push: bursts of {CONCURRENCY} concurrent pushes of {args.records} "
        f"VoiceReport record(s), {args.rounds} interleaved rounds, {os.cpu_count()} CPUs shared "
        f"by receiver and load generator; Aliyun's deadline is {DEADLINE_MS:.0f} ms"
    )
    print(_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
