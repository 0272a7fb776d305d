"""The daemon's footprint: each process's resident memory under load, and its CPU when idle.

`consumer run` runs as a child process (as under systemd) with four queues: two MNS queues read
with the Alicom token flow, one RocketMQ queue and one HTTP push queue, on the bundled emulators
(which run in this process: their CPU is not counted). First `--rate` distinct receipts per
second go to each queue for `--load` seconds; every process's resident memory (VmRSS, and PSS)
is sampled twice a second, and the last sample of the load (steady state) and the peak are
printed. Then, once every queue is drained and `--settle` seconds passed, the CPU time of all the
daemon's processes over `--idle` seconds is printed as a share of one core.

    python -m bench.bench_daemon [--load 15] [--rate 100] [--idle 20] [--sqlite]

Targets: under 100 MB resident per worker process under load; under 1% of a core idle.
The sink is PostgreSQL (a schema of its own in `--postgres`, dropped afterwards) unless
`--sqlite` is given; workers on SQLite do not load psycopg and are a little smaller.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from consumer.runtime.demo import daemon, free_port
from consumer.sources import client_home

POSTGRES = os.environ.get("CONSUMER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
QUEUES = {"vms-report": "VoiceReport", "vms-call": "VoiceCallReport"}
PREFIX = "Alicom-Queue-1234567890123456-"
TOPIC, GROUP = "OUTBOUND_BOT_TOPIC", "GID_bench"
AK, SK = "LTAIbench", "bench-secret"
PUSH_PATH = "/push/vms"
FORMAT = "aliyun.voice_report"
MEMORY_TARGET_MB = 100.0
IDLE_TARGET_PERCENT = 1.0
TICKS = os.sysconf("SC_CLK_TCK")


def receipt(run: str, queue: int, n: int) -> bytes:
    """A distinct final VoiceReport (any format may ride on any source)."""
    record = {
        "call_id": f"{run}{queue}{n:08d}^{n:08d}",
        "out_id": f"order-{n}",
        "originate_time": "2024-05-01 10:00:00",
        "start_time": "2024-05-01 10:00:06",
        "end_time": "2024-05-01 10:00:36",
        "caller": "0571000****",
        "callee": "1380000****",
        "duration": "30",
        "status_code": "200000",
        "status_msg": "执行完成",
    }
    return json.dumps(record, ensure_ascii=False).encode("utf-8")


def config_text(sink_url: str, port: int, mns: Any, alicom: Any, rocketmq: Any) -> str:
    lines = [
        "log: {level: info, format: json}",
        f'sink: {{url: "{sink_url}"}}',
        f'http: {{listen: "127.0.0.1:{port}"}}',
        "queues:",
    ]
    for name, message_type in QUEUES.items():
        lines += [
            f"  - name: {name}",
            "    source: mns",
            f"    format: {FORMAT}",
            "    mns:",
            f"      endpoint: {mns.endpoint}",
            f"      queue: {PREFIX}{message_type}",
            f"      auth: {{message_type: {message_type}, access_key_id: {AK}, "
            f"access_key_secret: {SK}, token_endpoint: {alicom.endpoint}}}",
        ]
    lines += [
        "  - name: bot",
        "    source: rocketmq",
        f"    format: {FORMAT}",
        f'    rocketmq: {{endpoints: "{rocketmq.endpoint}", topic: {TOPIC}, group: {GROUP}}}',
        "  - name: push",
        "    source: http",
        f"    format: {FORMAT}",
        f"    http: {{path: {PUSH_PATH}}}",
    ]
    return "\n".join(lines) + "\n"


@dataclass
class Process:
    name: str
    pid: int
    rss: list[float] = field(default_factory=list)
    pss: list[float] = field(default_factory=list)


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) in MB, from /proc."""
    rss = pss = 0.0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("Pss:"):
            pss = int(line.split()[1]) / 1024
    return rss, pss


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def processes(supervisor: int, log_path: Path) -> list[Process]:
    """The supervisor, and the newest pid of every worker its log says it started."""
    workers: dict[str, int] = {}
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "worker started" and "pid" in entry:
            workers[entry["worker"]] = int(entry["pid"])
    return [Process("supervisor", supervisor)] + [
        Process(name, pid) for name, pid in sorted(workers.items())
    ]


class Feeder:
    """Puts `rate` receipts a second on every queue from one thread per source."""

    def __init__(self, rate: float, mns: Any, rocketmq: Any, port: int) -> None:
        self.run = uuid.uuid4().hex[:6]
        self.rate = rate
        self.stop = threading.Event()
        self.sent: dict[str, int] = {}
        self.failed = 0
        self._threads = [
            threading.Thread(target=self._pace, args=(name, put), daemon=True)
            for name, put in self._targets(mns, rocketmq, port).items()
        ]

    def _targets(self, mns: Any, rocketmq: Any, port: int) -> dict[str, Callable[[int], None]]:
        targets: dict[str, Callable[[int], None]] = {}
        for index, (name, message_type) in enumerate(QUEUES.items()):
            queue = PREFIX + message_type
            targets[name] = lambda n, q=queue, i=index: mns.put_message(  # type: ignore[misc]
                q, receipt(self.run, i, n)
            )
        targets["bot"] = lambda n: rocketmq.publish(TOPIC, receipt(self.run, 7, n))
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

        def push(n: int) -> None:
            connection.request(
                "POST", PUSH_PATH, receipt(self.run, 8, n), {"Content-Type": "application/json"}
            )
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                self.failed += 1

        targets["push"] = push
        return targets

    def _pace(self, name: str, put: Callable[[int], None]) -> None:
        started = time.monotonic()
        n = 0
        while not self.stop.is_set():
            due = started + n / self.rate
            if (delay := due - time.monotonic()) > 0:
                self.stop.wait(delay)
                continue
            put(n)
            n += 1
            self.sent[name] = n

    def __enter__(self) -> Feeder:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join()


