"""The pull loop: ack what committed, reject the rest, back off, keep batches invisible."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from consumer.errors import TransientError
from consumer.formats import get_format
from consumer.pipeline import (
    Counters,
    Disposition,
    Keepalive,
    Pipeline,
    Result,
    Worker,
    run_worker,
)
from consumer.sinks.base import DeadLetter, StoredEvent
from consumer.sources.base import Message
from consumer.sources.memory import MemoryQueue, MemorySource
from tests.conformance import bodies
from tests.conformance.sink_double import FaultySink, SinkDouble
from tests.pipeline.conftest import QUEUE, FakeTime, captured, retry


def make_pipeline(sink: FaultySink, counters: Counters | None = None) -> Pipeline:
    fake = FakeTime()
    return Pipeline(
        queue=QUEUE,
        format=get_format(bodies.FORMAT),
        sink=sink,
        retry=retry(attempts=2, initial=1, maximum=4),
        metrics=counters or Counters(),
        clock=fake,
        sleep=fake.sleep,
    )


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture
def queue(clock: FakeTime) -> MemoryQueue:
    return MemoryQueue(visibility_timeout=30, clock=clock)


def test_committed_messages_are_acked_and_failed_ones_rejected_with_backoff(
    queue: MemoryQueue, clock: FakeTime, sink: FaultySink, double: SinkDouble
) -> None:
    # Given two messages and a database that is down
    queue.publish(bodies.voice_report(1), message_id="a")
    queue.publish(bodies.voice_report(2), message_id="b")
    sink.outage = True
    pauses: list[float] = []
    worker = Worker(MemorySource(queue), make_pipeline(sink), wait=0, pause=pauses.append)
    # When the worker runs three rounds, each time after the rejected messages came back
    for _ in range(3):
        results = worker.run_once()
        assert {r.disposition for r in results} == {Disposition.TRANSIENT}
        clock.now += 10
    # Then nothing was acknowledged, each round backed off longer (1, 2, 4 s, capped at 4)
    assert len(queue) == 2
    assert pauses == [1, 2, 4]
    assert queue.delivery_count("a") == queue.delivery_count("b") == 3
    # And once the database is back the batch is stored, acked, and the back-off resets
    sink.outage = False
    results = worker.run_once()
    assert {r.disposition for r in results} == {Disposition.STORED}
    assert queue.drained()
    assert len(double.events) == 2
    sink.outage = True
    queue.publish(bodies.voice_report(3))
    worker.run_once()
    assert pauses[-1] == 1


def test_rejected_messages_come_back_after_the_backoff_delay(
    queue: MemoryQueue, clock: FakeTime, sink: FaultySink
) -> None:
    queue.publish(bodies.voice_report(1))
    sink.outage = True
    worker = Worker(MemorySource(queue), make_pipeline(sink), wait=0, pause=lambda s: None)
    worker.run_once()
    clock.now += 0.9
    assert MemorySource(queue).receive(1, 0) == []
    clock.now += 0.2
    assert len(MemorySource(queue).receive(1, 0)) == 1


def test_an_unreachable_source_backs_off_without_crashing(
    queue: MemoryQueue, sink: FaultySink
) -> None:
    queue.unavailable = True
    pauses: list[float] = []
    worker = Worker(MemorySource(queue), make_pipeline(sink), wait=0, pause=pauses.append)
    with captured() as logs:
        assert worker.run_once() == []
        assert worker.run_once() == []
    assert pauses == [1, 2]
    assert logs[0]["event"] == "source unavailable"
    assert logs[0]["queue"] == QUEUE


class AckFails(MemorySource):
    def ack(self, messages: Sequence[Message]) -> None:
        raise TransientError("connection reset while deleting")


def test_a_failed_ack_is_logged_and_left_to_redelivery(
    queue: MemoryQueue, clock: FakeTime, sink: FaultySink, double: SinkDouble
) -> None:
    # Given a source whose ack fails after the commit
    queue.publish(bodies.voice_report(1))
    counters = Counters()
    worker = Worker(AckFails(queue), make_pipeline(sink, counters), wait=0, pause=lambda s: None)
    # When the worker handles the message
    with captured() as logs:
        (result,) = worker.run_once()
    # Then it was stored, not counted as acknowledged, and comes back to be deduplicated
    assert result.disposition is Disposition.STORED
    assert counters[QUEUE].acknowledged == 0
    assert counters[QUEUE].in_flight == 0
    assert any(line["event"].startswith("ack failed") for line in logs)
    clock.now += 31
    Worker(MemorySource(queue), make_pipeline(sink), wait=0).run_once()
    assert queue.drained()
    assert len(double.events) == 1


class SlowSink(SinkDouble):
    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.storing = threading.Event()

    def store(self, events: Sequence[StoredEvent], dead_letters: Sequence[DeadLetter]) -> None:
        self.storing.set()
        time.sleep(self.seconds)
        super().store(events, dead_letters)


def test_a_batch_slower_than_its_visibility_is_kept_invisible() -> None:
    # Given a 0.15 s visibility (real clock) and a sink that takes 0.6 s
    queue = MemoryQueue(visibility_timeout=0.15)
    queue.publish(bodies.voice_report(1))
    slow = SlowSink(0.6)
    worker = Worker(MemorySource(queue), make_pipeline(FaultySink(slow)), wait=0)
    # When the worker handles it while another consumer keeps polling
    stolen: list[Message] = []
    done = threading.Event()

    def other_consumer() -> None:
        other = MemorySource(queue)
        slow.storing.wait(5)
        while not done.is_set():
            stolen.extend(other.receive(1, 0.02))

    thief = threading.Thread(target=other_consumer)
    thief.start()
    try:
        (result,) = worker.run_once()
    finally:
        done.set()
        thief.join()
    # Then nobody else got the message, and it was stored once and acknowledged
    assert stolen == []
    assert result.disposition is Disposition.STORED
    assert queue.drained()


def test_keepalive_extends_every_third_of_the_visibility_and_survives_failures() -> None:
    class Extends(MemorySource):
        calls: list[float]

        def extend(self, messages: Sequence[Message], seconds: float) -> None:
            self.calls.append(seconds)
            raise TransientError("broker gone")

    source = Extends(MemoryQueue(visibility_timeout=0.06))
    source.calls = []
    with captured() as logs, Keepalive(source, [Message("m", b"")], QUEUE) as keepalive:
        time.sleep(0.2)
    assert len(source.calls) >= 2
    assert set(source.calls) == {0.06}
    assert keepalive.extensions == 0
    assert logs[0]["event"].startswith("could not extend visibility")


def test_no_keepalive_without_a_visibility_limit() -> None:
    class Push(MemorySource):
        @property
        def visibility_timeout(self) -> None:  # type: ignore[override]
            return None

    with Keepalive(Push(MemoryQueue()), [Message("m", b"")], QUEUE) as keepalive:
        pass
    assert keepalive._thread is None


def test_run_drains_until_stopped() -> None:
    # Given a worker running in its own thread on the real clock
    queue = MemoryQueue(visibility_timeout=5)
    double = SinkDouble()
    worker = Worker(MemorySource(queue), make_pipeline(FaultySink(double)), wait=0.02)
    thread = run_worker(worker)
    # When messages arrive, then they are stored
    for n in range(5):
        queue.publish(bodies.voice_report(n))
    deadline = time.monotonic() + 5
    while not queue.drained() and time.monotonic() < deadline:
        time.sleep(0.01)
    # And stop() ends the loop
    worker.stop()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert worker.stopping
    assert len(double.events) == 5


def test_stop_cuts_sink_retries_short_and_leaves_the_batch_queued() -> None:
    # Given a worker retrying a database outage with 5 s waits, on the real clock
    queue = MemoryQueue(visibility_timeout=30)
    queue.publish(bodies.voice_report(1))
    sink = FaultySink(SinkDouble(), outage=True)
    counters = Counters()
    pipeline = Pipeline(
        queue=QUEUE,
        format=get_format(bodies.FORMAT),
        sink=sink,
        retry=retry(attempts=10, initial=5, maximum=5, total=60),
        metrics=counters,
    )
    worker = Worker(MemorySource(queue), pipeline, wait=0.01)
    thread = run_worker(worker)
    deadline = time.monotonic() + 5
    while sink.calls == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    # When it is stopped in the middle of a wait
    started = time.monotonic()
    worker.stop()
    thread.join(timeout=5)
    # Then it ends at once, acknowledging nothing; the message waits for the next run
    assert not thread.is_alive()
    assert time.monotonic() - started < 2
    assert sink.calls == 1
    assert counters[QUEUE].acknowledged == 0
    assert counters[QUEUE].rejected == 1
    assert len(queue) == 1


def test_a_bug_in_the_pipeline_leaves_the_batch_for_redelivery(
    queue: MemoryQueue, clock: FakeTime, sink: FaultySink
) -> None:
    # Given a pipeline that crashes on the batch
    class Broken(Pipeline):
        def handle(self, *args: object, **kwargs: object) -> list[Result]:
            raise RuntimeError("bug")

    queue.publish(bodies.voice_report(1))
    good = make_pipeline(sink)
    broken = Broken(good.queue, good.format, sink, good.retry, metrics=Counters())
    worker = Worker(MemorySource(queue), broken, wait=0, pause=lambda s: None)
    # When the worker runs
    with captured() as logs:
        (result,) = worker.run_once()
    # Then nothing was acknowledged, the error is logged with its traceback, and it comes back
    assert (result.disposition, result.reason) == (Disposition.TRANSIENT, "pipeline_error")
    assert result.error == "RuntimeError: bug"
    assert logs[0]["exc_info"] is True
    clock.now += 31
    assert [m.delivery_count for m in MemorySource(queue).receive(1, 0)] == [2]
