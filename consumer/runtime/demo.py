"""`consumer demo`: the whole daemon on local emulators, in a few seconds.

It starts the bundled emulators (`consumer.testing`: MNS with the Alicom token endpoint, and a
RocketMQ 5 proxy), loads the sample messages shipped in `consumer/testing/samples/demo/` the way
each provider delivers them (MNS bodies base64-encoded as Alicom sends them, read with the
token flow; Outbound Bot events on a RocketMQ topic; Huawei and 7moor events POSTed to the
listener), runs the real daemon (`consumer run` as a child process on a generated
configuration, told apart from systemd only by the NOTIFY_SOCKET this command binds), waits
until every message is stored and acknowledged, stops it with SIGTERM and prints the `calls`
table of the temporary SQLite file, with a legend. This module runs it; what is put where and
the daemon's configuration are `demo_setup.py`'s, the printed table `demo_report.py`'s.

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
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from consumer.runtime.demo_report import print_report
from consumer.runtime.demo_setup import (
    ACCESS_KEY_ID,
    ACCESS_KEY_SECRET,
    GROUP,
    PUSH_PATHS,
    TOPIC,
    TOPIC_4X,
    DemoError,
    Loaded,
    Sample,
    demo_config,
    enqueue,
    enqueue_remoting,
    load_samples,
)
from consumer.sources.client_home import home

if TYPE_CHECKING:
    from consumer.cli import Subparsers
    from consumer.testing.fake_mns import FakeMnsServer
    from consumer.testing.fake_remoting import FakeRemoting
    from consumer.testing.fake_rocketmq import FakeRocketMQ

STORE_TIMEOUT = 60.0
READY_TIMEOUT = 60.0
DRAIN_SECONDS = 5.0


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
    with home(str(workdir)):
        from consumer.testing.fake_alicom import FakeAlicomServer  # noqa: PLC0415
        from consumer.testing.fake_mns import FakeMnsServer  # noqa: PLC0415
        from consumer.testing.fake_rocketmq import FakeRocketMQ, ProxyLimits  # noqa: PLC0415
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


def wait_remoting(remoting: FakeRemoting | None, child: subprocess.Popen[bytes]) -> None:
    """Until the 4.x group committed past every message (only after their commit)."""
    deadline = time.monotonic() + STORE_TIMEOUT
    while remoting is not None and not remoting.drained(GROUP):
        if child.poll() is not None:
            raise DemoError(f"the daemon exited with status {child.returncode} before the end")
        if time.monotonic() > deadline:
            raise DemoError(f"the RocketMQ 4.x topic is not consumed after {STORE_TIMEOUT:g} s")
        time.sleep(0.05)


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _with_log(problem: str, log_path: Path) -> str:
    tail = log_path.read_text(errors="replace")[-4000:] if log_path.exists() else ""
    return f"{problem}; its log ends with:\n{tail}"


def _progress(text: str) -> None:
    print(f"consumer demo: {text}", file=sys.stderr, flush=True)


__all__ = ["add_demo", "daemon", "demo", "free_port", "run_demo"]
