"""Recording archive throughput against a plain download-and-write loop, and the archiver's RSS
while it streams a 200 MB file.

The files come from `consumer.testing.recording_server` running in a separate process (so the
server's work does not share this process's GIL). Each round archives the same batch of files
(default 16 x 4 MiB) with 4 downloads at a time, three ways, interleaved round by round:

- `archiver`: the real thing: recordings rows in SQLite (synchronous=FULL), leased, streamed
  through aiohttp into the file store (temporary file, fsync, rename, fsync of the directory),
  the row marked archived with its sha256;
- `plain`: aiohttp, 4 tasks, each GET streamed to a file; no hashing, no fsync, no database
  (the strongest loop: what the archive costs on top of moving the bytes);
- `plain+fsync`: the same, fsyncing each file (the durability the archive promises).

RSS is the process's VmRSS, sampled every 20 ms while the archiver streams one file; a 20 MB
file is the baseline, so growth with the file's size shows as a difference.

    python -m bench.bench_archive [--rounds 3] [--files 16] [--size 4194304] [--big 209715200]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CONCURRENCY = 4


# -- the file server (a separate process) -------------------------------------------------------


def _serve(files: int, size: int, big: int) -> None:
    from consumer.testing.recording_server import File, RecordingServer

    server = RecordingServer().start()
    for i in range(files):
        server.add(f"/f/{i}.mp3", File(size=size))
    server.add("/big.mp3", File(size=big))
    server.add("/base.mp3", File(size=20 * 1024 * 1024))
    print(server.address[1], flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    server.stop()


def _start_server(files: int, size: int, big: int) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "bench.bench_archive", "--serve"]
    command += ["--files", str(files), "--size", str(size), "--big", str(big)]
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=_root()
    )
    assert process.stdout is not None
    port = int(process.stdout.readline())
    return process, f"http://127.0.0.1:{port}"


def _root() -> str:
    return str(Path(__file__).resolve().parent.parent)


# -- the three contenders -----------------------------------------------------------------------


def _archive(urls: list[str], workdir: Path, max_bytes: int = 1 << 40) -> float:
    """Seconds for the archiver to archive `urls` from rows already committed."""
    from datetime import UTC, datetime

    from consumer.archive.store import FileStore
    from consumer.archive.worker import Archiver
    from consumer.config.model import RecordingsConfig
    from consumer.model import CallEvent, Normalized
    from consumer.sinks.base import StoredEvent
    from consumer.sinks.recordings import RecordingTable
    from consumer.sinks.sqlite import SqliteSink

    sink = SqliteSink(workdir / "events.db")
    sink.migrate()
    now = datetime.now(UTC)
    events = [
        StoredEvent(
            Normalized(
                CallEvent(
                    event_id=f"e{i}",
                    provider="aliyun_vms",
                    kind="recording.ready",
                    call_id=f"c{i}",
                    occurred_at=now,
                    recording_url=url,
                ),
                {},
            ),
            "bench",
            f"m{i}",
            now,
        )
        for i, url in enumerate(urls)
    ]
    sink.store(events, [])
    config = RecordingsConfig(
        store=(workdir / "store").as_uri(),
        allow_hosts=["127.0.0.1"],
        concurrency=CONCURRENCY,
        max_bytes=max_bytes,
    )
    store = FileStore(workdir / "store")
    store.prepare()
    table = RecordingTable(sink)

    async def run() -> float:
        archiver = Archiver(config, table, store, poll_seconds=0.02)
        started = time.perf_counter()
        task = asyncio.create_task(archiver.run())
        while await asyncio.to_thread(table.rows, "pending"):
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        archiver.stop()
        await task
        return elapsed

    try:
        elapsed = asyncio.run(run())
        bad = [row for row in table.rows() if row.status != "archived"]
        if bad:
            raise RuntimeError(f"{len(bad)} not archived: {bad[0].last_error}")
        return elapsed
    finally:
        sink.close()


def _plain(urls: list[str], workdir: Path, fsync: bool) -> float:
    import aiohttp

    async def run() -> float:
        queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
        for item in enumerate(urls):
            queue.put_nowait(item)
        async with aiohttp.ClientSession() as session:

            async def worker() -> None:
                while not queue.empty():
                    i, url = queue.get_nowait()
                    async with session.get(url) as response:
                        response.raise_for_status()
                        with open(workdir / f"{i}.mp3", "wb") as file:
                            async for chunk in response.content.iter_chunked(65536):
                                file.write(chunk)
                            if fsync:
                                file.flush()
                                os.fsync(file.fileno())

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            return time.perf_counter() - started

    return asyncio.run(run())


# -- RSS ----------------------------------------------------------------------------------------


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _peak_rss_while(action: Callable[[], Any]) -> tuple[int, int]:
    """(RSS before, peak RSS while `action` runs), KiB."""
    before = _rss_kib()
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.02):
            peak = max(peak, _rss_kib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        action()
    finally:
        done.set()
        sampler.join()
    return before, max(peak, _rss_kib())


# -- main ---------------------------------------------------------------------------------------


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):8.1f}  [{min(values):.1f} .. {max(values):.1f}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--size", type=int, default=4 * 1024 * 1024)
    parser.add_argument("--big", type=int, default=200 * 1024 * 1024)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv if argv is not None else [])
    if args.serve:
        _serve(args.files, args.size, args.big)
        return 0
    import structlog

    # One log line per archived file would be the bench's own overhead: warnings only.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    server, base = _start_server(args.files, args.size, args.big)
    urls = [f"{base}/f/{i}.mp3" for i in range(args.files)]
    total_mb = args.files * args.size / 1e6
    contenders: dict[str, Callable[[Path], float]] = {
        "archiver": lambda d: _archive(urls, d),
        "plain": lambda d: _plain(urls, d, fsync=False),
        "plain+fsync": lambda d: _plain(urls, d, fsync=True),
    }
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    try:
        _plain(urls[:2], Path(tempfile.mkdtemp(prefix="bench-archive-")), fsync=False)  # warm
        for _ in range(args.rounds):
            for name, run in contenders.items():  # interleaved: each round runs all three
                with tempfile.TemporaryDirectory(prefix="bench-archive-") as workdir:
                    seconds[name].append(run(Path(workdir)))
        print(
            f"archive throughput: {args.files} files x {args.size / 1e6:.1f} MB, "
            f"{CONCURRENCY} concurrent, {args.rounds} interleaved rounds; "
            "median [min .. max]"
        )
        print(f"{'':<13}{'MB/s':>8}{'':>18}{'files/s':>10}")
        for name, values in seconds.items():
            mbps = [total_mb / s for s in values]
            fps = [args.files / s for s in values]
            print(f"{name:<13}{_spread(mbps)}  {_spread(fps)}")
        big = f"{args.big / 2**20:.0f} MiB"
        for size_name, path in (("20 MiB", "/base.mp3"), (big, "/big.mp3")):
            with tempfile.TemporaryDirectory(prefix="bench-archive-") as workdir:
                before, peak = _peak_rss_while(
                    lambda w=workdir, p=path: _archive([base + p], Path(w))  # type: ignore[misc]
                )
            print(
                f"archiver RSS streaming {size_name}: {before / 1024:.1f} MiB before, "
                f"peak {peak / 1024:.1f} MiB (+{(peak - before) / 1024:.1f} MiB)"
            )
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
