"""Group commit: what the prefetcher received during a commit is handled as one batch."""

from __future__ import annotations

import threading
import time

import pytest

from consumer.errors import TransientError
from consumer.pipeline import Disposition, Worker, run_worker
from consumer.pipeline.prefetch import AHEAD, Prefetcher, Received
from consumer.sources.memory import MemoryQueue, MemorySource
from tests.conformance.sink_double import FaultySink
from tests.pipeline.test_loop import JournalSink, SettlingRecording, make_pipeline, publish


def backlog(count: int) -> tuple[MemoryQueue, list[tuple[str, str]], SettlingRecording]:
    queue = MemoryQueue(visibility_timeout=30)
    publish(queue, count)
    journal: list[tuple[str, str]] = []
    return queue, journal, SettlingRecording(queue, journal)


def after_receives(source: SettlingRecording, count: int) -> threading.Event:
    """Set once the source has returned `count` batches with messages."""
    seen = threading.Event()
    source.receive_gate = lambda n: seen.set() if n == count else None
    return seen


def test_batches_received_during_a_commit_are_stored_in_one_transaction() -> None:
    # Given 16 messages in batches of 4, and a first commit that waits until 3 more batches
    # have been received
    queue, journal, source = backlog(16)
    sink = JournalSink(journal)
    received = after_receives(source, 4)
    sink.gate = lambda n: received.wait(5) if n == 1 else None
    worker = Worker(source, make_pipeline(FaultySink(sink)), batch_size=4, wait=0)
    # When the worker runs two rounds
    first, second = worker.run_once(), worker.run_once()
    worker.close()
    # Then the second round handled the 12 waiting messages in one transaction
    assert (len(first), len(second)) == (4, 12)
    assert sink.stores == 2
    # And each was acknowledged only after that commit
    assert {r.disposition for r in second} == {Disposition.STORED}
    for result in second:
        message_id = result.message.id
        assert journal.index(("ack", message_id)) > journal.index(("commit", message_id))
    assert queue.drained()
    assert not worker.holding


def test_the_prefetcher_polls_no_more_than_its_bound_ahead() -> None:
    # Given a backlog longer than the bound, and a first commit that outlasts the polls ahead
    _, journal, source = backlog(4 * (AHEAD + 2))
    sink = JournalSink(journal)
    received = after_receives(source, 1 + AHEAD)
    polls: list[int] = []

    def gate(n: int) -> None:
        if n == 1:
            received.wait(5)
            time.sleep(0.2)  # time enough for another poll, were one allowed
            polls.append(source.receives)

    sink.gate = gate
    worker = Worker(source, make_pipeline(FaultySink(sink)), batch_size=4, wait=0)
    # When the worker runs two rounds
    worker.run_once()
    second = worker.run_once()
    worker.close()
    # Then it stopped polling at the bound, and handled what the bound let in as one batch
    assert polls == [1 + AHEAD]
    assert len(second) == 4 * AHEAD


def test_stop_gives_every_prefetched_message_back_at_once() -> None:
    # Given a running worker with batch 1 in the sink and batches 2 and 3 prefetched
    queue, journal, source = backlog(12)
    sink = JournalSink(journal)
    release = threading.Event()
    sink.gate = lambda n: release.wait(5)
    received = after_receives(source, 3)
    worker = Worker(source, make_pipeline(FaultySink(sink)), batch_size=4, wait=0.01)
    thread = run_worker(worker)
    assert received.wait(5)
    # When it is stopped, and the commit in hand then finishes
    worker.stop()
    release.set()
    thread.join(timeout=5)
    # Then batch 1 was stored and acked, and all 8 prefetched messages rejected unstored
    assert not thread.is_alive()
    assert not worker.holding
    first = {m for kind, m in journal if kind == "commit"}
    assert first == {"m00", "m01", "m02", "m03"}
    assert {m for kind, m in journal if kind == "ack"} == first
    assert {m for kind, m in journal if kind == "reject"} == {f"m{n:02d}" for n in range(4, 12)}
    # And they can be received again right away
    again = MemorySource(queue).receive(12, 0)
    assert sorted(m.id for m in again) == [f"m{n:02d}" for n in range(4, 12)]


def test_a_failed_group_commit_rejects_every_message_of_it() -> None:
    # Given 12 messages in batches of 4, and a database that goes down after the first commit,
    # which waits until the other two batches are received
    _, journal, source = backlog(12)
    sink = JournalSink(journal)
    faulty = FaultySink(sink)
    received = after_receives(source, 3)

    def gate(n: int) -> None:
        if n == 1:
            received.wait(5)
            faulty.outage = True

    sink.gate = gate
    worker = Worker(source, make_pipeline(faulty), batch_size=4, wait=0, pause=lambda _: None)
    # When the worker runs two rounds
    worker.run_once()
    second = worker.run_once()
    worker.close()
    # Then the 8 messages of the failed transaction were all rejected, none acknowledged
    assert [r.disposition for r in second] == [Disposition.TRANSIENT] * 8
    ids = {r.message.id for r in second}
    assert {m for kind, m in journal if kind == "reject"} == ids
    assert not ids & {m for kind, m in journal if kind == "ack"}
    assert not worker.holding


def test_a_poll_that_fails_after_others_is_raised_after_their_batch() -> None:
    # Given a prefetcher whose first poll is full and whose second fails
    polls = iter([Received([object()] * 4, 1.0)])  # type: ignore[list-item]

    def receive(wait: float) -> Received:
        for received in polls:
            return received
        raise TransientError("broker gone")

    prefetcher = Prefetcher(receive, "q", batch_size=4)
    prefetcher.start()
    # When the worker takes the prefetched batch, then tries again
    taken = prefetcher.take()
    prefetcher.start()  # a full batch: the worker would poll ahead again
    # Then it got the batch, and the failure comes with the next take, nothing before it lost
    assert taken is not None
    assert len(taken.messages) == 4
    with pytest.raises(TransientError, match="broker gone"):
        prefetcher.take()
    assert prefetcher.take() is None
    prefetcher.close()
