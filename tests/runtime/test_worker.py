"""A pull worker's pieces in-process (the reporting middleware, the drain on SIGTERM), and what each
kind of worker process imports."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from multiprocessing.sharedctypes import RawArray
from pathlib import Path

import pytest

from consumer.errors import TransientError
from consumer.formats import get_format
from consumer.pipeline import Counters, Pipeline, Worker, run_worker
from consumer.runtime.spec import EXIT_OK, EXIT_UNFINISHED
from consumer.runtime.status import FIELDS, Slot
from consumer.runtime.worker import FIRST_WAIT, Reporting, _drain
from consumer.sinks.base import DeadLetter, StoredEvent
from consumer.sources.base import Message
from consumer.sources.memory import MemoryQueue, MemorySource
from tests.conformance import bodies
from tests.conformance.sink_double import SinkDouble


def slot() -> Slot:
    made = Slot(RawArray("d", FIELDS), 0)
    made.reset()
    return made


class Unreachable(MemorySource):
    def receive(self, max_count: int, wait: float) -> list[Message]:
        raise TransientError("broker unreachable")


class Spy(MemorySource):
    def __init__(self, queue: MemoryQueue) -> None:
        super().__init__(queue)
        self.waits: list[float] = []

    def receive(self, max_count: int, wait: float) -> list[Message]:
        self.waits.append(wait)
        return super().receive(max_count, 0)


def pipeline(sink: SinkDouble | None = None) -> Pipeline:
    return Pipeline(queue="vms", format=get_format(bodies.FORMAT), sink=sink or SinkDouble())


def test_the_source_reports_connected_beats_and_shortens_the_first_poll() -> None:
    # Given a worker with the reporting middleware over an empty queue
    status = slot()
    up: list[tuple[str, bool]] = []
    spy = Spy(MemoryQueue())
    source = Reporting(status, "vms", lambda queue, ok: up.append((queue, ok)))
    worker = Worker(spy, pipeline(), batch_size=16, wait=30, middleware=[source])
    assert not status.is_connected
    # When the loop polls twice with a 30 s wait
    worker.run_once()
    worker.run_once()
    # Then the first poll was short (readiness comes quickly), the next one as asked
    assert spy.waits == [FIRST_WAIT, 30]
    assert status.is_connected
    assert status.silent_for() < 1
    assert up == [("vms", True), ("vms", True)]
    assert not source.receiving


def test_an_unreachable_source_is_reported_down() -> None:
    # Given a source that was connected, then its broker goes away
    status = slot()
    status.connected(True)
    up: list[tuple[str, bool]] = []
    unreachable = Unreachable(MemoryQueue())
    source = Reporting(status, "bot", lambda q, ok: up.append((q, ok)))
    pauses: list[float] = []
    worker = Worker(unreachable, pipeline(), pause=pauses.append, middleware=[source])
    # When a receive fails, the failure still reaches the loop (which backs off)
    assert worker.run_once() == []
    assert len(pauses) == 1
    # Then the supervisor and /metrics see it down
    assert not status.is_connected
    assert up == [("bot", False)]


class BlockingSink(SinkDouble):
    """Stores only once `release` is set: a commit that outlives the drain deadline."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def store(self, events: Sequence[StoredEvent], dead_letters: Sequence[DeadLetter]) -> None:
        self.entered.set()
        self.release.wait(10)
        super().store(events, dead_letters)


def make_worker(queue: MemoryQueue, sink: SinkDouble) -> tuple[Worker, Reporting]:
    report = Reporting(slot(), "vms")
    pipeline = Pipeline(
        queue="vms", format=get_format(bodies.FORMAT), sink=sink, metrics=Counters()
    )
    source = MemorySource(queue, visibility_timeout=30)
    return Worker(source, pipeline, batch_size=4, wait=30, middleware=[report]), report


class LongPoll(MemorySource):
    """A poll that holds nothing and ends only when its wait is over or the source is closed."""

    def __init__(self) -> None:
        super().__init__(MemoryQueue())
        self.closed = threading.Event()

    def receive(self, max_count: int, wait: float) -> list[Message]:
        self.closed.wait(wait)
        return []

    def close(self) -> None:
        self.closed.set()


def test_stop_during_a_long_poll_returns_at_once() -> None:
    # Given a worker waiting in a 30 s poll
    poll = LongPoll()
    source = Reporting(slot(), "vms")
    worker = Worker(poll, pipeline(), batch_size=4, wait=30, middleware=[source])
    thread = run_worker(worker)
    while not source.receiving:
        time.sleep(0.01)
    # When it is drained
    started = time.monotonic()
    code = _drain(worker, thread, source, deadline=5)
    # Then it does not wait for the poll (nothing is in hand) and it closed the source
    assert code == EXIT_OK
    assert time.monotonic() - started < 2
    assert poll.closed.is_set()
    thread.join(5)
    assert not thread.is_alive()


