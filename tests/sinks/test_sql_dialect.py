"""The JSON the sinks store: the same document whichever encoder writes it."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from consumer.sinks.sql_dialect import dumps

_ANY_TEXT = st.text(st.characters(exclude_categories=[]))  # control, non-ASCII, surrogates
_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | _ANY_TEXT


def _standard(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@given(st.dictionaries(_ANY_TEXT, _ANY_TEXT))
def test_an_object_of_text_is_written_as_the_standard_encoder_writes_it(
    value: dict[str, str],
) -> None:
    # Given any object of text (the fast path), When written, Then the document is the same
    assert dumps(value) == _standard(value)


@given(st.dictionaries(_ANY_TEXT, _SCALARS) | st.lists(_SCALARS) | _SCALARS)
def test_any_other_value_is_written_as_the_standard_encoder_writes_it(value: Any) -> None:
    # Given numbers (NaN, infinities, integers beyond 64 bits) and nesting, When written,
    # Then the document is the same
    assert dumps(value) == _standard(value)


def test_an_object_with_a_key_that_is_not_text_is_written_as_before() -> None:
    # Given an object whose keys are numbers, When written, Then as json.dumps writes it
    assert dumps({1: "a", 2.5: "b"}) == '{"1":"a","2.5":"b"}'
