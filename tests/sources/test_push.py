"""The push source on its own: requests wait for the commit thread, and settling answers them."""

from __future__ import annotations

import asyncio

import pytest

from consumer.errors import Overloaded
from consumer.sources.base import Message, Source
from consumer.sources.push import Answer, PushSource


def body(n: int, size: int = 10) -> Message:
    return Message(f"http-{n}", bytes([48 + n % 10]) * size)


def test_it_is_a_source_without_visibility() -> None:
    source = PushSource("q")
    assert isinstance(source, Source)
    assert source.visibility_timeout is None
    assert not source.concurrent_settle


def test_what_waits_is_received_as_one_batch_within_its_bounds_and_answered_per_message() -> None:
    # Given a source taking batches of at most 3 messages and 25 bytes
    source = PushSource("q", max_batch=3, max_batch_bytes=25)

    async def scenario() -> tuple[list[list[str]], list[Answer]]:
        # When five requests wait, and the commit thread receives until none is left
        pushes = [asyncio.ensure_future(source.submit(body(n))) for n in range(5)]
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        batches = []
        while batch := await loop.run_in_executor(None, source.receive, 16, 0.0):
            batches.append(batch)
        # and acknowledges the first and last batches, and rejects the second
        source.record([_Stored(m, "dead_lettered") for m in batches[0][:1]])
        await loop.run_in_executor(None, source.ack, batches[0] + batches[2])
        await loop.run_in_executor(None, source.reject, batches[1], 5.0)
        answers = await asyncio.gather(*pushes)
        return [[m.id for m in batch] for batch in batches], answers

    batches, answers = asyncio.run(scenario())
    # Then the batches kept the byte bound (2 bodies of 10 bytes each, the rest after)
    assert batches == [["http-0", "http-1"], ["http-2", "http-3"], ["http-4"]]
    # and each request got its own answer: committed with its disposition, or not
    assert answers == [
        Answer(True, "dead_lettered"),
        Answer(True, "stored"),
        Answer(False, "transient"),
        Answer(False, "transient"),
        Answer(True, "stored"),
    ]


def test_past_the_waiting_bound_a_request_is_refused_at_once() -> None:
    # Given a source on which at most two requests may wait, and two waiting
    source = PushSource("q", max_pending=2)

    async def scenario() -> None:
        waiting = [asyncio.ensure_future(source.submit(body(n))) for n in range(2)]
        await asyncio.sleep(0)
        # When a third arrives, Then it is refused without waiting
        with pytest.raises(Overloaded):
            await source.submit(body(2))
        for future in waiting:
            future.cancel()

    asyncio.run(scenario())


def test_enqueue_is_submit_without_its_coroutine() -> None:
    # Given a source on which at most one request may wait
    source = PushSource("q", max_pending=1)

    async def scenario() -> tuple[list[str], Answer]:
        # When the listener enqueues a body, and then one more
        future = source.enqueue("http-1", b"{}")
        # Then the second is refused at once, before anything is awaited
        with pytest.raises(Overloaded):
            source.enqueue("http-2", b"{}")
        # and the first is received as a message of the first delivery, answered by its future
        loop = asyncio.get_running_loop()
        batch = await loop.run_in_executor(None, source.receive, 16, 0.0)
        assert [(m.body, m.delivery_count) for m in batch] == [(b"{}", 1)]
        await loop.run_in_executor(None, source.ack, batch)
        return [m.id for m in batch], await future

    assert asyncio.run(scenario()) == (["http-1"], Answer(True, "stored"))


def test_a_request_whose_client_hung_up_is_still_committed_and_drained() -> None:
    # Given a request that waits for its commit
    source = PushSource("q")

    async def scenario() -> list[Message]:
        request = asyncio.ensure_future(source.submit(body(1)))
        await asyncio.sleep(0)
        # When its client hangs up (the handler is cancelled)
        request.cancel()
        await asyncio.sleep(0)
        # Then its message is still received, and settling it completes the drain
        loop = asyncio.get_running_loop()
        batch = await loop.run_in_executor(None, source.receive, 16, 0.0)
        await loop.run_in_executor(None, source.ack, batch)
        await asyncio.wait_for(source.drain(), 5)
        return batch

    assert [m.id for m in asyncio.run(scenario())] == ["http-1"]


def test_drain_waits_for_the_commit_of_a_request_whose_client_hung_up() -> None:
    # Given a request that waits for its commit, and two drains started
    source = PushSource("q")

    async def scenario() -> list[bool]:
        request = asyncio.ensure_future(source.submit(body(1)))
        await asyncio.sleep(0)
        drains = [asyncio.ensure_future(source.drain()) for _ in range(2)]
        # When its client hangs up (the handler is cancelled) and the commit thread receives it
        request.cancel()
        loop = asyncio.get_running_loop()
        batch = await loop.run_in_executor(None, source.receive, 16, 0.0)
        for _ in range(5):
            await asyncio.sleep(0)
        # Then the handler is cancelled, but no drain ends before the message is settled
        waited = [request.cancelled()] + [not d.done() for d in drains]
        await loop.run_in_executor(None, source.ack, batch)
        await asyncio.wait_for(asyncio.gather(*drains), 5)
        return waited

    assert asyncio.run(scenario()) == [True, True, True]


def test_settling_a_batch_wakes_the_event_loop_once() -> None:
    # Given 20 requests received as one batch
    source = PushSource("q")
    hops: list[int] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        pushes = [asyncio.ensure_future(source.submit(body(n))) for n in range(20)]
        await asyncio.sleep(0)
        batch = await loop.run_in_executor(None, source.receive, 64, 0.0)
        threadsafe = loop.call_soon_threadsafe

        def counting(*args: object) -> object:
            if getattr(args[0], "__self__", None) is source:  # not the executor's own wake-ups
                hops.append(1)
            return threadsafe(*args)  # type: ignore[arg-type]

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        # When the commit thread acknowledges them
        await loop.run_in_executor(None, source.ack, batch)
        await asyncio.gather(*pushes)

    asyncio.run(scenario())
    # Then one hop to the event loop answered all 20
    assert hops == [1]


def test_close_wakes_a_receive_and_refuses_new_requests() -> None:
    # Given a receive waiting for a request
    source = PushSource("q")

    async def scenario() -> list[Message]:
        loop = asyncio.get_running_loop()
        waiting = loop.run_in_executor(None, source.receive, 16, 30.0)
        await asyncio.sleep(0.05)
        # When the source is closed, Then the receive returns empty and new requests are refused
        source.close()
        got = await asyncio.wait_for(waiting, 5)
        with pytest.raises(Overloaded):
            await source.submit(body(1))
        return got

    assert asyncio.run(scenario()) == []


class _Stored:
    def __init__(self, message: Message, disposition: str) -> None:
        self.message = message
        self.disposition = disposition
