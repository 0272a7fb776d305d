"""Test helpers shared by the runtime tests."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg

from tests.conformance.bodies import voice_report

POSTGRES = os.environ.get("CONSUMER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


class NotifySocket:
    """A NOTIFY_SOCKET as systemd binds it; `on_ready` runs once READY=1 arrives."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.datagrams: list[str] = []
        self.on_ready: Callable[[], None] | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._done.is_set():
            try:
                text = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            self.datagrams.append(text)
            if "READY=1" in text.splitlines() and self.on_ready is not None:
                self.on_ready()

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        self.sock.close()

    def lines(self) -> list[str]:
        return [line for datagram in self.datagrams for line in datagram.splitlines()]

    def wait_for(self, line: str, timeout: float = 30.0) -> bool:
        """Until a datagram holds `line` (like READY=1)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if line in self.lines():
                return True
            time.sleep(0.05)
        return False


class Daemon:
    """`consumer run` as a real subprocess, its stderr (JSON log lines) kept in a file."""

    def __init__(self, config: Path, workdir: Path, drain: float = 5.0) -> None:
        self.workdir = workdir
        self.notify = NotifySocket(workdir / f"notify-{uuid.uuid4().hex[:8]}.sock")
        self.log_path = workdir / f"daemon-{uuid.uuid4().hex[:8]}.log"
        env = {
            **os.environ,
            "NOTIFY_SOCKET": self.notify.path,
            "HOME": str(workdir),  # the RocketMQ client writes $HOME/logs
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self._log = self.log_path.open("wb")
        command = [sys.executable, "-m", "consumer", "run", "-c", str(config)]
        self.process = subprocess.Popen(
            [*command, "--drain-timeout", str(drain)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        if not self.notify.wait_for("READY=1", timeout):
            self.stop(signal.SIGKILL)
            raise AssertionError(f"no READY=1 within {timeout}s; log:\n{self.log_text()}")

    def logs(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
        return lines

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def worker_pids(self, worker: str) -> list[int]:
        """Every pid the supervisor started for `worker` (like `bot#0`), oldest first."""
        return [
            int(line["pid"])
            for line in self.logs()
            if line.get("event") == "worker started"
            and line.get("logger") == "consumer.runtime"
            and line.get("worker") == worker
        ]

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            if not self._log.closed:
                self._log.close()
                self.notify.close()
        return code


Start = Callable[[Path, Path], Daemon]


def started_daemons(wait_ready: bool = True) -> Iterator[Start]:
    """The body of a `start` fixture: starts daemons (and waits for READY=1 unless told not to);
    any still running when the test ends (it failed) is killed."""
    started: list[Daemon] = []

    def make(config: Path, workdir: Path) -> Daemon:
        daemon = Daemon(config, workdir)
        started.append(daemon)
        if wait_ready:
            daemon.wait_ready()
        return daemon

    yield make
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.stop(signal.SIGKILL)  # its workers get SIGTERM from the kernel and exit


def postgres_schema(name: str) -> Iterator[str]:
    """The body of a fixture: the schema `name` in the test PostgreSQL, dropped afterwards."""
    with psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE SCHEMA "{name}"')
    yield name
    with psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def get(port: int, path: str, timeout: float = 30.0) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def push(port: int, n: int, timeout: float = 30.0) -> int:
    """POST receipt n to the daemon's /push/vms; its status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(
            "POST", "/push/vms", body=voice_report(n), headers={"Content-Type": "application/json"}
        )
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