def measure(args: argparse.Namespace, workdir: Path, sink_url: str) -> int:
    from consumer.testing.fake_alicom import FakeAlicomServer
    from consumer.testing.fake_mns import FakeMnsServer
    from consumer.testing.fake_rocketmq import FakeRocketMQ, ProxyLimits

    with (
        FakeMnsServer() as mns,
        FakeAlicomServer(mns, accounts={AK: SK}) as alicom,
        FakeRocketMQ(limits=ProxyLimits.relaxed(), max_workers=32) as rocketmq,
    ):
        for message_type in QUEUES.values():
            mns.create_queue(PREFIX + message_type)
        rocketmq.create_topic(TOPIC)
        port = free_port()
        config = workdir / "consumer.yaml"
        config.write_text(config_text(sink_url, port, mns, alicom, rocketmq))
        with daemon(config, workdir) as child:
            procs = processes(child.pid, workdir / "daemon.log")

            def sample() -> None:
                for proc in procs:
                    rss, pss = memory_mb(proc.pid)
                    proc.rss.append(rss)
                    proc.pss.append(pss)

            print(
                f"load: {args.rate:g} receipts/s on each of 4 queues for {args.load:g} s "
                f"({len(procs)} processes, sink {sink_url.split(':', maxsplit=1)[0]})",
                flush=True,
            )
            with Feeder(args.rate, mns, rocketmq, port) as feeder:
                deadline = time.monotonic() + args.load
                while time.monotonic() < deadline:
                    sample()
                    time.sleep(0.5)
                sample()
            drained = _drain(mns, rocketmq, feeder)
            time.sleep(args.settle)
            before = {proc.pid: cpu_seconds(proc.pid) for proc in procs}
            started = time.monotonic()
            time.sleep(args.idle)
            elapsed = time.monotonic() - started
            idle = {proc.pid: cpu_seconds(proc.pid) - before[proc.pid] for proc in procs}
            for proc in procs:  # idle memory, for comparison
                proc.rss.append(memory_mb(proc.pid)[0])
    _report(procs, idle, elapsed, feeder, drained)
    return 0


def _drain(mns: Any, rocketmq: Any, feeder: Feeder) -> float:
    """Seconds until every pull queue is empty after the load stopped (pushes are synchronous)."""
    started = time.monotonic()
    while time.monotonic() - started < 120:
        left = sum(mns.stats(PREFIX + t).total for t in QUEUES.values())
        left += feeder.sent.get("bot", 0) - rocketmq.stats(TOPIC, GROUP).acked
        if left <= 0:
            break
        time.sleep(0.1)
    return time.monotonic() - started


def _report(
    procs: list[Process], idle: dict[int, float], elapsed: float, feeder: Feeder, drained: float
) -> None:
    sent = ", ".join(f"{name} {count}" for name, count in sorted(feeder.sent.items()))
    print(
        f"sent: {sent}; push answers other than 200: {feeder.failed}; "
        f"queues drained {drained:.1f} s after the load"
    )
    print(
        f"{'process':<14} {'RSS load':>9} {'RSS peak':>9} {'PSS load':>9} {'RSS idle':>9}"
        f" {'idle CPU':>9}"
    )
    for proc in procs:
        share = idle[proc.pid] / elapsed * 100
        print(
            f"{proc.name:<14} {proc.rss[-2]:>6.1f} MB {max(proc.rss):>6.1f} MB "
            f"{proc.pss[-1]:>6.1f} MB {proc.rss[-1]:>6.1f} MB {share:>8.2f}%"
        )
    workers = [proc for proc in procs if proc.name != "supervisor"]
    worst = max(workers, key=lambda proc: max(proc.rss))
    total = sum(idle.values()) / elapsed * 100
    verdict = "met" if max(worst.rss) < MEMORY_TARGET_MB else "MISSED"
    print(
        f"largest worker: {worst.name} {max(worst.rss):.1f} MB peak "
        f"(target < {MEMORY_TARGET_MB:g} MB: {verdict})"
    )
    print(
        f"idle CPU, all {len(procs)} processes: {total:.2f}% of a core over {elapsed:.0f} s "
        f"(target < {IDLE_TARGET_PERCENT:g}%: {'met' if total < IDLE_TARGET_PERCENT else 'MISSED'})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", type=float, default=15.0, help="seconds of load")
    parser.add_argument("--rate", type=float, default=100.0, help="receipts/s per queue")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before idle")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle measured")
    parser.add_argument("--postgres", default=POSTGRES, help="the database for the schema")
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file as the sink")
    args = parser.parse_args(argv)
    # The RocketMQ client's import writes $HOME/logs: into the throw-away folder.
    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as tmp, client_home.home(tmp):
        workdir = Path(tmp)
        if args.sqlite:
            return measure(args, workdir, f"sqlite:///{workdir}/events.db")
        schema = f"bench_daemon_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.postgres, autocommit=True) as admin:
            admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            return measure(args, workdir, f"{args.postgres}?options=-csearch_path%3D{schema}")
        finally:
            with psycopg.connect(args.postgres, autocommit=True) as admin:
                admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    sys.exit(main())
