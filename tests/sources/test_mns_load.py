"""The MNS source under load and faults: the real Worker loop, MnsSource, SDK and SQLite sink.

Thousands of real Aliyun VMS receipts (base64 text, as Alicom enqueues them) pass through the
fake MNS over sockets while the test re-sends content, loses answers, lapses visibility,
injects 5xx answers and drops connections, and lets Alicom tokens expire mid-run. What must
hold at the end: every good event stored exactly once, every poison message in `dead_letters`
with its bytes, the queue empty.
"""

from __future__ import annotations

import base64
import json
import random
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from consumer.config.model import (
    AccessKeyAuth,
    AlicomTokenAuth,
    MnsConfig,
    RetryConfig,
    SinkConfig,
)
from consumer.formats import get_format
from consumer.pipeline import Counters, Pipeline, Worker, run_worker
from consumer.sinks import SqliteSink, SqlSink, open_sink
from consumer.sources.mns import MnsSource
from consumer.testing.fake_alicom import FakeAlicomServer
from consumer.testing.fake_mns import FakeMnsServer

AK, SK = "LTAIload", "load-secret"
VOICE_REPORT = ("Alicom-Queue-1234567890-VoiceReport", "aliyun.voice_report")
VOICE_CALL_REPORT = ("Alicom-Queue-1234567890-VoiceCallReport", "aliyun.voice_call_report")
FAST_RETRY = RetryConfig(
    attempts=5,
    initial=timedelta(milliseconds=5),
    max=timedelta(milliseconds=50),
    total=timedelta(seconds=5),
)
T0 = datetime(2024, 5, 1, 10, 0, 0)
VR_CODES = ("200000", "200002", "200003", "200005", "200010", "200011", "200007", "200004")
HANGUP = ("用户", "机器")


def _wall(seconds: int) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S")


def _encode(record: Mapping[str, object]) -> str:
    """As Alicom enqueues a receipt: UTF-8 JSON, base64-encoded, as MNS message text."""
    return base64.b64encode(json.dumps(record, ensure_ascii=False).encode()).decode()


def voice_report(n: int, rng: random.Random) -> str:
    """A final VoiceReport (docs/formats.md F1.3) for call n: varied outcome, times and fields."""
    code = rng.choice(VR_CODES)
    answered = code == "200000"
    start = n * 7
    record: dict[str, object] = {
        "call_id": f"1000{n:08d}^1001{n:08d}",
        "out_id": f"order-{n}",
        "originate_time": _wall(start),
        "ring_time": _wall(start + 3),
        "caller": "0571000****",
        "callee": f"138{n:08d}"[:11],
        "status_code": code,
        "status_msg": "执行完成" if answered else "用户未接",
        "voice_type": rng.choice(("voice", "tts", "record")),
        "toll_type": rng.choice(("LOCAL", "DOMESTIC")),
        "end_time": _wall(start + 40),
    }
    if answered:
        duration = rng.randint(1, 600)
        record |= {
            "start_time": _wall(start + 6),
            "duration": str(duration),
            "hangup_direction": rng.choice(HANGUP),
            "end_time": _wall(start + 6 + duration),
        }
        if rng.random() < 0.3:
            record["dtmf"] = str(rng.randint(0, 9))
    return _encode(record)


def voice_call_reports(n: int, rng: random.Random) -> list[str]:
    """The VoiceCallReport status pushes of call n: initiated, ringing, maybe answered, ended."""
    call_id = f"2000{n:08d}^2001{n:08d}"
    steps = [("200101", 0), ("200102", 3)]
    if rng.random() < 0.6:
        steps.append(("200103", 6))
    steps.append(("200100", rng.randint(10, 200)))
    return [
        _encode(
            {
                "status_code": code,
                "status_time": _wall(n * 5 + offset),
                "call_id": call_id,
                "out_id": f"job-{n}",
            }
        )
        for code, offset in steps
    ]


# Poison of every kind a VMS queue can carry: not base64, base64 of non-JSON, truncated JSON,
# JSON that is not an object, a receipt without its call id, an unparseable time.
def poison(n: int) -> str:
    bad_time = {"call_id": f"9{n:07d}^9", "status_code": "200000", "end_time": "yesterday"}
    kinds = (
        f"%%% not base64 #{n}",
        base64.b64encode(b"\x89PNG\r\n\x1a\n" + n.to_bytes(4, "big")).decode(),
        base64.b64encode(f'{{"call_id": "{n}", "status_code": '.encode()).decode(),
        base64.b64encode(f"[{n}, 2, 3]".encode()).decode(),
        _encode({"status_code": "200000", "out_id": f"poison-{n}"}),
        _encode(bad_time),
    )
    return kinds[n % len(kinds)]


@dataclass
class Workload:
    """What was enqueued on one queue, and what must come out of it."""

    queue: str
    format: str
    good: list[str] = field(default_factory=list)
    duplicates: int = 0
    poison: dict[str, str] = field(default_factory=dict)  # MNS message id → body text

    def expected_event_ids(self) -> set[str]:
        fmt = get_format(self.format)
        return {n.event.event_id for body in self.good for n in fmt.parse(body.encode())}


