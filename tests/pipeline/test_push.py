"""The push entry point: handle now, answer per message (200 committed / 503 transient)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from consumer.formats import get_format
from consumer.pipeline import Counters, Disposition, Pipeline, PushHandler
from consumer.sinks.base import DeadLetter, StoredEvent
from tests.conformance import bodies
from tests.conformance.sink_double import FaultySink, SinkDouble
from tests.pipeline.conftest import QUEUE, FakeTime, message, retry


class ThreadRecordingSink(SinkDouble):
    def __init__(self) -> None:
        super().__init__()
        self.threads: set[int] = set()

    def store(self, events: Sequence[StoredEvent], dead_letters: Sequence[DeadLetter]) -> None:
        self.threads.add(threading.get_ident())
        super().store(events, dead_letters)


def make_handler(sink: FaultySink, counters: Counters, budget: float | None = None) -> PushHandler:
    fake = FakeTime()
    pipeline = Pipeline(
        queue=QUEUE,
        format=get_format(bodies.FORMAT),
        sink=sink,
        retry=retry(attempts=50, initial=1, maximum=1, total=60),
        metrics=counters,
        clock=fake,
        sleep=fake.sleep,
    )
    return PushHandler(pipeline, budget=budget)


def test_pushed_messages_are_answered_per_message_from_one_thread() -> None:
    # Given a push handler over a sink that records which thread stores
    double = ThreadRecordingSink()
    counters = Counters()
    handler = make_handler(FaultySink(double), counters)

    async def pushes() -> list[list[Disposition]]:
        # When three requests arrive at once
        answers = await asyncio.gather(
            handler.handle_async([message(1)]),
            handler.handle_async([message(2, body=bodies.NOT_JSON)]),
            handler.handle_async([message(3), message(4)]),
        )
        return [[r.disposition for r in results] for results in answers]

    try:
        answers = asyncio.run(pushes())
    finally:
        handler.close()
    # Then each gets its own answer, the sink saw one thread, and all were acknowledged
    assert answers == [
        [Disposition.STORED],
        [Disposition.DEAD_LETTERED],
        [Disposition.STORED, Disposition.STORED],
    ]
    assert len(double.threads) == 1
    assert threading.get_ident() not in double.threads
    assert counters[QUEUE].acknowledged == 4
    assert counters[QUEUE].in_flight == 0


def test_an_outage_answers_transient_within_the_push_budget() -> None:
    # Given a database that is down and a sender that waits at most 3 s
    sink = FaultySink(SinkDouble(), outage=True)
    counters = Counters()
    handler = make_handler(sink, counters, budget=3)
    # When a message is pushed
    (result,) = handler.handle([message(1)])
    handler.close()
    # Then the answer is transient (503), after fewer attempts than retry.attempts allows
    assert result.disposition is Disposition.TRANSIENT
    assert not result.committed
    assert sink.calls <= 3
    assert counters[QUEUE].rejected == 1
    assert counters[QUEUE].acknowledged == 0
