"""sd_notify datagrams, read from a NOTIFY_SOCKET the test binds (path and abstract namespace)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from consumer.runtime.notify import Notifier, watchdog_interval


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2.0)
    yield str(path), sock
    sock.close()


def test_ready_and_status_go_in_one_datagram(listener: tuple[str, socket.socket]) -> None:
    # Given a notifier on the test's socket
    address, sock = listener
    notifier = Notifier(address)
    # When it reports readiness with a status that spans two lines
    sent = notifier.ready("ready: 2 workers\nconnected")
    # Then one datagram carries both assignments, the status folded onto one line
    assert sent
    assert sock.recv(4096).decode() == "READY=1\nSTATUS=ready: 2 workers connected"
    notifier.close()


def test_watchdog_and_stopping(listener: tuple[str, socket.socket]) -> None:
    address, sock = listener
    notifier = Notifier(address)
    notifier.watchdog()
    notifier.stopping("stopping: draining 3 workers")
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert sock.recv(4096) == b"STOPPING=1\nSTATUS=stopping: draining 3 workers"
    notifier.close()


def test_abstract_namespace_address() -> None:
    # Given a socket in the abstract namespace, named the systemd way with a leading @
    name = f"consumer-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2.0)
    try:
        # When the notifier sends to "@name"
        assert Notifier("@" + name).status("starting")
        # Then the datagram arrives there
        assert sock.recv(4096) == b"STATUS=starting"
    finally:
        sock.close()


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given no $NOTIFY_SOCKET (not started by systemd)
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    # Then every call is a quiet no-op
    assert not notifier.enabled
    with capture_logs() as logs:
        assert not notifier.ready("ready")
    assert logs == []


def test_address_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, listener: tuple[str, socket.socket]
) -> None:
    address, sock = listener
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    assert Notifier().status("from the environment")
    assert sock.recv(4096) == b"STATUS=from the environment"


def test_a_failed_send_is_logged_not_raised(tmp_path: Path) -> None:
    # Given a NOTIFY_SOCKET that nobody listens on
    notifier = Notifier(str(tmp_path / "gone.sock"))
    # When a notification is sent
    with capture_logs() as logs:
        sent = notifier.watchdog()
    # Then it reports failure and the log names the socket and the error
    assert not sent
    assert logs[0]["event"] == "sd_notify failed"
    assert logs[0]["socket"].endswith("gone.sock")
    assert logs[0]["message"] == "WATCHDOG=1"
    assert "No such file" in logs[0]["error"] or "refused" in logs[0]["error"]


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({}) is None