def enqueue(
    mns: FakeMnsServer, queue: str, fmt: str, count: int, *, seed: int, poison_every: int = 100
) -> Workload:
    """`count` messages: distinct receipts, 10% re-sent copies, 1 in `poison_every` poison."""
    rng = random.Random(seed)
    work = Workload(queue, fmt)
    pending: list[str] = []
    n = 0
    for i in range(count):
        if i % poison_every == poison_every // 2:
            body = poison(seed * 100_000 + i)
            work.poison[mns.put_message(queue, body)] = body
            continue
        if work.good and rng.random() < 0.1:
            body = rng.choice(work.good)  # the provider re-sends the same content
            work.duplicates += 1
        else:
            if not pending:
                n += 1
                if fmt == VOICE_REPORT[1]:
                    pending = [voice_report(seed * 100_000 + n, rng)]
                else:
                    pending = voice_call_reports(seed * 100_000 + n, rng)
            body = pending.pop(0)
            work.good.append(body)
        mns.put_message(queue, body)
    return work


def access_key_config(mns: FakeMnsServer, queue: str) -> MnsConfig:
    return MnsConfig(
        endpoint=mns.endpoint,
        queue=queue,
        auth=AccessKeyAuth(mode="access_key", access_key_id=AK, access_key_secret=SecretStr(SK)),
        wait_seconds=1,
    )


@pytest.fixture
def mns() -> Iterator[FakeMnsServer]:
    with FakeMnsServer(seed=11) as server:
        server.add_credentials(AK, SK)
        yield server


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SqlSink]:
    opened = open_sink(SinkConfig(url=f"sqlite:///{tmp_path / 'events.db'}"))
    opened.migrate()
    yield opened
    opened.close()


class Consumers:
    """One Worker thread per queue, each with its own MnsSource (one SDK client per thread)."""

    def __init__(self, sink: SqlSink, sources: dict[str, tuple[MnsSource, str]]) -> None:
        self.counters = Counters()
        self.sources = [source for source, _ in sources.values()]
        self.workers = [
            Worker(
                source,
                Pipeline(
                    queue=queue,
                    format=get_format(fmt),
                    sink=sink,
                    retry=FAST_RETRY,
                    metrics=self.counters,
                ),
                batch_size=16,
                wait=1,
            )
            for queue, (source, fmt) in sources.items()
        ]
        self.threads: list[threading.Thread] = []

    def __enter__(self) -> Consumers:
        self.threads = [run_worker(worker) for worker in self.workers]
        return self

    def __exit__(self, *exc: object) -> None:
        for worker in self.workers:
            worker.stop()
        for thread in self.threads:
            thread.join(timeout=10)
        for source in self.sources:
            source.close()
        assert not any(thread.is_alive() for thread in self.threads), "a worker did not stop"


def wait_until_drained(mns: FakeMnsServer, queues: list[str], timeout: float) -> float:
    """Seconds until every queue holds nothing, visible or in flight; fails after `timeout`."""
    started = time.monotonic()
    while any(mns.stats(queue).total for queue in queues):
        if time.monotonic() - started > timeout:
            left = {queue: mns.stats(queue) for queue in queues}
            pytest.fail(f"queues not drained after {timeout}s: {left}")
        time.sleep(0.05)
    return time.monotonic() - started


def stored(sink: SqlSink) -> list[str]:
    assert isinstance(sink, SqliteSink)
    with sqlite3.connect(sink.path) as db:
        return [row[0] for row in db.execute("SELECT event_id FROM call_events")]


def dead_letters(sink: SqlSink) -> dict[tuple[str, str], bytes]:
    return {(row.queue, row.message_id): row.payload for row in sink.dead_letters()}


def assert_outcome(sink: SqlSink, works: list[Workload]) -> None:
    """Every good event once, every poison message dead-lettered with its exact bytes."""
    expected = set().union(*(work.expected_event_ids() for work in works))
    rows = stored(sink)
    assert len(rows) == len(expected)
    assert set(rows) == expected
    letters = dead_letters(sink)
    assert letters == {
        (work.queue, message_id): body.encode()
        for work in works
        for message_id, body in work.poison.items()
    }


