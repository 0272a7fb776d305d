"""The listener's memory under senders that send most of a large body and then stall.

`consumer run` runs as a child process with one push queue on SQLite. Each round opens
`--senders` connections at once, each sending a `--body`-byte request but its last byte, then
holding the connection; the listener's resident memory is read while they hold (peak) and again
once they have hung up and the listener shows no body bytes in flight (after). Printed per
round, then the median and spread over the rounds, with the number of 503 answers.

    python -m bench.bench_push_memory [--senders 300] [--body 1048576] [--rounds 3]

Target: the peak stays below the idle size + the in-flight cap (64 MiB) + 48 MiB whatever the
number of senders, and "after" returns to within 24 MiB of idle (heap fragmentation varies from
round to round, it does not accumulate). Measured (2 shared cores, 300 senders of 1 MiB, 7
rounds): idle 55 MB, peak +80 MB median (70 to 84), after +12 MB median (6 to 18), 236 of 300
answered 503 each round. Before the cap, 120 senders of 1 MiB took the listener from 55 MB to
177 MB, a second round to 209 MB, and the memory stayed there (no 503).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import statistics
import tempfile
import time
from pathlib import Path

from bench.bench_daemon import memory_mb, processes
from consumer.runtime.demo import daemon, free_port
from consumer.sources.http import DEFAULT_BODY_BYTES_IN_FLIGHT

PATH = "/push/vms"


def gauge(port: int, name: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def stall(
    port: int, body: int, statuses: list[int], writers: list[asyncio.StreamWriter]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writers.append(writer)
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"Content-Length: {body}\r\n\r\n"
    ).encode()
    writer.write(head + b"[" + b" " * (body - 2))
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    with contextlib.suppress(TimeoutError, ConnectionError):
        line = await asyncio.wait_for(reader.readline(), 3.0)
        if line:
            statuses.append(int(line.split()[1]))


def round_(port: int, pid: int, senders: int, body: int) -> tuple[float, float, int]:
    async def run() -> tuple[float, int]:
        statuses: list[int] = []
        writers: list[asyncio.StreamWriter] = []
        await asyncio.gather(*(stall(port, body, statuses, writers) for _ in range(senders)))
        peak = memory_mb(pid)[0]
        for writer in writers:
            writer.transport.abort()
        return peak, statuses.count(503)

    peak, refused = asyncio.run(run())
    deadline = time.monotonic() + 30
    while gauge(port, "consumer_push_body_bytes_in_flight") and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    return peak, memory_mb(pid)[0], refused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, default=300)
    parser.add_argument("--body", type=int, default=1_048_576)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        port = free_port()
        config = workdir / "consumer.yaml"
        config.write_text(
            f"""
log: {{level: info, format: json}}
sink: {{url: "sqlite:///{workdir}/events.db"}}
http: {{listen: "127.0.0.1:{port}"}}
queues:
  - name: vms
    source: http
    format: aliyun.voice_report
    http: {{path: {PATH}}}
"""
        )
        with daemon(config, workdir) as child:
            listener = next(
                p for p in processes(child.pid, workdir / "daemon.log") if p.name == "listener"
            )
            idle = memory_mb(listener.pid)[0]
            print(
                f"listener idle {idle:.1f} MB; {args.senders} senders x {args.body} bytes; "
                f"cap {DEFAULT_BODY_BYTES_IN_FLIGHT / 1_048_576:.0f} MiB in flight"
            )
            peaks, afters = [], []
            for n in range(args.rounds):
                peak, after, refused = round_(port, listener.pid, args.senders, args.body)
                peaks.append(peak - idle)
                afters.append(after - idle)
                print(
                    f"round {n + 1}: peak +{peak - idle:.1f} MB, after +{after - idle:.1f} MB, "
                    f"{refused} answered 503"
                )
            print(
                f"peak over idle: median {statistics.median(peaks):.1f} MB "
                f"(min {min(peaks):.1f}, max {max(peaks):.1f}); after: median "
                f"{statistics.median(afters):.1f} MB (min {min(afters):.1f}, max {max(afters):.1f})"
            )


if __name__ == "__main__":
    main()
