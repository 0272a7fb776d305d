"""Every format, whatever the bytes: events or `InvalidMessage`, never any other exception.

Format-specific mutations live beside each format's tests; these properties run the same generic
attacks on all eight formats, starting from the sample bodies in tests/formats/samples/.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.errors import InvalidMessage
from consumer.formats import FORMAT_NAMES, parse
from consumer.model import CallEvent

SAMPLES = Path(__file__).parent / "samples"

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from(["", " ", "0", "-1", "1e400", "2020-13-45 25:61:61", "10秒", "null"])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def samples_of(fmt: str) -> list[Any]:
    return [json.loads(path.read_bytes()) for path in sorted(SAMPLES.glob(f"{fmt}*.json"))]


def outcome_of(fmt: str, body: bytes) -> list[CallEvent] | InvalidMessage:
    """Parse; return the events or the InvalidMessage. Any other exception fails the test."""
    try:
        return [normalized.event for normalized in parse(fmt, body)]
    except InvalidMessage as exc:
        error = exc
    # A dead letter's reason and error must say something.
    assert error.reason
    assert error.detail
    return error


@st.composite
def mutated(draw: st.DrawFn, value: Any, depth: int = 0) -> Any:
    """`value` with one random change somewhere inside it."""
    containers = isinstance(value, dict | list) and bool(value)
    if not containers or depth > 6 or draw(st.integers(0, 3)) == 0:
        return draw(
            json_values | st.just(str(value)) | st.just([value]) | st.just({"wrapped": value})
        )
    if isinstance(value, dict):
        key = draw(st.sampled_from(sorted(value)))
        changed = dict(value)
        if draw(st.booleans()):
            del changed[key]
        else:
            changed[key] = draw(mutated(value[key], depth + 1))
        return changed
    index = draw(st.integers(0, len(value) - 1))
    changed_list = list(value)
    changed_list[index] = draw(mutated(value[index], depth + 1))
    return changed_list


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=512))
def test_arbitrary_bytes_give_events_or_invalid_message(fmt: str, body: bytes) -> None:
    # Given arbitrary bytes, When a format parses them, Then nothing but InvalidMessage escapes.
    outcome_of(fmt, body)


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values)
def test_arbitrary_json_gives_events_or_invalid_message(fmt: str, value: Any) -> None:
    # Given any JSON document, plain or base64-wrapped as MNS carries it,
    body = json.dumps(value).encode()
    # When a format parses it, Then nothing but InvalidMessage escapes.
    outcome_of(fmt, body)
    outcome_of(fmt, base64.b64encode(body))


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_every_format_has_samples_that_normalize(fmt: str) -> None:
    # Given the shipped samples of a format,
    samples = samples_of(fmt)
    assert samples, f"no samples for {fmt} in {SAMPLES}"
    # When each is parsed, Then the valid ones give events,
    for path in sorted(SAMPLES.glob(f"{fmt}*.json")):
        result = outcome_of(fmt, path.read_bytes())
        assert isinstance(result, list), f"{path.name}: {result}"
        assert result, path.name
    # And the published ones that are broken (*.invalid.txt) give InvalidMessage.
    for path in sorted(SAMPLES.glob(f"{fmt}*.invalid.txt")):
        assert isinstance(outcome_of(fmt, path.read_bytes()), InvalidMessage), path.name


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_samples_give_events_or_invalid_message(fmt: str, data: st.DataObject) -> None:
    # Given a valid sample with one random change deep inside it,
    candidates = [s for s in samples_of(fmt) if isinstance(s, dict | list)]
    sample = data.draw(st.sampled_from(candidates))
    body = json.dumps(data.draw(mutated(sample)), ensure_ascii=False).encode()
    # When it is parsed, Then it is either still valid or an InvalidMessage, nothing else.
    result = outcome_of(fmt, body)
    # And the same body gives the same event ids (determinism under any input).
    again = outcome_of(fmt, body)
    if isinstance(result, list):
        assert isinstance(again, list)
        assert [e.event_id for e in result] == [e.event_id for e in again]