def test_a_batch_in_hand_is_finished_and_acknowledged() -> None:
    # Given a worker in the middle of committing a batch
    queue = MemoryQueue()
    for n in range(3):
        queue.publish(bodies.voice_report(n))
    sink = BlockingSink()
    worker, source = make_worker(queue, sink)
    thread = run_worker(worker)
    assert sink.entered.wait(5)
    # When it is drained and the commit completes within the deadline
    threading.Timer(0.3, sink.release.set).start()
    code = _drain(worker, thread, source, deadline=5)
    # Then the batch was stored and acknowledged before the worker ended
    assert code == EXIT_OK
    assert len(sink.stored_event_ids()) == 3
    assert queue.drained()


def test_a_batch_that_outlives_the_deadline_is_reported_unfinished() -> None:
    queue = MemoryQueue()
    queue.publish(bodies.voice_report(1))
    sink = BlockingSink()
    worker, source = make_worker(queue, sink)
    thread = run_worker(worker)
    assert sink.entered.wait(5)
    code = _drain(worker, thread, source, deadline=0.3)
    assert code == EXIT_UNFINISHED
    assert not queue.drained()  # left to redelivery
    sink.release.set()
    thread.join(5)


# -- what each process imports ---------------------------------------------------------------

HEAVY = ("aiohttp", "mns", "rocketmq", "grpc", "psycopg", "alibabacloud_dybaseapi20170525")


def loaded_after(code: str) -> set[str]:
    """The heavy top-level packages a fresh interpreter holds after running `code`."""
    probe = (
        f"{code}\nimport sys\n"
        f"print(' '.join(sorted({{n.split('.')[0] for n in sys.modules}} & {set(HEAVY)!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    return set(done.stdout.split())


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        # a spawned worker re-imports the console script, hence consumer.cli, before its target
        ("import consumer.cli, consumer.runtime.worker", set()),
        ("from consumer.sources.mns import MnsSource", {"mns"}),
        (
            "from consumer.sources.rocketmq import import_client; import_client()",
            {"rocketmq", "grpc"},
        ),
        ("from consumer.sources.http import PushServer", {"aiohttp"}),
        ("from consumer.sinks import PostgresSink", {"psycopg"}),
    ],
)
def test_each_process_imports_only_what_its_queue_needs(
    code: str, expected: set[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a fresh interpreter (HOME writable: the RocketMQ client's import writes there)
    monkeypatch.setenv("HOME", str(tmp_path))
    # When it imports what one kind of worker needs, Then no other source's SDK comes along
    assert loaded_after(code) == expected


class SettlesConcurrently(MemorySource):
    concurrent_settle = True


def test_the_worker_reads_the_settling_promise_the_source_declares() -> None:
    # Given a source that may be acknowledged while a receive waits (MNS), and one that may not
    queue = MemoryQueue()
    # When a worker with the reporting middleware runs each, Then only the first prefetches
    report = [Reporting(slot(), "vms")]
    assert Worker(SettlesConcurrently(queue), pipeline(), middleware=report).prefetch is True
    assert Worker(MemorySource(queue), pipeline(), middleware=report).prefetch is False


class RoundTrip(MemorySource):
    """Every receive after the first takes a network round trip, even when it finds nothing.

    It may be settled during a receive (as MNS may): only such a source is prefetched from.
    """

    concurrent_settle = True

    def __init__(self, queue: MemoryQueue) -> None:
        super().__init__(queue, visibility_timeout=30)
        self.calls = 0

    def receive(self, max_count: int, wait: float) -> list[Message]:
        self.calls += 1
        if self.calls > 1:
            time.sleep(1.0)
        return super().receive(max_count, 0)


def test_a_drain_during_a_prefetch_finishes_the_batch_in_hand() -> None:
    # Given a worker committing a full batch (the sink holds it) while it prefetches the next
    queue = MemoryQueue()
    for n in range(4):
        queue.publish(bodies.voice_report(n))
    sink = BlockingSink()
    source = Reporting(slot(), "vms")
    worker = Worker(RoundTrip(queue), pipeline(sink), batch_size=4, wait=30, middleware=[source])
    thread = run_worker(worker)
    assert sink.entered.wait(5)
    while not source.receiving:  # the prefetch is under way
        time.sleep(0.01)
    # When it is drained then, and the commit completes within the deadline
    threading.Timer(0.3, sink.release.set).start()
    code = _drain(worker, thread, source, deadline=5)
    # Then the drain did not take the prefetch for an idle poll: the batch was stored and acked
    assert code == EXIT_OK
    assert len(sink.stored_event_ids()) == 4
    assert queue.drained()
    thread.join(5)
    assert not thread.is_alive()
