"""Durations as an operator writes them, and the ordering rule every backoff section shares."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from consumer.config.fields import parse_duration
from consumer.config.model import RecordingsRetry, RetryConfig

pytestmark = pytest.mark.timeout(60, method="thread")  # a quadratic relapse takes minutes

SPACES = " " * 100_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("1.5m", timedelta(seconds=90)),
        ("2h", timedelta(hours=2)),
        ("7", timedelta(seconds=7)),
        ("  1 s  ", timedelta(seconds=1)),
        ("\t30s\n", timedelta(seconds=30)),
        ("1" + SPACES, timedelta(seconds=1)),
        (SPACES + "1s" + SPACES, timedelta(seconds=1)),
        ("1" + SPACES + "m", timedelta(minutes=1)),
    ],
)
def test_a_duration_is_a_number_and_an_optional_unit_between_spaces(
    text: str, expected: timedelta
) -> None:
    # Given a duration as written in the file
    # When it is parsed
    # Then it is that many seconds, whatever the whitespace around it
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        SPACES,
        "s",
        "1.s",
        "1 d",
        "1s 2s",
        "-1s",
        "1" + SPACES + "x",  # once quadratic: each split of the spaces tried in turn
        "1s" + SPACES + "x",
        "1" + SPACES + "s" + SPACES + "x",
    ],
)
def test_anything_else_is_not_a_duration(text: str) -> None:
    # Given text that is not a duration
    # When it is parsed
    # Then the error names what a duration looks like
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_numbers_are_seconds_and_true_is_left_to_the_model() -> None:
    # Given a bare number, and a boolean (which the model then refuses)
    # When they are parsed
    # Then the number is seconds and the boolean passes through unchanged
    assert parse_duration(2.5) == timedelta(seconds=2.5)
    assert parse_duration(True) is True


@pytest.mark.parametrize("section", [RetryConfig, RecordingsRetry])
def test_a_backoff_starts_no_longer_than_its_longest_wait(
    section: type[RetryConfig] | type[RecordingsRetry],
) -> None:
    # Given a retry section whose first wait is longer than its longest
    # When it is validated
    # Then it is refused, and an equal pair is accepted
    with pytest.raises(ValidationError, match="initial must not be longer than max"):
        section.model_validate({"initial": "2m", "max": "1m"})
    assert section.model_validate({"initial": "1m", "max": "60s"}).max == timedelta(minutes=1)
