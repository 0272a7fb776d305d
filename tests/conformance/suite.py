"""The conformance suite: the delivery promise, proven against one source at a time.

"A message is acknowledged only after every event it yields is durably stored; delivery is
at-least-once, storage idempotent": nothing lost through rejections, restarts, poison messages and
sink outages; nothing stored twice through redeliveries and provider re-sends.

Modelled on Redpanda Connect's per-connector suites. Subclass `SourceConformance` (the class name
must start with `Test`) and define a `harness` fixture; see harness.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from consumer.pipeline import Disposition
from tests.conformance import bodies
from tests.conformance.harness import QUEUE, Rig, SourceHarness, Store


class SourceConformance:
    @pytest.fixture
    def rig(self, harness: SourceHarness, store: Store) -> Iterator[Rig]:
        yield Rig(harness, store)
        harness.close()

    def test_open_and_close_an_empty_queue(self, rig: Rig) -> None:
        # Given an empty queue
        source = rig.harness.open()
        # When a consumer receives and closes
        got = source.receive(4, 0)
        source.close()
        # Then nothing arrived and the queue is still drained
        assert got == []
        assert rig.harness.drained()

    def test_a_batch_is_stored_then_acknowledged(self, rig: Rig) -> None:
        # Given five receipts on the queue
        for n in range(5):
            rig.harness.publish(bodies.voice_report(n))
        # When the pipeline drains it
        source = rig.harness.open()
        results = rig.drain(source)
        # Then every receipt is one row, and every message was acknowledged
        assert len(rig.store.event_ids()) == 5
        assert {r.disposition for r in results} == {Disposition.STORED}
        assert rig.harness.drained()
        assert rig.counters[QUEUE].acknowledged == 5
        assert rig.counters[QUEUE].in_flight == 0

    def test_at_least_once_through_rejections_and_restarts(self, rig: Rig) -> None:
        # Given messages A..E, of which a consumer acknowledges A, B, D and rejects C, E
        for n in range(5):
            rig.harness.publish(bodies.voice_report(n))
        source = rig.harness.open()
        received = rig.receive(source, 5)
        assert len(received) == 5
        by_body = {message.body: message for message in received}
        keep = [by_body[bodies.voice_report(n)] for n in (0, 1, 3)]
        back = [by_body[bodies.voice_report(n)] for n in (2, 4)]
        source.ack(keep)
        source.reject(back, 0)
        # When the consumer restarts
        source = rig.restart(source)
        again = rig.receive(source, 5, rounds=5)
        # Then exactly C and E come back, each a second time
        assert sorted(m.body for m in again) == sorted(m.body for m in back)
        assert all(m.delivery_count == 2 for m in again)
        source.reject(again, 0)
        # And the pipeline still stores them (and nothing else) after one more restart
        source = rig.restart(source)
        rig.drain(source)
        assert sorted(rig.store.event_ids()) == sorted(
            {r.event_id for r in _events(bodies.voice_report(2), bodies.voice_report(4))}
        )
        assert rig.harness.drained()

    def test_a_crash_between_commit_and_ack_stores_nothing_twice(self, rig: Rig) -> None:
        # Given three messages stored by the pipeline but never acknowledged (a crash)
        for n in range(3):
            rig.harness.publish(bodies.voice_report(n))
        source = rig.harness.open()
        messages = rig.receive(source, 3)
        results = rig.pipeline().handle(messages)
        assert all(result.committed for result in results)
        # When the consumer restarts and the messages are redelivered
        source = rig.restart(source)
        redelivered = rig.drain(source)
        # Then they were handled again, acknowledged, and still stored once each
        assert len(redelivered) == 3
        assert {result.message.delivery_count for result in redelivered} == {2}
        assert len(rig.store.event_ids()) == 3
        assert rig.harness.drained()

    def test_duplicate_deliveries_give_no_duplicate_rows(self, rig: Rig) -> None:
        # Given the provider re-sends the same receipt as new transport messages
        for _ in range(3):
            rig.harness.publish(bodies.voice_report(7))
        rig.harness.publish(bodies.voice_report(7, base64_encoded=True))
        # When the pipeline drains the queue
        rig.drain(rig.harness.open())
        # Then there is one row, and the queue is empty
        assert len(rig.store.event_ids()) == 1
        assert rig.harness.drained()

    def test_poison_messages_are_quarantined_with_their_bytes_and_acknowledged(
        self, rig: Rig
    ) -> None:
        # Given two unparseable bodies between good ones
        rig.harness.publish(bodies.voice_report(1))
        rig.harness.publish(bodies.NOT_JSON)
        rig.harness.publish(bodies.NOT_UTF8)
        rig.harness.publish(bodies.voice_report(2))
        # When the pipeline drains the queue
        rig.drain(rig.harness.open())
        # Then the good ones are stored, the bad ones kept byte for byte, and nothing is left
        assert len(rig.store.event_ids()) == 2
        letters = rig.store.sink.dead_letters()
        assert sorted(letter.payload for letter in letters) == sorted(
            [bodies.NOT_JSON, bodies.NOT_UTF8]
        )
        assert {letter.reason for letter in letters} == {"not_json", "not_utf8"}
        assert all(letter.queue == QUEUE and letter.attempts == 1 for letter in letters)
        assert rig.harness.drained()
        assert rig.counters[QUEUE].dead_lettered == 2

    def test_a_message_delivered_too_often_goes_to_dead_letters(self, rig: Rig) -> None:
        # Given a queue with max_deliveries 2 and a message delivered twice without settling
        rig.max_deliveries = 2
        rig.harness.publish(bodies.voice_report(9))
        source = rig.harness.open()
        for _ in range(2):
            assert len(rig.receive(source, 1)) == 1
            source = rig.restart(source)
        # When it arrives a third time
        rig.drain(source)
        # Then it is quarantined unparsed, with its attempts, and acknowledged
        (letter,) = rig.store.sink.dead_letters()
        assert letter.reason == "max_deliveries"
        assert letter.attempts == 3
        assert letter.payload == bodies.voice_report(9)
        assert rig.store.event_ids() == []
        assert rig.harness.drained()

    def test_a_sink_outage_acknowledges_nothing_and_loses_nothing(self, rig: Rig) -> None:
        # Given three messages and a database that is down
        for n in range(3):
            rig.harness.publish(bodies.voice_report(n))
        rig.store.sink.outage = True
        source = rig.harness.open()
        worker = rig.worker(source)
        # When the worker runs a few rounds
        for _ in range(3):
            results = worker.run_once()
            assert all(r.disposition is Disposition.TRANSIENT for r in results)
            rig.harness.expire_in_flight()
        # Then nothing was acknowledged or stored, and every message is still queued
        assert rig.counters[QUEUE].acknowledged == 0
        assert rig.counters[QUEUE].rejected >= 3
        assert rig.store.event_ids() == []
        assert not rig.harness.drained()
        # And when the database is back, the backlog drains completely
        rig.store.sink.outage = False
        rig.drain(source)
        assert len(rig.store.event_ids()) == 3
        assert rig.store.sink.dead_letters() == []
        assert rig.harness.drained()

    def test_a_shutdown_in_the_middle_of_an_outage_loses_nothing(self, rig: Rig) -> None:
        # Given a worker told to stop while its batch meets a database outage
        for n in range(2):
            rig.harness.publish(bodies.voice_report(n))
        rig.store.sink.outage = True
        source = rig.harness.open()
        worker = rig.worker(source)
        worker.stop()
        results = worker.run_once()
        # Then the batch gave up after one attempt and nothing was acknowledged
        assert {r.disposition for r in results} == {Disposition.TRANSIENT}
        assert rig.store.sink.calls == 1
        assert rig.counters[QUEUE].acknowledged == 0
        # And after a restart with the database back, everything is stored
        rig.store.sink.outage = False
        source = rig.restart(source)
        rig.drain(source)
        assert len(rig.store.event_ids()) == 2
        assert rig.harness.drained()

    def test_a_brief_lock_is_retried_in_place(self, rig: Rig) -> None:
        # Given a database locked for the next two attempts
        for n in range(2):
            rig.harness.publish(bodies.voice_report(n))
        rig.store.sink.lock_errors = 2
        # When the pipeline drains the queue
        rig.drain(rig.harness.open())
        # Then the batch committed after retries, and was never sent back
        assert len(rig.store.event_ids()) == 2
        assert rig.counters[QUEUE].retries == 2
        assert rig.counters[QUEUE].rejected == 0
        assert rig.harness.drained()

    def test_a_row_the_database_refuses_does_not_block_the_queue(self, rig: Rig) -> None:
        # Given a batch in which the database refuses one message's row
        for n in range(4):
            rig.harness.publish(bodies.voice_report(n))
        refused = bodies.call_id(2)
        rig.store.sink.refuse = lambda event: event.normalized.event.call_id == refused
        # When the pipeline drains the queue
        rig.drain(rig.harness.open())
        # Then the others are stored and the offender is quarantined with its bytes
        assert len(rig.store.event_ids()) == 3
        (letter,) = rig.store.sink.dead_letters()
        assert letter.reason == "sink_rejected"
        assert letter.payload == bodies.voice_report(2)
        assert "RefusedRow" in letter.error
        assert rig.harness.drained()


def _events(*raw: bytes) -> Iterator[_EventRef]:
    from consumer.formats import parse

    for body in raw:
        for normalized in parse(bodies.FORMAT, body):
            yield _EventRef(normalized.event.event_id)


class _EventRef:
    def __init__(self, event_id: str) -> None:
        self.event_id = event_id
