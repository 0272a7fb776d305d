"""The in-memory source keeps real broker semantics: visibility, redelivery, stale handles."""

from __future__ import annotations

import threading
import time

import pytest

from consumer.errors import TransientError
from consumer.sources.base import Source
from consumer.sources.memory import MemoryQueue, MemorySource


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def queue(clock: FakeClock) -> MemoryQueue:
    return MemoryQueue(visibility_timeout=10, clock=clock)


def test_memory_source_is_a_source(queue: MemoryQueue) -> None:
    assert isinstance(MemorySource(queue), Source)


def test_first_delivery_carries_id_body_count_and_handle(queue: MemoryQueue) -> None:
    # Given two published bodies
    first = queue.publish(b"one")
    queue.publish(b"two", message_id="m-2")
    # When a consumer receives
    got = MemorySource(queue).receive(10, 0)
    # Then they come in order, each on its first delivery with a handle
    assert [(m.id, m.body, m.delivery_count) for m in got] == [
        (first, b"one", 1),
        ("m-2", b"two", 1),
    ]
    assert all(m.handle is not None for m in got)


def test_max_count_limits_a_batch(queue: MemoryQueue) -> None:
    for n in range(5):
        queue.publish(bytes([n]))
    source = MemorySource(queue)
    assert len(source.receive(2, 0)) == 2
    assert len(source.receive(10, 0)) == 3
    with pytest.raises(ValueError, match="max_count must be at least 1"):
        source.receive(0, 0)


def test_a_received_message_is_invisible_until_its_visibility_lapses(
    queue: MemoryQueue, clock: FakeClock
) -> None:
    # Given a message received and never settled
    queue.publish(b"x")
    source = MemorySource(queue)
    (first,) = source.receive(1, 0)
    # When less than the visibility timeout passes, then it stays hidden
    clock.now += 9
    assert source.receive(1, 0) == []
    assert queue.in_flight() == 1
    # When the timeout passes, then it comes back counted twice, with a new handle
    clock.now += 2
    (again,) = source.receive(1, 0)
    assert again.id == first.id
    assert again.delivery_count == 2
    assert again.handle != first.handle


def test_ack_removes_and_acking_twice_is_harmless(queue: MemoryQueue) -> None:
    queue.publish(b"x")
    source = MemorySource(queue)
    messages = source.receive(1, 0)
    source.ack(messages)
    source.ack(messages)
    assert queue.drained()


def test_a_stale_handle_cannot_settle_a_redelivered_message(
    queue: MemoryQueue, clock: FakeClock
) -> None:
    # Given a message whose first delivery lapsed and which was delivered again
    queue.publish(b"x")
    source = MemorySource(queue)
    stale = source.receive(1, 0)
    clock.now += 11
    fresh = source.receive(1, 0)
    # When the first delivery's handle acks it
    source.ack(stale)
    # Then the message is still there, and the current handle removes it
    assert len(queue) == 1
    source.ack(fresh)
    assert queue.drained()


def test_reject_returns_a_message_after_the_delay(queue: MemoryQueue, clock: FakeClock) -> None:
    queue.publish(b"x")
    source = MemorySource(queue)
    source.reject(source.receive(1, 0), 3)
    clock.now += 2
    assert source.receive(1, 0) == []
    clock.now += 1
    (again,) = source.receive(1, 0)
    assert again.delivery_count == 2


def test_extend_keeps_a_message_hidden_past_its_timeout(
    queue: MemoryQueue, clock: FakeClock
) -> None:
    queue.publish(b"x")
    source = MemorySource(queue)
    messages = source.receive(1, 0)
    clock.now += 8
    source.extend(messages, 10)
    clock.now += 8  # 16 s after receive, past the original 10 s
    assert source.receive(1, 0) == []
    source.ack(messages)
    assert queue.drained()


def test_a_restart_sees_in_flight_messages_only_after_they_lapse(
    queue: MemoryQueue, clock: FakeClock
) -> None:
    # Given a consumer that received a message and went away without settling it
    queue.publish(b"x")
    old = MemorySource(queue)
    old.receive(1, 0)
    old.close()
    # When a new consumer connects over the same queue
    new = MemorySource(queue)
    # Then the message is still in flight, and comes back once its visibility lapses
    assert new.receive(1, 0) == []
    queue.expire_in_flight()
    assert [m.delivery_count for m in new.receive(1, 0)] == [2]
    with pytest.raises(RuntimeError, match="closed"):
        old.receive(1, 0)


def test_receive_waits_for_a_message_published_meanwhile() -> None:
    # Given an empty queue on the real clock and a publisher 50 ms later
    queue = MemoryQueue(visibility_timeout=30)
    timer = threading.Timer(0.05, queue.publish, args=(b"late",))
    timer.start()
    # When a consumer long-polls for up to 5 s
    got = MemorySource(queue).receive(1, 5)
    timer.join()
    # Then the message arrives in that poll
    assert [m.body for m in got] == [b"late"]


def test_receive_returns_empty_after_waiting() -> None:
    queue = MemoryQueue(visibility_timeout=30)
    started = time.monotonic()
    assert MemorySource(queue).receive(1, 0.05) == []
    assert time.monotonic() - started >= 0.04


def test_an_unavailable_queue_raises_transient_errors(queue: MemoryQueue) -> None:
    queue.publish(b"x")
    source = MemorySource(queue)
    messages = source.receive(1, 0)
    queue.unavailable = True
    with pytest.raises(TransientError):
        source.receive(1, 0)
    with pytest.raises(TransientError):
        source.ack(messages)
    queue.unavailable = False
    source.ack(messages)
    assert queue.drained()


def test_bad_arguments_are_named(queue: MemoryQueue) -> None:
    queue.publish(b"x", message_id="same")
    with pytest.raises(ValueError, match="'same' is already queued"):
        queue.publish(b"y", message_id="same")
    with pytest.raises(ValueError, match="visibility_timeout must be positive"):
        MemoryQueue(visibility_timeout=0)


def test_a_source_may_use_its_own_visibility(queue: MemoryQueue, clock: FakeClock) -> None:
    queue.publish(b"x")
    source = MemorySource(queue, visibility_timeout=2)
    assert source.visibility_timeout == 2
    source.receive(1, 0)
    clock.now += 3
    assert len(source.receive(1, 0)) == 1
