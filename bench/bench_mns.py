"""MNS consumption side by side: the strongest plain SDK loop, Aliyun's demo, the pipeline.

All variants consume distinct VoiceReport receipts (base64 text, as Alicom enqueues them) from
the same fake MNS, which runs in a child process (the broker is elsewhere, and its CPU use does
not share this process's GIL), on the same machine, in one run:

- raw:      the strongest loop a user could write with aliyun-mns-sdk and no work per message:
            `batch_receive_message(16)` on one thread and `batch_delete_message` of the previous
            batch on a second thread with its own connection, so receive and delete overlap;
- demo:     the pattern of Aliyun's published Python receive demo: `receive_message`, the SDK's
            base64 decoding, `json.loads`, `delete_message`, one message at a time;
- source:   `MnsSource.receive(16)` + `ack`, sequential, no work: what mns.py costs;
- pipeline: `MnsSource` + `Worker` + the real format + the SQLite sink (`synchronous=FULL`, one
            fsynced transaction per batch of 16), logging at info as the daemon does (into
            /dev/null).

    python -m bench.bench_mns [--messages 3000] [--rounds 5] [--latency 0,0.002]

Rounds are interleaved (each round runs every variant once, in a rotating order), and the
figures are medians over the rounds with their spread (min-max); the ratios are computed per
round and then summarized, so a slow moment of the shared machine hits both sides of a ratio.
CPU is this process's CPU time per message (all its threads; the broker is not included).
Targets: pipeline >= 0.8x raw at 2 ms, >= 0.6x at 0 ms, >= 10x demo at 2 ms.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from queue import Queue
from typing import Any

from mns.account import Account
from pydantic import SecretStr

from consumer.config.model import AccessKeyAuth, LogConfig, MnsConfig, SinkConfig
from consumer.formats import get_format
from consumer.logs import configure_logging
from consumer.pipeline import Pipeline, Worker
from consumer.sinks import open_sink
from consumer.sources.mns import MnsSource
from consumer.testing.fake_mns import FakeMnsServer

QUEUE = "Alicom-Queue-1234567890-VoiceReport"
AK, SK = "LTAIbench", "bench-secret"
WAIT_SECONDS = 1
_T0 = datetime(2024, 5, 1, 10, 0, 0)


def bodies(run: str, count: int) -> list[str]:
    """Distinct final VoiceReports, base64-encoded as Alicom enqueues them."""
    out = []
    for n in range(count):
        start = _T0 + timedelta(seconds=n)
        record = {
            "call_id": f"{run}{n:09d}^{n:09d}",
            "out_id": f"order-{n}",
            "originate_time": f"{start:%Y-%m-%d %H:%M:%S}",
            "ring_time": f"{start + timedelta(seconds=3):%Y-%m-%d %H:%M:%S}",
            "start_time": f"{start + timedelta(seconds=6):%Y-%m-%d %H:%M:%S}",
            "end_time": f"{start + timedelta(seconds=66):%Y-%m-%d %H:%M:%S}",
            "caller": "0571000****",
            "callee": "1380000****",
            "duration": "60",
            "status_code": "200000",
            "hangup_direction": "用户",
            "status_msg": "执行完成",
            "voice_type": "voice",
            "toll_type": "LOCAL",
        }
        text = json.dumps(record, ensure_ascii=False).encode()
        out.append(base64.b64encode(text).decode())
    return out


# -- the broker, in a child process ----------------------------------------------------------


def _serve(conn: Connection) -> None:
    with FakeMnsServer() as mns:
        mns.add_credentials(AK, SK)
        conn.send(mns.endpoint)
        while True:
            command, *args = conn.recv()
            if command == "stop":
                break
            if command == "load":
                queue, texts = args
                mns.create_queue(queue, visibility_timeout=60)
                for text in texts:
                    mns.put_message(queue, text)
                conn.send(mns.stats(queue).total)
            elif command == "stats":
                conn.send(mns.stats(args[0]).total)
            elif command == "latency":
                mns.set_faults(response_delay=args[0])
                conn.send(args[0])


class Broker:
    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child,), daemon=True)
        self._process.start()
        self.endpoint: str = self._conn.recv()

    def load(self, queue: str, texts: list[str]) -> None:
        self._conn.send(("load", queue, texts))
        loaded = self._conn.recv()
        if loaded != len(texts):
            raise RuntimeError(f"{queue} holds {loaded} messages, expected {len(texts)}")

    def left(self, queue: str) -> int:
        self._conn.send(("stats", queue))
        left: int = self._conn.recv()
        return left

    def set_latency(self, seconds: float) -> None:
        """Hold every answer this long: an emulated network round trip."""
        self._conn.send(("latency", seconds))
        self._conn.recv()

    def close(self) -> None:
        self._conn.send(("stop",))
        self._process.join(timeout=10)


# -- the three consumers ----------------------------------------------------------------------


def _account(endpoint: str) -> Any:
    return Account(endpoint, AK, SK)


def raw(endpoint: str, queue: str, count: int) -> None:
    """Batch receive 16 on this thread, batch delete of the previous batch on another."""
    receiver, deleter = _account(endpoint), _account(endpoint)
    receiving, deleting = receiver.get_queue(queue), deleter.get_queue(queue)
    receiving.set_encoding(False)
    handles: Queue[list[str] | None] = Queue(maxsize=2)
    failed: list[BaseException] = []

    def delete() -> None:
        try:
            while (batch := handles.get()) is not None:
                deleting.batch_delete_message(batch)
        except BaseException as exc:
            failed.append(exc)
            raise

    thread = threading.Thread(target=delete, name="raw-delete")
    thread.start()
    done = 0
    try:
        while done < count and not failed:
            messages = receiving.batch_receive_message(16, WAIT_SECONDS)
            handles.put([m.receipt_handle for m in messages])
            done += len(messages)
    finally:
        handles.put(None)
        thread.join()
        receiver.mns_client.close_connection()
        deleter.mns_client.close_connection()
    if failed:
        raise RuntimeError(f"raw delete failed: {failed[0]!r}")


def demo(endpoint: str, queue: str, count: int) -> None:
    """Aliyun's receive demo: one message, SDK base64 decoding, json.loads, delete, repeat."""
    account = _account(endpoint)
    q = account.get_queue(queue)
    done = 0
    while done < count:
        message = q.receive_message(WAIT_SECONDS)
        json.loads(message.message_body)
        q.delete_message(message.receipt_handle)
        done += 1
    account.mns_client.close_connection()


