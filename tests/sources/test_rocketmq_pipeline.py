"""Outbound Bot traffic through the fake RocketMQ, the real Worker and the real SQLite sink.

`outbound_bot_traffic` makes the messages Aliyun would publish for a number of calls (every
event type, one- and two-attempt jobs, varied outcomes) together with the `calls` row each call
must end as. The tests drive it: 1,000 calls shuffled with duplicates and poison through two
Workers of one group, and a consumer killed with SIGKILL mid-run and started again (this
module's own worker process, and `consumer run`).

Run as `python -m tests.sources.test_rocketmq_pipeline ENDPOINTS DB` this module is that worker
process: it consumes until SIGTERM (the kill test starts it, and SIGKILLs it).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from consumer.config.model import RetryConfig, RocketMqConfig, SinkConfig
from consumer.formats import get_format
from consumer.pipeline import Counters, Pipeline, Worker, run_worker
from consumer.sinks import open_sink
from tests.runtime.helpers import free_port

TOPIC = "OUTBOUND_BOT_TOPIC"
GROUP = "GID_call_consumer"
QUEUE = "outbound-bot"
FORMAT = "aliyun.outbound_bot"
INSTANCE = "08a4c460-6b1c-4f0e-9c4e-737e069a154f"
T0 = 1714528800000  # 2024-05-01 10:00 Asia/Shanghai, epoch ms

# Final TaskStatus → outcome, by share of calls (docs/formats.md F2.3). Some are sent as numbers.
ANSWERED: list[str | int] = [
    "SucceededFinish",
    "SucceededClientHangUp",
    "SucceededChatbotHangUpAfterSilence",
    24,
]
NO_ANSWER: list[str | int] = ["NoAnswer", 2]
NOT_RINGING = {
    "Busy": "busy",
    "PoweredOff": "powered_off",
    "EmptyNumber": "invalid_number",
    "NotConnected": "unreachable",
    "OutOfService": "out_of_service",
}
JOB_FAILURE = {
    "NoAnswer": "NoAnswer",
    "Busy": "CallFailed",
    "PoweredOff": "CallFailed",
    "EmptyNumber": "EmptyNumber",
    "NotConnected": "CallFailed",
    "OutOfService": "OutOfService",
}

POISON = [
    b'{"eventType":"CallFinished","eventTime":1714528800000,"id":"08a4c460-',  # truncated
    b'{"eventType":"Dialing","eventTime":1714528800000,"id":"\xff\xfe"}',  # not UTF-8
    b'{"eventType":"AgentTransferred","eventTime":1714528800000,"id":"job-x"}',  # unknown type
    b'{"eventType":"JobComplete","eventTime":1714528800000,"id":"job-y","tasks":"none"}',
    b'{"eventType":"Dialing","id":"job-z","tasks":[]}',  # no eventTime
]
POISON_REASONS = {"not_json", "not_utf8", "unknown_event_type", "bad_field", "missing_field"}


@dataclass(frozen=True)
class ExpectedCall:
    """The `calls` row a call must end as, whatever order its events arrived in."""

    outcome: str
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime
    recording_url: str | None
    events: int


@dataclass
class Traffic:
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    """(eventType, body) of every distinct message, in the order the calls happened."""
    calls: dict[str, ExpectedCall] = field(default_factory=dict)
    events: int = 0
    """Normalized events the messages yield: call_events rows."""


@dataclass
class _Attempt:
    call_id: str
    task_id: str
    final: str | int
    outcome: str
    dial: int
    ring: int | None
    answer: int | None
    end: int
    recording: dict[str, Any] | None = None
    callee: str = ""

    def task(self, *, done: bool, planned: int) -> dict[str, Any]:
        task: dict[str, Any] = {
            "id": self.task_id,
            "callId": self.call_id,
            "planedTime": planned,
            "actualTime": self.dial,
            "callingNumber": "057188880000",
            "calledNumber": self.callee,
            "status": self.final if done else "Executing",
        }
        if done:
            task["endTime"] = self.end
        return task


def _ms(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, UTC)


def outbound_bot_traffic(calls: int = 1000, seed: int = 20240501) -> Traffic:
    """Messages for `calls` calls: 60 % answered (Dialing, Ringing, CallAnswered, CallFinished,
    RecordingReady), 30 % unanswered after ringing, 10 % refused at once (busy, powered off,
    ...), one JobComplete per job with all its tasks; a tenth of the jobs take two attempts, the
    first unanswered. 1,000 calls give exactly 5,000 messages."""
    if calls % 10:
        raise ValueError(f"calls must be a multiple of 10, got {calls}")
    rng = random.Random(seed)
    kinds = ["answered"] * (calls * 6 // 10) + ["no_answer"] * (calls * 3 // 10)
    kinds += ["refused"] * (calls // 10)
    rng.shuffle(kinds)
    first_attempts = [i for i, kind in enumerate(kinds) if kind != "answered"][: calls // 10]
    taken = set(first_attempts)
    second = [i for i in range(calls) if i not in taken]
    rng.shuffle(second)
    jobs: list[list[int]] = [[i, second.pop()] for i in first_attempts]
    jobs += [[i] for i in second]
    rng.shuffle(jobs)

    traffic = Traffic()
    for number, job in enumerate(jobs):
        _job(traffic, rng, number, [kinds[i] for i in job])
    return traffic


def _job(traffic: Traffic, rng: random.Random, number: int, kinds: list[str]) -> None:
    job_id = f"5f0e{number:04d}-{rng.getrandbits(32):08x}-4c1d-9a7b-{rng.getrandbits(48):012x}"
    phone = f"1{rng.choice('3578')}{rng.randrange(10**9):09d}"
    planned = T0 + number * 37_000
    common: dict[str, Any] = {
        "instanceId": INSTANCE,
        "groupId": f"8869f35d-{number % 7:04d}-4e2b-b7a3-9b46437bc0fa",
        "id": job_id,
        "extras": [{"key": "TenantId", "value": "1001"}, {"key": "orderNo", "value": f"O{number}"}],
        "contacts": [
            {
                "id": f"762c2e16-{number:08d}",
                "honorific": "先生",
                "name": "张三",
                "phoneNumber": phone,
                "referenceId": f"crm-{number:06d}",
            }
        ],
    }
    attempts: list[_Attempt] = []
    start = planned + rng.randrange(0, 5000)
    for index, kind in enumerate(kinds):
        attempt = _attempt(rng, f"{job_id[:8]}-t{index}-{rng.getrandbits(40):010x}", kind, start)
        attempt.callee = phone
        attempts.append(attempt)
        start = attempt.end + 60_000
    for index, attempt in enumerate(attempts):
        done = [a.task(done=True, planned=planned) for a in attempts[:index]]

        def tasks(final: bool, attempt: _Attempt = attempt, done: list[Any] = done) -> Any:
            return [*done, attempt.task(done=final, planned=planned)]

        def message(event: str, at: int, body: dict[str, Any]) -> None:
            record = {"eventType": event, "eventTime": at, **common, "status": "Executing"}
            traffic.messages.append(
                (event, json.dumps({**record, **body}, ensure_ascii=False).encode())
            )
            traffic.events += 1

        message("Dialing", attempt.dial, {"tasks": tasks(False)})
        if attempt.ring is not None:
            message("Ringing", attempt.ring, {"tasks": tasks(False)})
        if attempt.answer is not None:
            message("CallAnswered", attempt.answer, {"tasks": tasks(False)})
        message("CallFinished", attempt.end, {"tasks": tasks(True)})
        if attempt.recording is not None:
            ready = attempt.end + rng.randrange(2000, 10_000)
            message("RecordingReady", ready, {"tasks": tasks(True), "recording": attempt.recording})
        traffic.calls[attempt.call_id] = ExpectedCall(
            outcome=attempt.outcome,
            started_at=_ms(attempt.dial),
            answered_at=None if attempt.answer is None else _ms(attempt.answer),
            ended_at=_ms(attempt.end),
            recording_url=None if attempt.recording is None else attempt.recording["url"],
            # the call-level messages plus the call.record of JobComplete
            events=3 + (attempt.ring is not None) + 2 * (attempt.answer is not None),
        )
    last = attempts[-1]
    answered = any(a.answer is not None for a in attempts)
    job: dict[str, Any] = {"status": "Succeeded" if answered else "Failed"}
    if not answered:
        job["failureReason"] = JOB_FAILURE.get(str(last.final), "NoAnswer")
    job["tasks"] = [a.task(done=True, planned=planned) for a in attempts]
    completed = {"eventType": "JobComplete", "eventTime": last.end + 1500, **common, **job}
    traffic.messages.append(("JobComplete", json.dumps(completed, ensure_ascii=False).encode()))
    traffic.events += 1 + len(attempts)


def _attempt(rng: random.Random, call_id: str, kind: str, dial: int) -> _Attempt:
    if kind == "refused":
        final: str | int = rng.choice(sorted(NOT_RINGING))
        end = dial + rng.randrange(1000, 5000)
        return _Attempt(call_id, call_id, final, NOT_RINGING[str(final)], dial, None, None, end)
    ring = dial + rng.randrange(1500, 4000)
    if kind == "no_answer":
        end = ring + rng.randrange(30_000, 60_000)
        return _Attempt(call_id, call_id, rng.choice(NO_ANSWER), "no_answer", dial, ring, None, end)
    answer = ring + rng.randrange(2000, 15_000)
    end = answer + rng.randrange(10_000, 300_000)
    url = f"https://obrec-cn-shanghai.oss-cn-shanghai.aliyuncs.com/{INSTANCE}/{call_id}.wav"
    recording = {
        "taskId": call_id,
        "callId": call_id,
        "duration": (end - answer) // 1000,
        "fileName": f"{call_id}.wav",
        "mkvUrl": url.replace(".wav", ".mkv"),
        "url": url,
    }
    attempt = _Attempt(call_id, call_id, rng.choice(ANSWERED), "answered", dial, ring, answer, end)
    attempt.recording = recording
    return attempt


# -- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def modules(rmq: SimpleNamespace) -> tuple[ModuleType, ModuleType]:
    return rmq.fake, rmq.source


@pytest.fixture
def fake(modules: tuple[ModuleType, ModuleType]) -> Iterator[Any]:
    fake_module = modules[0]
    with fake_module.FakeRocketMQ(limits=fake_module.ProxyLimits.relaxed()) as server:
        yield server


def source_config(endpoints: str, invisible: float) -> RocketMqConfig:
    return RocketMqConfig(
        endpoints=endpoints,
        topic=TOPIC,
        group=GROUP,
        invisible_duration=timedelta(seconds=invisible),
    )


FAST_RETRY = RetryConfig(
    attempts=5,
    initial=timedelta(milliseconds=10),
    max=timedelta(milliseconds=100),
    total=timedelta(seconds=5),
)


def publish(fake: Any, traffic: Traffic, duplicates: int, seed: int) -> dict[str, bytes]:
    """Every message, `duplicates` of them re-sent as new messages, and the poison, shuffled;
    returns the poison bodies by message id."""
    rng = random.Random(seed)
    outgoing = [(event, body, False) for event, body in traffic.messages]
    outgoing += [(e, b, False) for e, b in rng.sample(traffic.messages, duplicates)]
    outgoing += [("Unknown", body, True) for body in POISON * 4]
    rng.shuffle(outgoing)
    poison: dict[str, bytes] = {}
    for event, body, bad in outgoing:
        message_id = fake.publish(TOPIC, body, tag=event)
        if bad:
            poison[message_id] = body
    return poison


def read(db: Path, query: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        return conn.execute(query).fetchall()


def assert_calls_match(db: Path, traffic: Traffic) -> None:
    rows = read(
        db,
        "SELECT call_id, outcome, started_at, answered_at, ended_at, recording_url, event_count,"
        " provider FROM calls",
    )
    got = {
        row[0]: (
            ExpectedCall(
                outcome=row[1],
                started_at=datetime.fromisoformat(row[2]),
                answered_at=None if row[3] is None else datetime.fromisoformat(row[3]),
                ended_at=datetime.fromisoformat(row[4]),
                recording_url=row[5],
                events=row[6],
            ),
            row[7],
        )
        for row in rows
    }
    assert len(rows) == len(traffic.calls)
    assert {provider for _, provider in got.values()} == {"aliyun_outbound_bot"}
    wrong = {
        call_id: (got.get(call_id, (None,))[0], expected)
        for call_id, expected in traffic.calls.items()
        if got.get(call_id, (None,))[0] != expected
    }
    assert wrong == {}, f"{len(wrong)} calls differ, e.g. {next(iter(wrong.items()))}"


def assert_poison_quarantined(db: Path, poison: dict[str, bytes]) -> None:
    letters = read(db, "SELECT message_id, payload, reason, queue FROM dead_letters")
    assert {row[0]: bytes(row[1]) for row in letters} == poison
    assert {row[2] for row in letters} == POISON_REASONS
    assert {row[3] for row in letters} == {QUEUE}


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


# -- tests -------------------------------------------------------------------------------------


def test_the_generated_traffic_is_what_the_tests_claim() -> None:
    traffic = outbound_bot_traffic(1000)
    counts: dict[str, int] = {}
    for event, _ in traffic.messages:
        counts[event] = counts.get(event, 0) + 1
    assert len(traffic.messages) == 5000
    assert len(traffic.calls) == 1000
    assert counts == {
        "Dialing": 1000,
        "Ringing": 900,
        "CallAnswered": 600,
        "CallFinished": 1000,
        "RecordingReady": 600,
        "JobComplete": 900,
    }
    outcomes = {call.outcome for call in traffic.calls.values()}
    assert outcomes == {"answered", "no_answer", *NOT_RINGING.values()}
    assert traffic.events == 6000


def test_5000_shuffled_events_for_1000_calls_end_in_1000_correct_rows(
    fake: Any, modules: tuple[ModuleType, ModuleType], tmp_path: Path
) -> None:
    # Given 5,000 Outbound Bot messages for 1,000 calls, 300 re-sent by the provider and 20
    # poison messages, shuffled on the topic
    traffic = outbound_bot_traffic(1000)
    poison = publish(fake, traffic, duplicates=300, seed=7)
    total = len(traffic.messages) + 300 + len(poison)
    db = tmp_path / "events.db"
    sink = open_sink(SinkConfig(url=f"sqlite:///{db}"))
    sink.migrate()
    counters = Counters()
    pipeline = Pipeline(
        queue=QUEUE,
        format=get_format(FORMAT),
        sink=sink,
        retry=FAST_RETRY,
        max_deliveries=5,
        metrics=counters,
    )
    # When two workers of the group (two consumers, like `workers: 2`) consume it
    sources = [
        modules[1].RocketMQSource(source_config(fake.endpoint, 10), max_deliveries=5, min_wait=1)
        for _ in range(2)
    ]
    workers = [Worker(source, pipeline, batch_size=32, wait=1) for source in sources]
    threads = [run_worker(worker) for worker in workers]
    try:
        wait_for(lambda: fake.stats(TOPIC, GROUP).acked == total, 120, "every message acked")
    finally:
        for worker in workers:
            worker.stop()
        for thread in threads:
            thread.join(10)
        for source in sources:
            source.close()
        sink.close()

    # Then every message was acknowledged once its events were stored; nothing is left
    stats = fake.stats(TOPIC, GROUP)
    assert (stats.ready, stats.in_flight, stats.dead_lettered) == (0, 0, 0)
    assert counters[QUEUE].acknowledged == total
    # And each normalized event is one row, the re-sent ones included only once
    (events, distinct) = read(db, "SELECT count(*), count(DISTINCT event_id) FROM call_events")[0]
    assert events == distinct == traffic.events
    # And each call is one row with the outcome, times and recording it must have
    assert_calls_match(db, traffic)
    # And the poison is in dead_letters, byte for byte
    assert_poison_quarantined(db, poison)


@pytest.mark.parametrize("daemon", ["worker", "consumer-run"])
def test_a_consumer_killed_mid_run_loses_and_duplicates_nothing(
    fake: Any, tmp_path: Path, daemon: str
) -> None:
    """`worker`: this module's own worker process; `consumer-run`: the daemon, supervisor and
    worker processes together, killed as one process group."""
    # Given 1,000 messages for 200 calls with poison, and a consumer process consuming them
    # with a 2 s invisible duration; acks travel slowly, so a kill often lands between a
    # commit and its ack (an ack whose sender dies on the way is lost)
    traffic = outbound_bot_traffic(200)
    poison = publish(fake, traffic, duplicates=50, seed=11)
    total = len(traffic.messages) + 50 + len(poison)
    db = tmp_path / "events.db"
    fake.delay("AckMessage", 0.3)
    first = _start(daemon, fake.endpoint, db, tmp_path)
    try:
        wait_for(lambda: _stored(db) >= traffic.events // 3, 60, "a third of the events stored")
        # When it is killed with SIGKILL in the middle of the run
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        time.sleep(0.5)  # acks still on the wire are dropped: their sender is gone
        unsettled = fake.in_flight_ids(TOPIC, GROUP)
        committed = {row[0] for row in read(db, "SELECT DISTINCT message_id FROM call_events")}
        assert unsettled, "the kill should leave messages in flight"
    finally:
        _kill(first)
    # Then the broker still holds them; a new process takes them over after the invisible time
    fake.reset_faults()
    second = _start(daemon, fake.endpoint, db, tmp_path)
    try:
        wait_for(lambda: fake.stats(TOPIC, GROUP).acked == total, 90, "every message acked")
        os.killpg(second.pid, signal.SIGTERM)
        assert second.wait(20) == 0
    finally:
        _kill(second)
    # And every message in flight at the kill came back, those already committed included
    assert all(fake.delivery_attempts(m, TOPIC, GROUP) >= 2 for m in unsettled)
    assert unsettled & committed, "no kill landed between a commit and its ack"
    # And nothing was lost or stored twice
    (events, distinct) = read(db, "SELECT count(*), count(DISTINCT event_id) FROM call_events")[0]
    assert events == distinct == traffic.events
    assert_calls_match(db, traffic)
    assert_poison_quarantined(db, poison)


def _stored(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        return int(read(db, "SELECT count(*) FROM call_events")[0][0])
    except sqlite3.OperationalError:  # not migrated yet
        return 0


def _start(daemon: str, endpoints: str, db: Path, home: Path) -> subprocess.Popen[bytes]:
    """A consumer in a process group of its own, logging to `home`/`daemon`.log."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(root)}
    if daemon == "worker":
        command = ["-m", "tests.sources.test_rocketmq_pipeline", endpoints, str(db)]
    else:
        config = home / "consumer.yaml"
        config.write_text(
            f"""sink: {{url: "sqlite:///{db}"}}
http: {{listen: "127.0.0.1:{free_port()}"}}
queues:
  - name: {QUEUE}
    source: rocketmq
    format: {FORMAT}
    max_deliveries: 5
    retry: {{attempts: 5, initial: 10ms, max: 100ms, total: 5s}}
    rocketmq:
      endpoints: {endpoints}
      topic: {TOPIC}
      group: {GROUP}
      batch_size: 32
      invisible_duration: 2s
"""
        )
        command = ["-m", "consumer", "run", "-c", str(config)]
    log = (home / f"{daemon}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, *command],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def main(argv: list[str]) -> int:
    """The worker process: RocketMQSource + Worker + SQLite until SIGTERM."""
    from consumer.sources.rocketmq import RocketMQSource

    endpoints, db = argv
    sink = open_sink(SinkConfig(url=f"sqlite:///{db}"))
    sink.migrate()
    pipeline = Pipeline(
        queue=QUEUE, format=get_format(FORMAT), sink=sink, retry=FAST_RETRY, max_deliveries=5
    )
    source = RocketMQSource(source_config(endpoints, 2), max_deliveries=5, min_wait=1)
    worker = Worker(source, pipeline, batch_size=32, wait=1)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    try:
        worker.run()
    finally:
        source.close()
        sink.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
