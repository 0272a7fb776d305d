"""`Pipeline.handle`: the one entry point, its logs and its counters."""

from __future__ import annotations

from datetime import timedelta

from consumer.config.model import QueueConfig
from consumer.formats import get_format
from consumer.pipeline import Counters, Disposition, Pipeline
from tests.conformance import bodies
from tests.conformance.sink_double import FaultySink, SinkDouble
from tests.pipeline.conftest import QUEUE, FakeTime, captured, message, retry


def pipeline(sink: FaultySink, fake_time: FakeTime, counters: Counters) -> Pipeline:
    return Pipeline(
        queue=QUEUE,
        format=get_format(bodies.FORMAT),
        sink=sink,
        retry=retry(attempts=2),
        max_deliveries=5,
        metrics=counters,
        clock=fake_time,
        sleep=fake_time.sleep,
    )


def test_handle_answers_per_message_in_order(sink: FaultySink, fake_time: FakeTime) -> None:
    # Given a good message, a poison one and one delivered too often
    counters = Counters()
    batch = [message(1), message(2, body=bodies.NOT_JSON), message(3, count=6)]
    # When the pipeline handles them
    results = pipeline(sink, fake_time, counters).handle(batch)
    # Then each result belongs to its message and says what it became
    assert [r.message.id for r in results] == ["m-1", "m-2", "m-3"]
    assert [(r.disposition, r.reason) for r in results] == [
        (Disposition.STORED, None),
        (Disposition.DEAD_LETTERED, "not_json"),
        (Disposition.DEAD_LETTERED, "max_deliveries"),
    ]
    assert all(r.committed for r in results)
    # And the counters saw them received, in flight, written and dead-lettered
    got = counters[QUEUE]
    assert (got.received, got.in_flight, got.events_written, got.dead_lettered) == (3, 3, 1, 2)
    assert got.dead_letter_reasons == {"not_json": 1, "max_deliveries": 1}


def test_settled_counts_acks_rejects_and_latency(sink: FaultySink, fake_time: FakeTime) -> None:
    counters = Counters()
    p = pipeline(sink, fake_time, counters)
    started = fake_time()
    sink.outage = True
    results = p.handle([message(1), message(2)])
    fake_time.now += 0.5
    p.settled(results, started)
    got = counters[QUEUE]
    assert (got.acknowledged, got.rejected, got.in_flight) == (0, 2, 0)
    assert got.processing_seconds[-1] >= 0.5
    assert got.sink_seconds  # every store attempt is timed


def test_an_empty_batch_does_nothing(sink: FaultySink, fake_time: FakeTime) -> None:
    counters = Counters()
    assert pipeline(sink, fake_time, counters).handle([]) == []
    assert sink.calls == 0
    assert counters[QUEUE].received == 0


def test_every_line_about_a_message_carries_its_ids_and_never_its_body(
    sink: FaultySink, fake_time: FakeTime
) -> None:
    # Given a good message and a poison one
    with captured() as logs:
        pipeline(sink, fake_time, Counters()).handle([message(1), message(2, body=bodies.NOT_JSON)])
    # Then the stored one is logged with queue, provider, kind, call_id, event_id, message_id
    # (at debug level: the batch gets one info line with the counts)
    stored = next(line for line in logs if line["event"] == "message stored")
    assert stored["log_level"] == "debug"
    assert stored["queue"] == QUEUE
    assert stored["provider"] == "aliyun_vms"
    assert stored["kind"] == "call.record"
    assert stored["call_id"] == bodies.call_id(1)
    assert len(stored["event_id"]) == 32
    assert stored["message_id"] == "m-1"
    # And the quarantined one with its reason, at warning level
    letter = next(line for line in logs if line["event"].startswith("message quarantined"))
    assert letter["log_level"] == "warning"
    assert (letter["message_id"], letter["reason"]) == ("m-2", "not_json")
    # And the batch has one info line with its counts
    batches = [line for line in logs if line["event"] == "batch stored"]
    assert len(batches) == 1
    assert batches[0]["log_level"] == "info"
    assert {key: batches[0][key] for key in ("queue", "provider", "messages", "events")} == {
        "queue": QUEUE,
        "provider": "aliyun_vms",
        "messages": 2,
        "events": 1,
    }
    assert (batches[0]["stored"], batches[0]["dead_lettered"]) == (1, 1)
    assert batches[0]["left_for_redelivery"] == 0
    # And no line holds a body
    text = repr(logs)
    assert "0571000" not in text
    assert bodies.NOT_JSON.decode() not in text


def test_for_queue_takes_the_queue_settings() -> None:
    config = QueueConfig.model_validate(
        {
            "name": "vms",
            "source": "http",
            "format": "aliyun.voice_report",
            "http": {"path": "/push"},
            "retry": {"attempts": 7, "total": "9s"},
            "max_deliveries": 4,
        }
    )
    p = Pipeline.for_queue(config, FaultySink(SinkDouble()))
    assert (p.queue, p.format.name, p.max_deliveries) == ("vms", "aliyun.voice_report", 4)
    assert p.retry.attempts == 7
    assert p.retry.total == timedelta(seconds=9)
    assert p.provider == "aliyun_vms"
