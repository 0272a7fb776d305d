"""A push queue's commits: the loop over its source, answering per message (200 committed /
503 transient), one thread for the sink."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from consumer.formats import get_format
from consumer.pipeline import Counters, Disposition, Pipeline, PushCommits
from consumer.pipeline.push import BATCH_MESSAGES
from consumer.sinks.base import DeadLetter, StoredEvent
from consumer.sources.push import Answer, PushSource
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


class BuggySink(SinkDouble):
    def store(self, events: Sequence[StoredEvent], dead_letters: Sequence[DeadLetter]) -> None:
        raise AssertionError("a bug in the sink")


def make_commits(
    sink: FaultySink | SinkDouble, counters: Counters, budget: float | None = None
) -> PushCommits:
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
    return PushCommits(PushSource(QUEUE), pipeline, budget=budget)


def push(commits: PushCommits, *numbers: int, body: bytes | None = None) -> list[Answer]:
    """Submit one request per number at once; their answers once all are settled."""

    async def requests() -> list[Answer]:
        answers = await asyncio.gather(
            *(commits.source.submit(message(n, body=body)) for n in numbers)
        )
        await commits.source.drain()
        return list(answers)

    return asyncio.run(requests())


def test_pushed_messages_are_answered_per_message_from_one_thread() -> None:
    # Given a push queue over a sink that records which thread stores
    double = ThreadRecordingSink()
    counters = Counters()
    commits = make_commits(FaultySink(double), counters)

    async def pushes() -> list[str]:
        # When four requests arrive at once, one of them not JSON
        answers = await asyncio.gather(
            commits.source.submit(message(1)),
            commits.source.submit(message(2, body=bodies.NOT_JSON)),
            commits.source.submit(message(3)),
            commits.source.submit(message(4)),
        )
        return [answer.disposition for answer in answers]

    try:
        answers = asyncio.run(pushes())
    finally:
        commits.close()
    # Then each gets its own answer, the sink saw one thread, and all were acknowledged
    assert answers == [
        Disposition.STORED,
        Disposition.DEAD_LETTERED,
        Disposition.STORED,
        Disposition.STORED,
    ]
    assert len(double.threads) == 1
    assert threading.get_ident() not in double.threads
    assert counters[QUEUE].acknowledged == 4
    assert counters[QUEUE].in_flight == 0


def test_an_outage_answers_transient_within_the_push_budget() -> None:
    # Given a database that is down and a sender that waits at most 3 s
    sink = FaultySink(SinkDouble(), outage=True)
    counters = Counters()
    commits = make_commits(sink, counters, budget=3)
    # When a message is pushed
    try:
        (answer,) = push(commits, 1)
    finally:
        commits.close()
    # Then the answer is transient (503), after fewer attempts than retry.attempts allows
    assert answer.disposition == Disposition.TRANSIENT
    assert not answer.committed
    assert sink.calls <= 3
    assert counters[QUEUE].rejected == 1
    assert counters[QUEUE].acknowledged == 0
    # and readiness is told why
    assert commits.last_failure is not None


def test_a_bug_in_the_sink_answers_transient_and_the_next_commit_goes_through() -> None:
    # Given a sink that raises what is no database error, then a working one
    counters = Counters()
    commits = make_commits(BuggySink(), counters)
    try:
        # When a message is pushed
        (answer,) = push(commits, 1)
        # Then it is answered 503, nothing acknowledged, and readiness is told
        assert (answer.committed, answer.disposition) == (False, Disposition.TRANSIENT)
        assert counters[QUEUE].acknowledged == 0
        assert commits.last_failure is not None
        # When the sink works again, Then the next push is stored and the failure forgotten
        commits.pipeline.sink = SinkDouble()
        (answer,) = push(commits, 2)
        assert (answer.committed, answer.disposition) == (True, Disposition.STORED)
        assert commits.last_failure is None
    finally:
        commits.close()


def test_the_batch_sizes_are_observed_per_commit() -> None:
    # Given a push queue whose sink is held up by its first commit
    entered, release = threading.Event(), threading.Event()

    class Held(SinkDouble):
        def store(self, events: Sequence[StoredEvent], dead_letters: Sequence[DeadLetter]) -> None:
            entered.set()
            release.wait(10)
            super().store(events, dead_letters)

    double = Held()
    commits = make_commits(double, Counters())
    BATCH_MESSAGES.labels(QUEUE)  # its samples exist from here
    before = _observations()

    async def pushes() -> None:
        first = asyncio.ensure_future(commits.source.submit(message(1)))
        while not entered.is_set():
            await asyncio.sleep(0.001)
        # When three more arrive while it commits
        rest = [asyncio.ensure_future(commits.source.submit(message(n))) for n in (2, 3, 4)]
        while commits.source.waiting < 3:
            await asyncio.sleep(0.001)
        release.set()
        await asyncio.gather(first, *rest)

    try:
        asyncio.run(pushes())
    finally:
        commits.close()
    # Then two commits were observed: the first alone, then the three together
    count, total = _observations()
    assert (count - before[0], total - before[1]) == (2, 4)
    assert double.commits == 2


def _observations() -> tuple[float, float]:
    """How many batches `consumer_push_batch_messages` observed for QUEUE, and their sum."""
    samples = {
        sample.name: sample.value
        for metric in BATCH_MESSAGES.collect()
        for sample in metric.samples
        if sample.labels.get("queue") == QUEUE
    }
    name = "consumer_push_batch_messages"
    return samples[f"{name}_count"], samples[f"{name}_sum"]
