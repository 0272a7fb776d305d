"""Message to unit: events, or a dead letter with the raw bytes and the reason."""

from __future__ import annotations

import pytest

from consumer.errors import InvalidMessage
from consumer.formats import Format, get_format
from consumer.model import Normalized, Provider
from consumer.pipeline.normalize import prepare
from tests.conformance import bodies
from tests.pipeline.conftest import QUEUE, RECEIVED, captured, message

VOICE_REPORT = get_format(bodies.FORMAT)


def _format(parse: object) -> Format:
    return Format("test.format", Provider.MOOR7, parse)  # type: ignore[arg-type]


def test_a_good_message_becomes_its_events_with_where_and_when() -> None:
    # Given a VoiceReport receipt
    # When it is prepared
    got = prepare(
        message(1, count=2), queue=QUEUE, fmt=VOICE_REPORT, max_deliveries=10, received_at=RECEIVED
    )
    # Then it holds one event, tagged with the queue, the transport id and the receive time
    assert got.dead_letter is None
    (stored,) = got.events
    assert stored.normalized.event.call_id == bodies.call_id(1)
    assert (stored.queue, stored.message_id, stored.received_at) == (QUEUE, "m-1", RECEIVED)


def test_an_invalid_message_becomes_a_dead_letter_with_its_raw_bytes() -> None:
    got = prepare(
        message(1, count=3, body=bodies.NOT_UTF8),
        queue=QUEUE,
        fmt=VOICE_REPORT,
        max_deliveries=10,
        received_at=RECEIVED,
    )
    assert got.events == ()
    letter = got.dead_letter
    assert letter is not None
    assert (letter.reason, letter.payload, letter.attempts) == ("not_utf8", bodies.NOT_UTF8, 3)
    assert "not UTF-8" in letter.error
    assert (letter.queue, letter.message_id, letter.seen_at) == (QUEUE, "m-1", RECEIVED)


def test_past_max_deliveries_a_message_is_quarantined_without_parsing() -> None:
    # Given a format that must not be called, and a message on its 4th delivery of max 3
    def explode(body: bytes) -> list[Normalized]:
        raise AssertionError("parsed a message past max_deliveries")

    # When it is prepared
    got = prepare(
        message(1, count=4),
        queue=QUEUE,
        fmt=_format(explode),
        max_deliveries=3,
        received_at=RECEIVED,
    )
    # Then it is a max_deliveries dead letter counting its attempts
    assert got.dead_letter is not None
    assert got.dead_letter.reason == "max_deliveries"
    assert got.dead_letter.attempts == 4
    assert got.dead_letter.error == "delivered 4 times, more than max_deliveries 3"


def test_at_max_deliveries_a_message_is_still_parsed() -> None:
    got = prepare(
        message(1, count=3), queue=QUEUE, fmt=VOICE_REPORT, max_deliveries=3, received_at=RECEIVED
    )
    assert len(got.events) == 1


def test_a_bug_in_a_format_module_is_quarantined_as_normalizer_error_and_logged() -> None:
    # Given a format module with a bug
    def buggy(body: bytes) -> list[Normalized]:
        fields: dict[str, Normalized] = {}
        return [fields["missing"]]

    # When a message is prepared
    with captured() as logs:
        got = prepare(
            message(1), queue=QUEUE, fmt=_format(buggy), max_deliveries=10, received_at=RECEIVED
        )
    # Then it is a normalizer_error dead letter naming the exception, and an error was logged
    assert got.dead_letter is not None
    assert got.dead_letter.reason == "normalizer_error"
    assert got.dead_letter.error == "test.format: KeyError: 'missing'"
    (line,) = logs
    assert line["log_level"] == "error"
    assert line["message_id"] == "m-1"
    assert line["queue"] == QUEUE
    assert line["exc_info"] is True


def test_a_format_that_returns_no_events_is_a_normalizer_error() -> None:
    got = prepare(
        message(1),
        queue=QUEUE,
        fmt=_format(lambda body: []),
        max_deliveries=10,
        received_at=RECEIVED,
    )
    assert got.dead_letter is not None
    assert got.dead_letter.reason == "normalizer_error"
    assert "no events" in got.dead_letter.error


@pytest.mark.parametrize(("reason", "detail"), [("missing_field", "call_id is missing")])
def test_the_reason_code_of_invalid_message_is_kept(reason: str, detail: str) -> None:
    def refuse(body: bytes) -> list[Normalized]:
        raise InvalidMessage(reason, detail)

    got = prepare(
        message(1), queue=QUEUE, fmt=_format(refuse), max_deliveries=10, received_at=RECEIVED
    )
    assert got.dead_letter is not None
    assert (got.dead_letter.reason, got.dead_letter.error) == (reason, detail)
