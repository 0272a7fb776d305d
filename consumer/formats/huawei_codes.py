"""Huawei CallEnabler's code tables (docs/formats.md F3.3, F3.5, F3.8), shared by Voice Call and
Private Number, and the reading of a numeric code.

Data apart from the parsing: a table row changes with the provider's documents, not with the code.
"""

from __future__ import annotations

from collections.abc import Mapping

from consumer.model import HangupBy, Kind, Outcome

# F3.3 eventType → kind (proposal). `fee` is handled apart: one call.record per feeLst entry.
STATUS_KINDS: Mapping[str, Kind] = {
    "callin": Kind.CALL_INITIATED,
    "callout": Kind.CALL_INITIATED,
    "alerting": Kind.CALL_RINGING,
    "answer": Kind.CALL_ANSWERED,
    "disconnect": Kind.CALL_ENDED,
    "collectInfo": Kind.CALL_INPUT,
}
FEE = "fee"

# F3.8 Q.850 (proposal). 0 (not applicable), 16 and 31 (normal clearing) decide nothing; any
# other cause in the standard's range 1-127 is a network or resource failure.
Q850_NEXT_RULE = frozenset({0, 16, 31})
Q850: Mapping[int, Outcome] = {
    17: Outcome.BUSY,
    18: Outcome.NO_ANSWER,
    19: Outcome.NO_ANSWER,
    20: Outcome.UNREACHABLE,
    21: Outcome.REJECTED,
    1: Outcome.INVALID_NUMBER,
    22: Outcome.INVALID_NUMBER,
    28: Outcome.INVALID_NUMBER,
    27: Outcome.UNREACHABLE,
}
_Q850_RANGE = range(1, 128)

# F3.8 SIP final codes (proposal); any other 400-699 is a failure, anything else decides nothing.
SIP: Mapping[int, Outcome] = {
    486: Outcome.BUSY,
    600: Outcome.BUSY,
    480: Outcome.UNREACHABLE,
    404: Outcome.INVALID_NUMBER,
    484: Outcome.INVALID_NUMBER,
    604: Outcome.INVALID_NUMBER,
    603: Outcome.REJECTED,
    487: Outcome.CANCELLED,
    408: Outcome.NO_ANSWER,
    403: Outcome.BLOCKED,
}
SIP_FAILURES = range(400, 700)

# F3.3 callRelDirection (Private Number, when Huawei support enables it).
CALL_REL_DIRECTION: Mapping[str, HangupBy] = {"1": HangupBy.CALLER, "2": HangupBy.CALLEE}

# F3.5 serviceType of each product, to refuse a record pushed to the other product's queue.
SERVICE_TYPES: Mapping[str, str] = {
    "001": "Voice Call notify / verification code",
    "002": "Voice Call callback",
    "003": "Private Number AX",
    "004": "Private Number AXB or X",
    "005": "Private Number AXE",
    "007": "Private Number AXYB",
}

_MAX_CODE_DIGITS = 9


def code(value: str | None) -> int | None:
    """A numeric provider code from its text, or None when it is absent or not a whole number.

    A code that is not a number is an unknown code, which gives `unknown`, never an error.
    """
    if value is None:
        return None
    digits = value[1:] if value[:1] in "+-" else value
    if not (digits.isascii() and digits.isdigit()) or len(digits) > _MAX_CODE_DIGITS:
        return None
    return int(value)


def q850_outcome(cause: int | None) -> Outcome | None:
    """F3.8: the outcome a Q.850 cause implies, None to go on to the next rule."""
    if cause is None or cause in Q850_NEXT_RULE or cause not in _Q850_RANGE:
        return None
    return Q850.get(cause, Outcome.FAILED)


def sip_outcome(status: int | None) -> Outcome | None:
    """F3.8: the outcome a SIP final code implies, None to go on to the next rule."""
    if status is None or status not in SIP_FAILURES:
        return None
    return SIP.get(status, Outcome.FAILED)