def test_5000_messages_with_duplicates_redeliveries_and_poison_are_stored_once(
    mns: FakeMnsServer, sink: SqlSink
) -> None:
    # Given two Alicom VMS queues holding 5,000 receipts between them: distinct calls, 10%
    # the same content re-sent as new messages, 1% poison
    works = []
    for (queue, fmt), seed in ((VOICE_REPORT, 1), (VOICE_CALL_REPORT, 2)):
        mns.create_queue(queue, visibility_timeout=2)
        works.append(enqueue(mns, queue, fmt, 2500, seed=seed))
    queues = [work.queue for work in works]
    assert sum(len(w.good) + w.duplicates + len(w.poison) for w in works) == 5000
    assert all(w.duplicates > 200 and len(w.poison) == 25 for w in works)
    # And a consumer that crashed holding three batches of each queue (redelivered once their
    # visibility lapses)
    for queue in queues:
        crashed = MnsSource(access_key_config(mns, queue))
        for _ in range(3):
            assert len(crashed.receive(16, 0)) == 16
        crashed.close()
    sources = {w.queue: (MnsSource(access_key_config(mns, w.queue)), w.format) for w in works}
    # When one worker per queue drains them, while MNS loses answers (the SDK re-sends: the
    # first batch stays in flight unseen) and in-flight visibility lapses under the workers
    # (their deletes meet stale handles and the messages come back)
    with Consumers(sink, sources) as consumers:
        for round_ in range(12):
            time.sleep(0.1)
            if round_ % 2:
                mns.lose_answer_next()
            else:
                mns.expire_in_flight(queues[round_ % 4 // 2])
        wait_until_drained(mns, queues, timeout=60)
    # Then every good event is stored once, the poison is quarantined byte for byte, and
    # both queues are empty
    assert_outcome(sink, works)
    counts = consumers.counters.snapshot()
    received = sum(c.received for c in counts.values())
    assert received >= 5000 + 16  # at least one lapsed batch was received again
    assert sum(c.dead_lettered for c in counts.values()) >= 50
    stale = [r for r in mns.requests if r.method == "DELETE" and r.code is not None]
    assert stale, "no delete met a lapsed handle: the redelivery path was not exercised"
    assert all(mns.stats(queue).total == 0 for queue in queues)


def test_expiring_alicom_tokens_are_refreshed_without_a_failed_request(sink: SqlSink) -> None:
    # Given Alicom tokens that live 3 s, judged by an Alicom clock 0.8 s ahead of ours (the
    # skew the refresh margin exists for), and receipts trickling in for about 7 s
    queue, fmt = VOICE_REPORT

    def alicom_clock() -> float:
        return time.time() + 0.8

    with (
        FakeMnsServer(clock=alicom_clock) as mns,
        FakeAlicomServer(mns, accounts={AK: SK}, clock=alicom_clock, token_ttl=3) as alicom,
    ):
        mns.create_queue(queue, visibility_timeout=5)
        auth = AlicomTokenAuth(
            message_type="VoiceReport",
            access_key_id=AK,
            access_key_secret=SecretStr(SK),
            token_endpoint=alicom.endpoint,
        )
        config = access_key_config(mns, queue).model_copy(update={"auth": auth})
        work = Workload(queue, fmt)
        rng = random.Random(5)
        # When the worker consumes them in alicom_token mode
        with Consumers(sink, {queue: (MnsSource(config), fmt)}):
            for n in range(70):
                body = voice_report(n, rng)
                work.good.append(body)
                mns.put_message(queue, body)
                time.sleep(0.1)
            wait_until_drained(mns, [queue], timeout=20)
        # Then several tokens were issued, one at a time as the previous one aged
        assert len(alicom.issued) >= 3
        assert [r.queue_name for r in alicom.requests] == [queue] * len(alicom.requests)
        assert all(r.code == "OK" for r in alicom.requests)
        # And MNS refused no request (no expired or unknown token ever went out), and every
        # request went with one of the issued tokens
        refused = [(r.method, r.status, r.code) for r in mns.requests if r.code is not None]
        assert [c for c in refused if c[2] != "MessageNotExist"] == []
        used = {r.access_key_id for r in mns.requests}
        assert used <= {token.access_key_id for token in alicom.issued}
        assert len(used) >= 3
        assert_outcome(sink, [work])
        assert mns.stats(queue).total == 0


def test_10_percent_5xx_and_dropped_connections_lose_nothing(
    mns: FakeMnsServer, sink: SqlSink
) -> None:
    # Given 1,000 receipts with duplicates and poison, and MNS answering 10% of requests with
    # 503 and dropping 10% of connections (the SDK re-sends once; twice in a row fails)
    queue, fmt = VOICE_CALL_REPORT
    mns.create_queue(queue, visibility_timeout=2)
    work = enqueue(mns, queue, fmt, 1000, seed=3)
    mns.set_faults(error_rate=0.1, error_status=503, error_code="ServiceUnavailable")
    mns.set_faults(drop_rate=0.1)
    # When a worker drains the queue
    with Consumers(sink, {queue: (MnsSource(access_key_config(mns, queue)), fmt)}):
        wait_until_drained(mns, [queue], timeout=60)
    # Then the faults happened on every kind of request, and nothing was lost or doubled
    faults = [r for r in mns.requests if r.status is None or r.code == "ServiceUnavailable"]
    assert {r.method for r in faults} >= {"GET", "DELETE"}
    assert len(faults) > 20
    assert_outcome(sink, [work])
    assert mns.stats(queue).total == 0