def _source(endpoint: str, queue: str) -> MnsSource:
    return MnsSource(
        MnsConfig(
            endpoint=endpoint,
            queue=queue,
            auth=AccessKeyAuth(
                mode="access_key", access_key_id=AK, access_key_secret=SecretStr(SK)
            ),
            wait_seconds=WAIT_SECONDS,
        )
    )


def source_only(endpoint: str, queue: str, count: int) -> None:
    """`MnsSource.receive(16)` + `ack`, no work: what mns.py adds to the raw SDK loop."""
    source = _source(endpoint, queue)
    done = 0
    while done < count:
        messages = source.receive(16, WAIT_SECONDS)
        source.ack(messages)
        done += len(messages)
    source.close()


def pipeline(endpoint: str, queue: str, count: int, workdir: Path) -> None:
    """MnsSource + Worker + aliyun.voice_report + SQLite, one round at a time."""
    sink = open_sink(SinkConfig(url=f"sqlite:///{workdir / f'{queue}.db'}"))
    sink.migrate()
    source = _source(endpoint, queue)
    worker = Worker(
        source,
        Pipeline(queue=queue, format=get_format("aliyun.voice_report"), sink=sink),
        batch_size=16,
        wait=WAIT_SECONDS,
    )
    done = 0
    try:
        while done < count:
            results = worker.run_once()
            if not all(result.committed for result in results):
                raise RuntimeError(f"not committed: {[r.error for r in results]}")
            done += len(results)
    finally:
        source.close()
        sink.close()


