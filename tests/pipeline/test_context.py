"""The log context of a message."""

from __future__ import annotations

from consumer.pipeline.context import message_fields
from tests.pipeline.conftest import unit


def test_a_single_event_message_is_identified_by_its_event() -> None:
    (stored,) = unit(1).events
    fields = message_fields("q", "aliyun_vms", "m-1", [stored])
    event = stored.normalized.event
    assert fields == {
        "queue": "q",
        "provider": "aliyun_vms",
        "message_id": "m-1",
        "kind": "call.record",
        "call_id": event.call_id,
        "event_id": event.event_id,
    }


def test_a_multi_event_message_gives_its_count_and_shared_call() -> None:
    (first,) = unit(1).events
    (second,) = unit(2).events
    same_call = message_fields("q", "p", "m", [first, first])
    assert same_call["call_id"] == first.normalized.event.call_id
    assert "event_id" not in same_call
    mixed = message_fields("q", "p", "m", [first, second])
    assert "call_id" not in mixed
    assert "event_id" not in mixed


def test_a_message_without_events_has_only_its_transport_ids() -> None:
    assert message_fields("q", "p", "m") == {"queue": "q", "provider": "p", "message_id": "m"}
