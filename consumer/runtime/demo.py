"""`consumer demo`: the whole daemon on local emulators, in a few seconds.

It starts the bundled emulators (`consumer.testing`: MNS with the Alicom token endpoint, and a
RocketMQ 5 proxy), loads the sample messages shipped in `consumer/testing/samples/demo/` the way
each provider delivers them (MNS bodies base64-encoded as Alicom sends them, read with the
token flow; Outbound Bot events on a RocketMQ topic; Huawei and 7moor events POSTed to the
listener), runs the real daemon (`consumer run` as a child process on a generated
configuration, told apart from systemd only by the NOTIFY_SOCKET this command binds), waits
until every message is stored and acknowledged, stops it with SIGTERM and prints the `calls`
table of the temporary SQLite file, with a legend.

When the RocketMQ 4.x binding and librocketmq are installed (`consumer.sources.remoting`), the
Outbound Bot events also go through a local 4.x name server and broker (`fake_remoting`) on a
`protocol: remoting` queue; without them the demo says so and runs the rest.

Samples named `*.invalid.*` are loaded too: they end in `dead_letters`, which the summary shows.

The demo samples tell one call per provider, with complete (fictitious) numbers and ids that
agree across the call's messages, so each call visibly merges into one row from several events
of several formats and sources; the provider documents' own examples (with their masked ids)
stay in `consumer/testing/samples/` for the format tests.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from consumer.cli import Subparsers
    from consumer.testing.fake_alicom import FakeAlicomServer
    from consumer.testing.fake_mns import FakeMnsServer
    from consumer.testing.fake_remoting import FakeRemoting
    from consumer.testing.fake_rocketmq import FakeRocketMQ

ACCESS_KEY_ID = "LTAIdemo"
ACCESS_KEY_SECRET = "demo-secret"
MNS_PREFIX = "Alicom-Queue-1234567890123456-"
MESSAGE_TYPES = {
    "aliyun.voice_report": "VoiceReport",
    "aliyun.voice_call_report": "VoiceCallReport",
    "aliyun.voice_record_report": "VoiceRecordReport",
    "aliyun.voice_asr_report": "VoiceRTASRReport",
}
TOPIC = "OUTBOUND_BOT_TOPIC"
GROUP = "GID_call_consumer"
TOPIC_4X = "OUTBOUND_BOT_TOPIC_4X"
PUSH_PATHS = {
    "huawei.voice_call": "/push/huawei/voice",
    "huawei.privacy_number": "/push/huawei/privacy",
    "moor7.event": "/push/7moor",
}
STORE_TIMEOUT = 60.0
READY_TIMEOUT = 60.0
DRAIN_SECONDS = 5.0
COLUMNS = (
    ("provider", "provider", 20),
    ("outcome", "outcome", 14),
    ("caller", "caller", 16),
    ("callee", "callee", 16),
    ("started_at", "started (UTC)", 19),
    ("duration_seconds", "talk s", 6),
    ("event_count", "events", 6),
    ("last_event_kind", "last event", 16),
    ("call_id", "call_id", 80),  # last, and wide enough: an id is shown whole
)
LEGEND = """\
One row per call: the call's id as its provider gives it, merged from all of its events in
whatever order they arrived ("events"). Aliyun VMS: status reports, the CDR, the recording and
two ASR sentences, from four MNS queues read with the Alicom token flow; Outbound Bot: five
events on a RocketMQ topic; Huawei Voice Call, Huawei Private Number and 7moor: status events
and a CDR pushed over HTTP. The numbers are fictitious and stored as sent (log lines mask them);
the broken 7moor body is kept in dead_letters with its raw bytes."""


class DemoError(Exception):
    """Why the demo could not finish; printed, exit status 1."""


@dataclass(frozen=True)
class Sample:
    name: str
    format: str
    body: bytes


@dataclass
class Loaded:
    """What was put where, to know when everything has been stored."""

    mns_queues: list[str] = field(default_factory=list)
    mns: int = 0
    rocketmq: int = 0
    remoting: int = 0
    push: int = 0


def add_demo(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the daemon on local emulators with the sample messages; print the calls",
        description="Start the bundled MNS (with the Alicom token flow) and RocketMQ emulators, "
        "load the sample messages of every provider, run the daemon into a temporary SQLite "
        "file until everything is stored, and print the resulting calls table.",
    )
    parser.set_defaults(handler=demo)


def demo(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="consumer-demo-"))
    try:
        return run_demo(workdir, sys.stdout)
    except DemoError as exc:
        print(f"consumer demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_demo(workdir: Path, out: Any) -> int:
    """The demo in `workdir` (kept by the caller); prints the table to `out`."""
    samples = load_samples()
    # The RocketMQ client's import writes $HOME/logs: the emulator imports it too.
    home = os.environ.get("HOME")
    os.environ["HOME"] = str(workdir)
    try:
        from consumer.testing.fake_alicom import FakeAlicomServer  # noqa: PLC0415
        from consumer.testing.fake_mns import FakeMnsServer  # noqa: PLC0415
        from consumer.testing.fake_rocketmq import FakeRocketMQ, ProxyLimits  # noqa: PLC0415
    finally:
        if home is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = home
    with (
        FakeMnsServer() as mns,
        FakeAlicomServer(mns, accounts={ACCESS_KEY_ID: ACCESS_KEY_SECRET}) as alicom,
        FakeRocketMQ(limits=ProxyLimits.relaxed()) as rocketmq,
        remoting_peer() as remoting,
    ):
        loaded = enqueue(samples, mns, rocketmq)
        loaded.remoting = enqueue_remoting(samples, remoting)
        port = free_port()
        config = workdir / "consumer.yaml"
        database = workdir / "events.db"
        config.write_text(demo_config(database, port, mns, alicom, rocketmq, remoting=remoting))
        push = len(samples) - loaded.mns - loaded.rocketmq
        _progress(
            f"loaded {len(samples)} sample messages: {loaded.mns} on {len(loaded.mns_queues)} "
            f"MNS queues (read with the Alicom token flow), {loaded.rocketmq} on a RocketMQ "
            f"topic, {push} to push over HTTP"
            + (f"; and {loaded.remoting} on a RocketMQ 4.x topic (Remoting)" if remoting else "")
        )
        started = time.monotonic()
        with daemon(config, workdir) as child:
            _progress(f"daemon ready in {time.monotonic() - started:.1f} s; pushing")
            loaded.push = push_all(samples, port)
            wait_stored(loaded, mns, rocketmq, child)
            wait_remoting(remoting, child)
            stored_in = time.monotonic() - started
        _progress(f"everything stored {stored_in:.1f} s after the start; daemon stopped cleanly")
    print_report(database, out)
    return 0


def load_samples() -> list[Sample]:
    """Every shipped sample, as `FORMAT.NAME.ext` (the format is the first two parts)."""
    folder = resources.files("consumer.testing") / "samples" / "demo"
    samples = []
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        parts = entry.name.split(".")
        if not entry.is_file() or len(parts) < 3:
            continue
        samples.append(Sample(entry.name, ".".join(parts[:2]), entry.read_bytes()))
    if not samples:
        raise DemoError(f"no sample messages in {folder}")
    return samples


def enqueue(samples: Sequence[Sample], mns: FakeMnsServer, rocketmq: FakeRocketMQ) -> Loaded:
    loaded = Loaded()
    for fmt, message_type in MESSAGE_TYPES.items():
        queue = MNS_PREFIX + message_type
        mns.create_queue(queue, visibility_timeout=10)
        loaded.mns_queues.append(queue)
        for sample in samples:
            if sample.format == fmt:
                mns.put_message(queue, sample.body)  # bytes are stored base64-encoded
                loaded.mns += 1
    for sample in samples:
        if sample.format == "aliyun.outbound_bot":
            rocketmq.publish(TOPIC, sample.body, tag="JobComplete")
            loaded.rocketmq += 1
    return loaded


@contextlib.contextmanager
def remoting_peer() -> Iterator[FakeRemoting | None]:
    """A local RocketMQ 4.x name server and broker, if the Remoting binding can run here."""
    from consumer.sources.remoting import unavailable  # noqa: PLC0415
    from consumer.testing.fake_remoting import FakeRemoting  # noqa: PLC0415

    missing = unavailable()
    if missing is not None:
        _progress(f"skipping the RocketMQ 4.x (remoting) queue: {missing}")
        yield None
        return
    with FakeRemoting(TOPIC_4X, long_poll_cap=1.0, retry_delay=1.0) as peer:
        yield peer


def enqueue_remoting(samples: Sequence[Sample], remoting: FakeRemoting | None) -> int:
    """The Outbound Bot samples once more, on the 4.x topic (the same events: stored once)."""
    if remoting is None:
        return 0
    outbound = [sample for sample in samples if sample.format == "aliyun.outbound_bot"]
    for sample in outbound:
        remoting.publish(sample.body, tags="JobComplete")
    return len(outbound)


def wait_remoting(remoting: FakeRemoting | None, child: subprocess.Popen[bytes]) -> None:
    """Until the 4.x group committed past every message (only after their commit)."""
    deadline = time.monotonic() + STORE_TIMEOUT
    while remoting is not None and not remoting.drained(GROUP):
        if child.poll() is not None:
            raise DemoError(f"the daemon exited with status {child.returncode} before the end")
        if time.monotonic() > deadline:
            raise DemoError(f"the RocketMQ 4.x topic is not consumed after {STORE_TIMEOUT:g} s")
        time.sleep(0.05)


def demo_config(
    database: Path,
    port: int,
    mns: FakeMnsServer,
    alicom: FakeAlicomServer,
    rocketmq: FakeRocketMQ,
    *,
    remoting: FakeRemoting | None = None,
) -> str:
    lines = [
        "log: {level: info, format: json}",
        f'sink: {{url: "sqlite:///{database}"}}',
        f'http: {{listen: "127.0.0.1:{port}"}}',
        "queues:",
    ]
    for fmt, message_type in MESSAGE_TYPES.items():
        lines += [
            f"  - name: vms-{fmt.split('.')[1].replace('_', '-')}",
            "    source: mns",
            f"    format: {fmt}",
            "    mns:",
            f"      endpoint: {mns.endpoint}",
            f"      queue: {MNS_PREFIX}{message_type}",
            "      auth:",
            "        mode: alicom_token",
            f"        message_type: {message_type}",
            f"        access_key_id: {ACCESS_KEY_ID}",
            f"        access_key_secret: {ACCESS_KEY_SECRET}",
            f"        token_endpoint: {alicom.endpoint}",
            "      wait_seconds: 1",
        ]
    lines += [
        "  - name: outbound-bot",
        "    source: rocketmq",
        "    format: aliyun.outbound_bot",
        "    rocketmq:",
        f'      endpoints: "{rocketmq.endpoint}"',
        f"      topic: {TOPIC}",
        f"      group: {GROUP}",
        "      invisible_duration: 10s",
    ]
    if remoting is not None:
        lines += [
            "  - name: outbound-bot-4x",
            "    source: rocketmq",
            "    format: aliyun.outbound_bot",
            "    rocketmq:",
            "      protocol: remoting",
            f'      endpoints: "{remoting.namesrv}"',
            f"      topic: {TOPIC_4X}",
            f"      group: {GROUP}",
        ]
    for fmt, path in PUSH_PATHS.items():
        lines += [
            f"  - name: {fmt.split('.')[0]}-{fmt.split('.')[1].replace('_', '-')}",
            "    source: http",
            f"    format: {fmt}",
            f"    http: {{path: {path}}}",
        ]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def daemon(config: Path, workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`consumer run -c config` until READY=1; SIGTERM and a clean exit when the block ends."""
    notify_path = workdir / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(0.1)
    log_path = workdir / "daemon.log"
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), "HOME": str(workdir)}
    for name in ("PROMETHEUS_MULTIPROC_DIR", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS"):
        env.pop(name, None)
    command = [sys.executable, "-m", "consumer", "run", "-c", str(config)]
    with log_path.open("wb") as log, notify:
        child = subprocess.Popen(
            [*command, "--drain-timeout", str(DRAIN_SECONDS)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        try:
            _wait_ready(child, notify, log_path)
            yield child
            child.send_signal(signal.SIGTERM)
            try:
                code = child.wait(DRAIN_SECONDS + 10)
            except subprocess.TimeoutExpired:
                raise DemoError(_with_log("the daemon did not stop", log_path)) from None
            if code != 0:
                raise DemoError(_with_log(f"the daemon exited with status {code}", log_path))
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()


def _wait_ready(child: subprocess.Popen[bytes], notify: socket.socket, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            if "READY=1" in notify.recv(4096).decode(errors="replace").splitlines():
                return
        if child.poll() is not None:
            raise DemoError(
                _with_log(f"the daemon exited with status {child.returncode}", log_path)
            )
    raise DemoError(_with_log(f"the daemon was not ready within {READY_TIMEOUT:g} s", log_path))


def push_all(samples: Sequence[Sample], port: int) -> int:
    """POST each push sample as its provider would; every one must be answered 200."""
    pushed = 0
    for sample in samples:
        path = PUSH_PATHS.get(sample.format)
        if path is None:
            continue
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}",
            data=sample.body,
            headers={"Content-Type": "application/json; charset=utf-8"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError as exc:
            raise DemoError(f"pushing {sample.name} to {path} failed: {exc}") from None
        if status != 200:
            raise DemoError(f"pushing {sample.name} to {path} was answered {status}")
        pushed += 1
    return pushed


def wait_stored(
    loaded: Loaded, mns: FakeMnsServer, rocketmq: FakeRocketMQ, child: subprocess.Popen[bytes]
) -> None:
    """Until every MNS message is deleted and every RocketMQ message acked (both happen only
    after the commit); push requests were answered 200 after theirs."""

    def left() -> int:
        waiting = sum(mns.stats(queue).total for queue in loaded.mns_queues)
        stats = rocketmq.stats(TOPIC, GROUP)
        return waiting + loaded.rocketmq - stats.acked - stats.dead_lettered

    deadline = time.monotonic() + STORE_TIMEOUT
    while (remaining := left()) > 0:
        if child.poll() is not None:
            raise DemoError(f"the daemon exited with status {child.returncode} before the end")
        if time.monotonic() > deadline:
            raise DemoError(f"{remaining} messages still unacknowledged after {STORE_TIMEOUT:g} s")
        time.sleep(0.05)


def print_report(database: Path, out: Any) -> None:
    with contextlib.closing(sqlite3.connect(database)) as db:
        db.row_factory = sqlite3.Row
        calls = db.execute(
            f"SELECT {', '.join(column for column, _, _ in COLUMNS)} FROM calls "
            "ORDER BY provider, started_at, call_id"
        ).fetchall()
        events = db.execute(
            "SELECT provider, COUNT(*) AS n FROM call_events GROUP BY provider ORDER BY provider"
        ).fetchall()
        dead = db.execute(
            "SELECT queue, reason, COUNT(*) AS n FROM dead_letters GROUP BY queue, reason"
        ).fetchall()
    print(f"calls ({len(calls)} rows)", file=out)
    print(render_table([[row[column] for column, _, _ in COLUMNS] for row in calls]), file=out)
    per_provider = ", ".join(f"{row['provider']} {row['n']}" for row in events)
    print(f"\ncall_events: {sum(row['n'] for row in events)} ({per_provider})", file=out)
    quarantined = "; ".join(f"{row['queue']}: {row['reason']} x{row['n']}" for row in dead)
    print(f"dead_letters: {sum(row['n'] for row in dead)} ({quarantined or 'none'})", file=out)
    print(f"\n{LEGEND}", file=out)


def render_table(rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table: long values are cut with an ellipsis, times shown without zone."""
    cells = [
        [_cell(value, width) for value, (_, _, width) in zip(row, COLUMNS, strict=True)]
        for row in rows
    ]
    headers = [title for _, title, _ in COLUMNS]
    widths = [max([len(title), *(len(row[i]) for row in cells)]) for i, title in enumerate(headers)]
    lines = ["  ".join(title.ljust(widths[i]) for i, title in enumerate(headers)).rstrip()]
    lines.append("  ".join("-" * width for width in widths))
    for row in cells:
        lines.append("  ".join(value.ljust(widths[i]) for i, value in enumerate(row)).rstrip())
    return "\n".join(lines)


def _cell(value: object, width: int) -> str:
    if value is None:
        return "-"
    text = str(value)
    if len(text) >= 20 and text[4] == "-" and text[10] == "T":  # an RFC 3339 UTC time
        text = text[:19].replace("T", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _with_log(problem: str, log_path: Path) -> str:
    tail = log_path.read_text(errors="replace")[-4000:] if log_path.exists() else ""
    return f"{problem}; its log ends with:\n{tail}"


def _progress(text: str) -> None:
    print(f"consumer demo: {text}", file=sys.stderr, flush=True)


__all__ = ["add_demo", "demo", "render_table", "run_demo"]