def _timed(run: Callable[[], None]) -> tuple[float, float]:
    """Wall and CPU seconds (this process, every thread) of one run."""
    cpu, started = time.process_time(), time.perf_counter()
    run()
    return time.perf_counter() - started, time.process_time() - cpu


def _spread(values: list[float], fmt: str) -> str:
    """The median and the range of the rounds: `median [min-max]`."""
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000, help="per variant and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--latency",
        default="0,0.002",
        help="comma-separated seconds the fake holds every answer (emulated round trip)",
    )
    args = parser.parse_args(argv)
    latencies = [float(value) for value in args.latency.split(",")]
    # The demo moves one message per two round trips: a tenth of the messages measures it.
    counts = {"raw": args.messages, "demo": max(args.messages // 10, 50)}

    # The daemon's default: info, one JSON line per stored message (here into /dev/null).
    configure_logging(LogConfig(level="info", format="json"), stream=open(os.devnull, "w"))  # noqa: SIM115

    broker = Broker()
    rates: dict[tuple[float, str], list[float]] = {}
    cpu: dict[tuple[float, str], list[float]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-mns-") as tmp:
            workdir = Path(tmp)
            variants: dict[str, Callable[[str, int], None]] = {
                "raw": lambda queue, n: raw(broker.endpoint, queue, n),
                "demo": lambda queue, n: demo(broker.endpoint, queue, n),
                "source": lambda queue, n: source_only(broker.endpoint, queue, n),
                "pipeline": lambda queue, n: pipeline(broker.endpoint, queue, n, workdir),
            }
            # Warm up (imports, first connections, the SQLite file) outside the timings.
            broker.set_latency(0)
            for name, variant in variants.items():
                broker.load(f"warm-{name}", bodies(f"w{len(name)}", 32))
                variant(f"warm-{name}", 32)
            names = list(variants)
            for latency in latencies:
                broker.set_latency(latency)
                for round_ in range(args.rounds):
                    # Rotate the order, so no variant always runs first after a pause.
                    shift = round_ % len(names)
                    for name in names[shift:] + names[:shift]:
                        count = counts.get(name, args.messages)
                        queue = f"{QUEUE}-{name}-{int(latency * 1e6)}-{round_}"
                        broker.load(queue, bodies(f"{round_}{len(name)}", count))
                        run = variants[name]
                        wall, seconds = _timed(lambda r=run, q=queue, n=count: r(q, n))  # type: ignore[misc]
                        if broker.left(queue):
                            raise RuntimeError(f"{name} left messages on {queue}")
                        rates.setdefault((latency, name), []).append(count / wall)
                        cpu.setdefault((latency, name), []).append(seconds / count * 1e6)
    finally:
        broker.close()

    print(
        f"MNS consume: {args.messages} distinct VoiceReport receipts per variant and round "
        f"(demo {counts['demo']}), fake MNS in a child process, {os.cpu_count()} CPUs shared; "
        f"median [min-max] of {args.rounds} interleaved rounds; latency = emulated round trip "
        "added to every MNS answer"
    )
    for latency in latencies:
        print(f"-- {latency * 1000:g} ms round trip")
        print(f"  {'variant':<9} {'msgs/s':>24} {'CPU us/msg':>22}")
        for name in names:
            key = (latency, name)
            print(
                f"  {name:<9} {_spread(rates[key], '>7.0f'):>24} {_spread(cpu[key], '>5.0f'):>22}"
            )
        pipe = rates[(latency, "pipeline")]
        for base, target in (("raw", 0.8 if latency else 0.6), ("demo", 10.0)):
            ratios = [p / b for p, b in zip(pipe, rates[(latency, base)], strict=True)]
            print(
                f"  pipeline/{base:<5} {_spread(ratios, '.2f')}x per round (target >= {target:g}x)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
