"""Huawei's code tables (formats.md F3.8): numeric codes, Q.850 causes and SIP final codes."""

from __future__ import annotations

import pytest

from consumer.formats import huawei_codes
from consumer.model import Outcome

# --- codes (F3.8) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *[("0", 0), ("518", 518), ("-1", -1), ("+480", 480), (None, None)],
        *[("abc", None), ("²", None), ("1" * 10, None), ("", None), ("4.5", None)],
    ],
)
def test_codes_are_whole_numbers_or_nothing(raw: str | None, expected: int | None) -> None:
    # Given a code's text, When read as a number, Then junk is "not a number", never an error.
    assert huawei_codes.code(raw) == expected


@pytest.mark.parametrize(
    ("cause", "expected"),
    [
        (0, None),
        (16, None),
        (31, None),
        (17, Outcome.BUSY),
        (18, Outcome.NO_ANSWER),
        (19, Outcome.NO_ANSWER),
        (20, Outcome.UNREACHABLE),
        (21, Outcome.REJECTED),
        (1, Outcome.INVALID_NUMBER),
        (22, Outcome.INVALID_NUMBER),
        (28, Outcome.INVALID_NUMBER),
        (27, Outcome.UNREACHABLE),
        (34, Outcome.FAILED),
        (38, Outcome.FAILED),
        (41, Outcome.FAILED),
        (42, Outcome.FAILED),
        (127, Outcome.FAILED),
        (128, None),
        (-1, None),
        (None, None),
    ],
)
def test_q850_table(cause: int | None, expected: Outcome | None) -> None:
    # Given a Q.850 cause (F3.8), When mapped, Then it gives the table's outcome, or None
    # (go on to the next rule) for "not applicable", normal clearing and non-Q.850 numbers.
    assert huawei_codes.q850_outcome(cause) == expected


@pytest.mark.parametrize(
    ("status_code", "expected"),
    [
        (486, Outcome.BUSY),
        (600, Outcome.BUSY),
        (480, Outcome.UNREACHABLE),
        (404, Outcome.INVALID_NUMBER),
        (484, Outcome.INVALID_NUMBER),
        (604, Outcome.INVALID_NUMBER),
        (603, Outcome.REJECTED),
        (487, Outcome.CANCELLED),
        (408, Outcome.NO_ANSWER),
        (403, Outcome.BLOCKED),
        (400, Outcome.FAILED),
        (500, Outcome.FAILED),
        (699, Outcome.FAILED),
        (0, None),
        (200, None),
        (183, None),
        (700, None),
        (None, None),
    ],
)
def test_sip_table(status_code: int | None, expected: Outcome | None) -> None:
    # Given a SIP final code (F3.8), When mapped, Then 4xx-6xx give the table's outcome.
    assert huawei_codes.sip_outcome(status_code) == expected
