"""A message slow to normalize costs its batch-mates nothing: none of them comes back.

Where things run (the design, docs/security.md "Decoding limits"): the visibility keepalive is
a thread of its own that takes only the source's lock, never anything normalization holds, and
normalization can hold the interpreter for one bounded C call at most (linear decoding, a
4 MiB body cap). So a neighbour's slow body delays its batch-mates' commit, never their
extension: they are not redelivered, and their delivery count never reaches `max_deliveries`.

Three quadratic bodies among 200 good messages once held the interpreter for seconds each:
handles went stale, batches came back, and good messages were dead-lettered as past
`max_deliveries` after having been stored. These run the real fake MNS, SDK, worker loop,
pipeline and SQLite sink.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumer.config.model import SinkConfig
from consumer.formats import Format, get_format
from consumer.model import Normalized
from consumer.pipeline import Counters, Pipeline, Worker, run_worker
from consumer.sinks import SqlSink, open_sink
from consumer.sources.mns import MnsSource
from consumer.testing.fake_mns import FakeMnsServer
from tests.sources.test_mns_load import (
    AK,
    FAST_RETRY,
    SK,
    VOICE_REPORT,
    access_key_config,
    stored,
    voice_report,
    wait_until_drained,
)

QUEUE, FORMAT = VOICE_REPORT
MAX_DELIVERIES = 2
# The body that held the old base64 regex for about 13 s: a letter, newlines up to MNS's
# 64 KB message limit, a `!`.
NEWLINE_BOMB = "a" + "\n" * 60_000 + "!"


@pytest.fixture
def mns() -> Iterator[FakeMnsServer]:
    with FakeMnsServer(seed=7) as server:
        server.add_credentials(AK, SK)
        yield server


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SqlSink]:
    opened = open_sink(SinkConfig(url=f"sqlite:///{tmp_path / 'events.db'}"))
    opened.migrate()
    yield opened
    opened.close()


def drain(mns: FakeMnsServer, sink: SqlSink, fmt: Format, timeout: float) -> Counters:
    """One worker (batches of 16, prefetching) drains the queue; its counters."""
    counters = Counters()
    pipeline = Pipeline(
        queue=QUEUE,
        format=fmt,
        sink=sink,
        retry=FAST_RETRY,
        max_deliveries=MAX_DELIVERIES,
        metrics=counters,
    )
    source = MnsSource(access_key_config(mns, QUEUE))
    worker = Worker(source, pipeline, batch_size=16, wait=1)
    thread = run_worker(worker)
    try:
        wait_until_drained(mns, [QUEUE], timeout=timeout)
    finally:
        worker.stop()
        thread.join(timeout=30)
        source.close()
    assert not thread.is_alive()
    return counters


def enqueue_good(mns: FakeMnsServer, count: int, slow: set[int]) -> set[str]:
    """`count` good receipts; the `slow` indexes get a marker for `slow_format`. Their events."""
    rng = random.Random(3)
    expected: set[str] = set()
    fmt = get_format(FORMAT)
    for n in range(count):
        body = voice_report(n, rng)
        expected |= {item.event.event_id for item in fmt.parse(body.encode())}
        mns.put_message(QUEUE, ("SLOW" if n in slow else "") + body)
    return expected


def test_quadratic_bodies_among_200_good_messages_cost_them_nothing(
    mns: FakeMnsServer, sink: SqlSink
) -> None:
    # Given a queue (2 s visibility, max_deliveries 2) of 200 good receipts with three newline
    # bombs among them
    mns.create_queue(QUEUE, visibility_timeout=2)
    rng = random.Random(1)
    bombs: set[str] = set()
    expected: set[str] = set()
    fmt = get_format(FORMAT)
    for n in range(203):
        if n in (40, 41, 120):
            bombs.add(mns.put_message(QUEUE, NEWLINE_BOMB))
            continue
        body = voice_report(n, rng)
        expected |= {item.event.event_id for item in fmt.parse(body.encode())}
        mns.put_message(QUEUE, body)
    # When a worker drains it
    counters = drain(mns, sink, fmt, timeout=60)
    # Then every good event is stored once, only the bombs are dead letters (on their first
    # delivery, as not JSON), no message was received twice, and the queue is empty
    rows = stored(sink)
    assert sorted(rows) == sorted(expected)
    letters = sink.dead_letters()
    assert {letter.message_id for letter in letters} == bombs
    assert {(letter.reason, letter.attempts) for letter in letters} == {("not_json", 1)}
    assert counters[QUEUE].received == 203
    assert mns.stats(QUEUE).total == 0


def slow_format(seconds: float) -> Format:
    """The voice report format, spending `seconds` of pure-Python CPU on a `SLOW` body first."""
    real = get_format(FORMAT)

    def parse(body: bytes) -> list[Normalized]:
        if body.startswith(b"SLOW"):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                pass
            body = body.removeprefix(b"SLOW")
        return real.parse(body)

    return Format(FORMAT, real.provider, parse)


def test_a_message_slower_than_the_visibility_timeout_keeps_its_batch_mates_invisible(
    mns: FakeMnsServer, sink: SqlSink
) -> None:
    # Given a 3 s visibility, and 48 good receipts of which one takes 4.5 s of CPU to normalize
    mns.create_queue(QUEUE, visibility_timeout=3)
    expected = enqueue_good(mns, 48, slow={5})
    # When a worker drains the queue
    counters = drain(mns, sink, slow_format(4.5), timeout=60)
    # Then the slow message's batch-mates were kept invisible (extended, never received twice),
    # everything is stored once and nothing is a dead letter
    assert counters[QUEUE].received == 48
    assert sorted(stored(sink)) == sorted(expected)
    assert sink.dead_letters() == []
    extended = [r for r in mns.requests if r.method == "PUT" and "VisibilityTimeout" in r.query]
    assert len(extended) >= 16
    assert mns.stats(QUEUE).total == 0
