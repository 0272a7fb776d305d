"""Every format, whatever the bytes: events or `InvalidMessage`, never any other exception.

Format-specific properties live beside each format's tests; these run the same generic attacks
on all eight formats, starting from the sample bodies the package ships.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer import testing
from consumer.errors import InvalidMessage
from consumer.formats import FORMAT_NAMES
from tests.formats.strategies import (
    PROPERTY,
    check,
    deterministic,
    json_values,
    mutated,
    push_batch,
)

SAMPLES = Path(testing.__file__).parent / "samples"
VMS_FORMATS = [fmt for fmt in FORMAT_NAMES if fmt.startswith("aliyun.voice_")]


def samples_of(fmt: str) -> list[Any]:
    return [json.loads(path.read_bytes()) for path in sorted(SAMPLES.glob(f"{fmt}.*.json"))]


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
@PROPERTY
@given(body=st.binary(max_size=512))
def test_arbitrary_bytes_give_events_or_invalid_message(fmt: str, body: bytes) -> None:
    # Given arbitrary bytes, When a format parses them, Then nothing but InvalidMessage escapes.
    check(fmt, body)


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
@PROPERTY
@given(value=json_values)
def test_arbitrary_json_gives_events_or_invalid_message(fmt: str, value: Any) -> None:
    # Given any JSON document, plain or base64-wrapped as MNS carries it,
    body = json.dumps(value).encode("utf-8", "surrogatepass")
    # When a format parses it, Then nothing but InvalidMessage escapes.
    check(fmt, body)
    check(fmt, base64.b64encode(body))


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_every_format_has_samples_that_normalize(fmt: str) -> None:
    # Given the shipped samples of a format,
    paths = sorted(SAMPLES.glob(f"{fmt}.*.json"))
    assert paths, f"no samples for {fmt} in {SAMPLES}"
    # When each is parsed, Then the valid ones give events,
    for path in paths:
        assert isinstance(check(fmt, path.read_bytes()), list), path.name
    # And the published ones that are broken (*.invalid.txt) give InvalidMessage.
    for path in sorted(SAMPLES.glob(f"{fmt}.*.invalid.txt")):
        assert isinstance(check(fmt, path.read_bytes()), InvalidMessage), path.name


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
@PROPERTY
@given(data=st.data(), wrap=st.booleans())
def test_mutated_samples_give_events_or_invalid_message(
    fmt: str, data: st.DataObject, wrap: bool
) -> None:
    # Given a valid sample with up to three changes deep inside it, plain or base64-wrapped,
    value = data.draw(mutated(data.draw(st.sampled_from(samples_of(fmt)))))
    body = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    body = base64.b64encode(body) if wrap else body
    # When it is parsed twice, Then it is events or InvalidMessage, the same both times.
    deterministic(fmt, body)


def records_of(fmt: str) -> list[Any]:
    """The records of a format's samples, whether a sample is one record or a push array."""
    return [
        item
        for value in samples_of(fmt)
        for item in (value if isinstance(value, list) else [value])
    ]


@pytest.mark.parametrize("fmt", VMS_FORMATS)
@PROPERTY
@given(data=st.data())
def test_push_batches_give_one_event_per_record_or_invalid_message(
    fmt: str, data: st.DataObject
) -> None:
    # Given an HTTP batch push: an array of sample records, some with leg fields or mutated,
    batch = data.draw(push_batch(records_of(fmt)))
    body = json.dumps(batch, ensure_ascii=False).encode("utf-8", "surrogatepass")
    # When it is parsed twice, Then it is one event per record or InvalidMessage, both times.
    result = deterministic(fmt, body)
    if isinstance(result, list):
        assert len(result) == len(batch)
