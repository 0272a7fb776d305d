"""Hypothesis strategies and checks shared by the format tests: odd JSON, mutated valid bodies.

`check` is the one property every format keeps: whatever the bytes, the result is events that
hold up to the model's promises, or an `InvalidMessage` that says why; nothing else escapes.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from consumer.errors import InvalidMessage
from consumer.formats import parse
from consumer.model import CallEvent

PROPERTY = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(),
    st.text(max_size=20),
    st.text(st.characters(codec=None, categories=["Cs", "Lo", "Nd", "No"]), max_size=4),
    st.sampled_from(
        [
            *("", " ", "  ", "0", "-1", "1.5", "1e400", "NaN", "null", "9" * 40, "²³", "\x00"),
            *("10秒", "用户", "ALICOM_SMART_SAAS^", "200000", "518", "ANSWER", "NoAnswer", "99"),
            *("0001-01-01 00:00:00", "0001-01-01 07:59:59", "9999-12-31 23:59:59"),
            *("2020-02-30 10:00:00", "2019-01-24  03:04:49", "1548299089", "1620455977000"),
            *("\ud800", "+86\udfff"),
        ]
    ),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


def stringified(value: Any) -> Any:
    """Every number sent as a JSON string, as some providers do (docs/formats.md F0.2)."""
    if isinstance(value, dict):
        return {key: stringified(item) for key, item in value.items()}
    if isinstance(value, list):
        return [stringified(item) for item in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


@st.composite
def mutated(draw: st.DrawFn, value: Any) -> Any:
    """A copy of `value` with one to three changes anywhere inside it: a key deleted, a value
    replaced by other JSON, numbers sent as strings, a huge number, nested junk, an array
    repeated (a Huawei feeLst past its 50 records)."""
    value = copy.deepcopy(value)
    for _ in range(draw(st.integers(1, 3))):
        parent, key = value, None
        while isinstance(parent, dict | list) and parent:
            keys = sorted(parent) if isinstance(parent, dict) else list(range(len(parent)))
            key = draw(st.sampled_from(keys))
            child = parent[key]
            if not (isinstance(child, dict | list) and child) or draw(st.booleans()):
                break
            parent = child
        if key is None or not isinstance(parent, dict | list):
            continue
        action = draw(st.sampled_from(["delete", "replace", "stringify", "huge", "wrap", "repeat"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[key]
        elif action == "stringify":
            parent[key] = stringified(parent[key])
        elif action == "huge":
            parent[key] = draw(st.sampled_from([10**30, -(10**20), 1e308, "9" * 40]))
        elif action == "wrap":
            parent[key] = {"nested": [parent[key], draw(json_values)]}
        elif action == "repeat" and isinstance(parent[key], list):
            parent[key] = parent[key] * draw(st.integers(2, 60))
        else:
            parent[key] = draw(json_values)
    return value


# The per-leg fields of Aliyun's HTTP-push and dual-call VoiceReport pages.
LEG_KEYS = tuple(
    f"{leg}_{field}"
    for leg in "ab"
    for field in ("originate_time", "ring_time", "start_time", "end_time", "duration")
)
leg_values = st.one_of(
    json_scalars,
    st.sampled_from(["2021-04-28 10:03:40", "2023-03-13 14:42:22", "", "10", 49, "aleg", "bleg"]),
)


@st.composite
def push_batch(draw: st.DrawFn, records: list[Any]) -> list[Any]:
    """An Aliyun HTTP batch push body: a JSON array of 1 to 5 of `records`, each perhaps given
    leg fields (`a_*`, `b_*`) of any value, or another `hangup_direction`, and perhaps mutated."""
    batch = []
    for chosen in draw(st.lists(st.sampled_from(records), min_size=1, max_size=5)):
        record = copy.deepcopy(chosen)
        for key in draw(st.lists(st.sampled_from(LEG_KEYS), max_size=3, unique=True)):
            record[key] = draw(leg_values)
        if draw(st.booleans()):
            record["hangup_direction"] = draw(leg_values)
        batch.append(draw(mutated(record)) if draw(st.booleans()) else record)
    return batch


def check(fmt: str, body: bytes) -> list[CallEvent] | InvalidMessage:
    """Parse `body`; the events (checked) or the InvalidMessage. Anything else fails the test."""
    try:
        events = [normalized.event for normalized in parse(fmt, body)]
    except InvalidMessage as exc:
        error = exc
    else:
        assert events, "a valid body gives at least one event"
        for event in events:
            assert event.occurred_at.utcoffset() is not None
            assert all(isinstance(value, str) for value in event.refs.values())
            event.model_dump_json()  # what the sink stores must serialize
        return events
    # A dead letter's reason and detail must say something.
    assert error.reason
    assert error.detail
    return error


def deterministic(fmt: str, body: bytes) -> list[CallEvent] | InvalidMessage:
    """`check`, twice: the same body must give the same event ids (the dedupe promise)."""
    first, second = check(fmt, body), check(fmt, body)
    if isinstance(first, list):
        assert isinstance(second, list)
        assert [e.event_id for e in first] == [e.event_id for e in second]
    else:
        assert isinstance(second, InvalidMessage)
        assert (first.reason, first.detail) == (second.reason, second.detail)
    return first
