"""The pull loop: ack what committed, reject the rest, back off, keep batches invisible."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import pytest

from consumer.errors import TransientError
from consumer.formats import get_format
from consumer.pipeline import (
    Counters,
    Disposition,
    Keepalive,
    KeepaliveThread,
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


# -- prefetching, background settling and the long-lived keepalive ---------------------------


class Recording(MemorySource):
    """A memory source that journals every call and counts calls that overlapped another.

    `receive_gate`, if set, runs inside each receive that got messages, with the round number
    (1 = the first batch, 2 = the first prefetch, ...).
    """

    def __init__(self, queue: MemoryQueue, journal: list[tuple[str, str]]) -> None:
        super().__init__(queue)
        self.journal = journal
        self.overlaps = 0
        self.receives = 0
        self.receive_gate: Callable[[int], object] | None = None
        self.prefetched = threading.Event()
        self._guard = threading.Lock()
        self._active = 0

    def _enter(self) -> None:
        with self._guard:
            self._active += 1
            if self._active > 1:
                self.overlaps += 1
        time.sleep(0.002)  # widen the window in which an overlap would be seen

    def _leave(self) -> None:
        with self._guard:
            self._active -= 1

    def receive(self, max_count: int, wait: float) -> list[Message]:
        self._enter()
        try:
            got = super().receive(max_count, wait)
        finally:
            self._leave()
        if got:
            self.receives += 1
            self.journal.extend(("receive", m.id) for m in got)
            if self.receives == 2:
                self.prefetched.set()
            if self.receive_gate is not None:
                self.receive_gate(self.receives)
        return got

    def ack(self, messages: Sequence[Message]) -> None:
        self._enter()
        try:
            super().ack(messages)
            self.journal.extend(("ack", m.id) for m in messages)
        finally:
            self._leave()

    def reject(self, messages: Sequence[Message], delay: float) -> None:
        self._enter()
        try:
            super().reject(messages, delay)
            self.journal.extend(("reject", m.id) for m in messages)
        finally:
            self._leave()

    def extend(self, messages: Sequence[Message], seconds: float) -> None:
        self._enter()
        try:
            super().extend(messages, seconds)
        finally:
            self._leave()


class JournalSink(SinkDouble):
    """Journals each commit; `gate`, if set, runs before the n-th store (1-based)."""

    def __init__(self, journal: list[tuple[str, str]]) -> None:
        super().__init__()
        self.journal = journal
        self.stores = 0
        self.gate: Callable[[int], object] | None = None

    def store(self, events: Sequence[StoredEvent], dead_letters: Sequence[DeadLetter]) -> None:
        self.stores += 1
        if self.gate is not None:
            self.gate(self.stores)
        super().store(events, dead_letters)
        self.journal.extend(("commit", stored.message_id) for stored in events)


def publish(queue: MemoryQueue, count: int) -> list[str]:
    return [queue.publish(bodies.voice_report(n), message_id=f"m{n:02d}") for n in range(count)]


class SettlingRecording(Recording):
    """A recording source that may be acknowledged while a receive waits (as MNS may)."""

    concurrent_settle = True


def test_the_next_batch_is_fetched_during_the_commit_and_acked_only_after_its_own() -> None:
    # Given 12 messages, batches of 4, and a sink whose first commit waits for the prefetch
    queue = MemoryQueue(visibility_timeout=30)
    ids = publish(queue, 12)
    journal: list[tuple[str, str]] = []
    source = SettlingRecording(queue, journal)
    sink = JournalSink(journal)
    overlapped: list[bool] = []
    sink.gate = lambda n: overlapped.append(source.prefetched.wait(5)) if n == 1 else None
    counters = Counters()
    worker = Worker(source, make_pipeline(FaultySink(sink), counters), batch_size=4, wait=0)
    # When the worker runs until the queue is empty
    results = [r for _ in range(4) for r in worker.run_once()]
    # Then the second batch was received while the first was being committed
    assert overlapped == [True]
    # And every message was acknowledged, each only after its own commit
    assert {r.disposition for r in results} == {Disposition.STORED}
    assert len(results) == 12
    for message_id in ids:
        assert journal.index(("ack", message_id)) > journal.index(("commit", message_id))
    assert queue.drained()
    assert counters[QUEUE].acknowledged == 12
    assert counters[QUEUE].in_flight == 0
    # And nothing is left in hand
    assert not worker.holding
    worker.close()


def test_a_source_that_cannot_settle_during_a_receive_is_never_prefetched_from() -> None:
    # Given a source whose acks would queue behind a receive (a RocketMQ long poll), 8 messages
    # and batches of 4
    queue = MemoryQueue(visibility_timeout=30)
    publish(queue, 8)
    journal: list[tuple[str, str]] = []
    source = Recording(queue, journal)
    sink = JournalSink(journal)
    receives_during_commit: list[int] = []

    def gate(n: int) -> None:
        time.sleep(0.2)  # time enough for a prefetch, were one started
        receives_during_commit.append(source.receives)

    sink.gate = gate
    worker = Worker(source, make_pipeline(FaultySink(sink)), batch_size=4, wait=0)
    # When the worker handles both full batches
    results = [r for _ in range(3) for r in worker.run_once()]
    # Then no receive ran while a batch was being committed, so each ack followed its commit
    # at once instead of waiting out a poll (which, past the invisible time, loops for ever)
    assert receives_during_commit == [1, 2]
    assert len(results) == 8
    assert queue.drained()
    assert source.overlaps == 0
    worker.close()


def test_stop_gives_a_prefetched_batch_back_at_once() -> None:
    # Given a running worker with batch 1 in the sink and batch 2 prefetched
    queue = MemoryQueue(visibility_timeout=30)
    publish(queue, 8)
    journal: list[tuple[str, str]] = []
    source = SettlingRecording(queue, journal)
    sink = JournalSink(journal)
    release = threading.Event()
    sink.gate = lambda n: release.wait(5)
    worker = Worker(source, make_pipeline(FaultySink(sink)), batch_size=4, wait=0.01)
    thread = run_worker(worker)
    assert source.prefetched.wait(5)
    assert worker.holding  # what a drain asks before it concludes nothing is in hand
    # When it is stopped, and the commit in hand then finishes
    worker.stop()
    started = time.monotonic()
    release.set()
    thread.join(timeout=5)
    # Then it ended promptly: batch 1 stored and acked, batch 2 rejected without being stored
    assert not thread.is_alive()
    assert time.monotonic() - started < 2
    assert not worker.holding
    first = {m for kind, m in journal if kind == "commit"}
    assert first == {"m00", "m01", "m02", "m03"}
    assert {m for kind, m in journal if kind == "ack"} == first
    assert {m for kind, m in journal if kind == "reject"} == {"m04", "m05", "m06", "m07"}
    # And batch 2 can be received again right away, as a second delivery
    again = MemorySource(queue).receive(8, 0)
    assert sorted((m.id, m.delivery_count) for m in again) == [
        (f"m{n:02d}", 2) for n in range(4, 8)
    ]


def test_a_prefetched_batch_is_kept_invisible_while_the_one_before_is_stored() -> None:
    # Given a 0.15 s visibility (real clock), batches of 4 and a first commit that takes 0.6 s
    queue = MemoryQueue(visibility_timeout=0.15)
    publish(queue, 8)
    journal: list[tuple[str, str]] = []
    source = Recording(queue, journal)
    sink = JournalSink(journal)
    sink.gate = lambda n: time.sleep(0.6) if n == 1 else None
    worker = Worker(source, make_pipeline(FaultySink(sink)), batch_size=4, wait=0)
    # When another consumer polls from the moment batch 2 is prefetched until the end
    stolen: list[Message] = []
    done = threading.Event()

    def other_consumer() -> None:
        other = MemorySource(queue)
        source.prefetched.wait(5)
        while not done.is_set():
            stolen.extend(other.receive(8, 0.02))

    thief = threading.Thread(target=other_consumer)
    thief.start()
    try:
        results = worker.run_once() + worker.run_once()
    finally:
        done.set()
        thief.join()
        worker.close()
    # Then nobody else got a message, and all 8 were stored once and acknowledged
    assert stolen == []
    assert [r.disposition for r in results] == [Disposition.STORED] * 8
    assert queue.drained()
    assert source.overlaps == 0


def test_a_full_batch_is_settled_in_the_background_only_while_another_waits() -> None:
    # Given 6 messages in batches of 4: a full batch, then a partial one
    queue = MemoryQueue(visibility_timeout=30)
    publish(queue, 6)
    journal: list[tuple[str, str]] = []
    source = Recording(queue, journal)
    counters = Counters()
    worker = Worker(
        source, make_pipeline(FaultySink(JournalSink(journal)), counters), batch_size=4, wait=0
    )
    # When the worker handles both
    first = worker.run_once()
    second = worker.run_once()
    # Then when the round with no batch after it returns, everything is settled
    assert (len(first), len(second)) == (4, 2)
    assert counters[QUEUE].acknowledged == 6
    assert queue.drained()
    worker.close()


def test_a_source_that_settles_concurrently_is_acked_during_a_prefetch() -> None:
    # Given a source whose ack may run while a receive is in progress, and a prefetch that
    # only returns once the batch before it has been acknowledged
    queue = MemoryQueue(visibility_timeout=30)
    publish(queue, 8)
    journal: list[tuple[str, str]] = []

    class Concurrent(Recording):
        concurrent_settle = True

    source = Concurrent(queue, journal)
    acked_first = threading.Event()
    waited: list[bool] = []
    source.receive_gate = lambda n: waited.append(acked_first.wait(5)) if n == 2 else None
    real_ack = source.ack

    def ack(messages: Sequence[Message]) -> None:
        real_ack(messages)
        acked_first.set()

    source.ack = ack  # type: ignore[method-assign]
    worker = Worker(source, make_pipeline(FaultySink(JournalSink(journal))), batch_size=4, wait=0)
    # When the worker runs two rounds
    results = worker.run_once() + worker.run_once()
    worker.close()
    # Then the ack of batch 1 did not wait for the prefetch of batch 2
    assert waited == [True]
    assert len(results) == 8
    assert queue.drained()


def test_the_keepalive_thread_extends_everything_tracked_until_it_is_settled() -> None:
    # Given a keepalive thread over a source with a 0.06 s visibility
    class Extends(MemorySource):
        calls: list[set[str]]

        def extend(self, messages: Sequence[Message], seconds: float) -> None:
            self.calls.append({m.id for m in messages})

    source = Extends(MemoryQueue(visibility_timeout=0.06))
    source.calls = []
    keepalive = KeepaliveThread(source, QUEUE, threading.Lock(), idle=0.05)
    first, second = [Message("a", b"")], [Message("b", b"")]
    # When a batch is tracked, then a second one (a prefetch), then the first is settled
    keepalive.track(first)
    time.sleep(0.1)
    keepalive.track(second)
    time.sleep(0.1)
    keepalive.untrack(first)
    source.calls.clear()
    time.sleep(0.1)
    # Then only the unsettled one is still extended
    assert source.calls
    assert all(call == {"b"} for call in source.calls)
    assert keepalive.extensions >= 3
    # And without anything tracked the thread ends by itself, and starts again when needed
    keepalive.untrack(second)
    time.sleep(0.2)
    assert keepalive._thread is None
    keepalive.track(first)
    assert keepalive._thread is not None
    keepalive.close()
    assert keepalive._thread is None


def test_untrack_waits_for_an_extension_in_progress() -> None:
    # Given an extension that is stuck in the broker
    entered, release = threading.Event(), threading.Event()

    class Stuck(MemorySource):
        def extend(self, messages: Sequence[Message], seconds: float) -> None:
            entered.set()
            release.wait(5)

    keepalive = KeepaliveThread(
        Stuck(MemoryQueue(visibility_timeout=0.03)), QUEUE, threading.Lock()
    )
    batch = [Message("a", b"")]
    keepalive.track(batch)
    assert entered.wait(5)
    # When the worker wants to settle the message
    settled = threading.Event()

    def settle() -> None:
        keepalive.untrack(batch)
        settled.set()

    threading.Thread(target=settle).start()
    # Then it waits until the extension is over (its handle may be renewed by it)
    assert not settled.wait(0.1)
    release.set()
    assert settled.wait(5)
    assert keepalive.tracked == 0
    keepalive.close()
