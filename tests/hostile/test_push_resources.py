"""The listener under slow senders and a sick database, as the real daemon (`consumer run`).

- Many senders of 1 MB bodies that stall before the last byte: the bytes the listener holds are
  capped (`DEFAULT_BODY_BYTES_IN_FLIGHT`), the rest are answered 503 at once, and the memory goes
  back once the senders are gone.
- `/healthz` answers while the listener waits for an unreachable database at start-up.
- `/readyz` is 503 while the sink cannot write, though it can still read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from consumer.sources.http import DEFAULT_BODY_BYTES_IN_FLIGHT
from consumer.testing.tcp_proxy import TcpProxy
from tests.conformance.bodies import FORMAT
from tests.hostile.test_push_replay import pg_url  # noqa: F401 - a fixture
from tests.runtime.helpers import Start, free_port, get, push, started_daemons, wait_until

pytestmark = pytest.mark.timeout(180)

MIB = 1_048_576


@pytest.fixture
def start() -> Iterator[Start]:
    yield from started_daemons()


def write_config(tmp_path: Path, sink_url: str, port: int, queue_extra: str = "") -> Path:
    path = tmp_path / "consumer.yaml"
    path.write_text(
        f"""
log: {{level: info, format: json}}
sink: {{url: "{sink_url}"}}
http: {{listen: "127.0.0.1:{port}"}}
queues:
  - name: vms
    source: http
    format: {FORMAT}
    http: {{path: /push/vms}}
{queue_extra}
"""
    )
    return path


def answers(port: int, path: str) -> bool:
    """Whether anything answers `path` yet (a refused connection is "no")."""
    try:
        get(port, path)
    except OSError:
        return False
    return True


def metric(port: int, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(get(port, "/metrics")[1]):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def rss(pid: int) -> int:
    """Resident bytes of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class Stalled:
    """Connections that each send a 1 MiB body but its last byte, then wait."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.statuses: list[int] = []
        self._writers: list[asyncio.StreamWriter] = []

    async def open(self) -> None:
        await asyncio.gather(*(self._one() for _ in range(self.count)))

    async def _one(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._writers.append(writer)
        head = (
            "POST /push/vms HTTP/1.1\r\nHost: listener\r\nContent-Type: application/json\r\n"
            f"Content-Length: {MIB}\r\n\r\n"
        ).encode()
        writer.write(head + b"[" + b" " * (MIB - 2))  # all but the closing byte
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        # A refused body is answered at once; a held one is not answered while it stalls.
        with contextlib.suppress(TimeoutError, ConnectionError):
            status_line = await asyncio.wait_for(reader.readline(), 3.0)
            if status_line:
                self.statuses.append(int(status_line.split()[1]))

    def close(self) -> None:
        for writer in self._writers:
            writer.transport.abort()


def test_many_stalled_1mb_bodies_are_capped_answered_503_and_their_memory_returned(
    tmp_path: Path, start: Start
) -> None:
    # Given the daemon's listener, idle
    port = free_port()
    daemon = start(write_config(tmp_path, f"sqlite:///{tmp_path}/events.db", port), tmp_path)
    listener = daemon.worker_pids("listener")[-1]
    assert push(port, 1) == 200
    idle = rss(listener)
    held_at_most = DEFAULT_BODY_BYTES_IN_FLIGHT // MIB
    count = held_at_most + 56

    async def scenario() -> tuple[list[int], float, int]:
        stalled = Stalled(port, count)
        # When that many senders each send 1 MiB but the last byte and stall
        await stalled.open()
        try:
            in_flight = await asyncio.to_thread(metric, port, "consumer_push_body_bytes_in_flight")
            peak = rss(listener)
        finally:
            stalled.close()  # the senders go away
        return stalled.statuses, in_flight, peak

    statuses, in_flight, peak = asyncio.run(scenario())
    # Then the listener held no more than its cap, and refused the rest with 503 at once
    assert in_flight <= DEFAULT_BODY_BYTES_IN_FLIGHT
    assert statuses.count(503) >= count - held_at_most
    assert 200 not in statuses  # a held body stalls unanswered (408 only after body_timeout)
    assert peak - idle < DEFAULT_BODY_BYTES_IN_FLIGHT + 48 * MIB
    # And once the senders are gone the bytes are released and the memory given back
    wait_until(
        lambda: metric(port, "consumer_push_body_bytes_in_flight") == 0, 30, "bodies released"
    )
    assert rss(listener) - idle < 24 * MIB
    assert push(port, 2) == 200


@pytest.mark.postgres
def test_healthz_answers_while_the_database_is_unreachable_at_start_up(
    tmp_path: Path,
    start: Start,
    pg_url: str,  # noqa: F811 - the fixture imported above
) -> None:
    # Given the daemon on PostgreSQL through a proxy that can cut the database off
    with TcpProxy("127.0.0.1", 5432) as proxy:
        url = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        port = free_port()
        daemon = start(write_config(tmp_path, url, port), tmp_path)
        first = daemon.worker_pids("listener")[-1]
        # When the database becomes unreachable and the listener starts again (killed, restarted)
        proxy.cut()
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: len(daemon.worker_pids("listener")) == 2, 30, "a new listener")
        # Then /healthz answers while the new listener waits for the database; /readyz and
        # pushes say it is not ready
        wait_until(lambda: answers(port, "/healthz"), 30, "/healthz from the new listener")
        assert get(port, "/healthz") == (200, "ok\n")
        assert get(port, "/readyz")[0] == 503
        assert push(port, 1) == 503
        # And once the database is back, pushes are stored
        proxy.restore()
        wait_until(lambda: push(port, 2) == 200, 60, "a push stored after the outage")
        assert get(port, "/readyz") == (200, "ready\n")


def test_readyz_is_503_while_the_sink_cannot_write(tmp_path: Path, start: Start) -> None:
    # Given the daemon on SQLite with a short busy timeout and a push budget of one attempt
    db = tmp_path / "events.db"
    port = free_port()
    retry = "    retry: {attempts: 1, initial: 100ms, max: 100ms, total: 1s}"
    start(write_config(tmp_path, f"sqlite:///{db}?timeout=0.2", port, retry), tmp_path)
    assert push(port, 1) == 200
    assert get(port, "/readyz") == (200, "ready\n")
    # When another process holds the write lock (the database reads, but takes no write)
    blocker = sqlite3.connect(db, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        refused = push(port, 2)
        # Then the push is refused and /readyz says the sink is unavailable
        assert refused == 503
        status, text = get(port, "/readyz")
        assert status == 503, text
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    # And once writes go through again, it is ready and pushes are stored
    assert get(port, "/readyz") == (200, "ready\n")
    assert push(port, 3) == 200
