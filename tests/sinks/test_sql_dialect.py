"""The JSON the sinks store: the same document whichever encoder writes it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.model import Kind, Provider
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


_NESTED = st.recursive(
    _SCALARS | st.integers(min_value=-(2**70), max_value=2**70),
    lambda children: st.lists(children) | st.dictionaries(_ANY_TEXT, children),
    max_leaves=20,
)


@given(st.dictionaries(_ANY_TEXT, _NESTED))
def test_a_nested_object_is_written_as_the_standard_encoder_writes_it(
    value: dict[str, Any],
) -> None:
    # Given objects and arrays of text, integers (some beyond 64 bits), floats, booleans and
    # nulls (orjson's fast path, or the standard encoder's), When written, Then the same document
    assert dumps(value) == _standard(value)


def test_a_cyclic_object_is_refused_as_the_standard_encoder_refuses_it() -> None:
    # Given an object that contains itself, When written, Then the standard encoder's error
    value: dict[str, Any] = {"a": 1}
    value["self"] = [value, value]
    with pytest.raises(ValueError, match="Circular reference"):
        dumps(value)


def test_a_subclass_of_a_plain_type_is_written_as_the_standard_encoder_writes_it() -> None:
    # Given values of subclasses of int and str (an enum), When written, Then the same document
    value = {"kind": Kind.CALL_ENDED, "n": [True, None, 3], "nested": {"x": Provider.MOOR7}}
    assert dumps(value) == _standard(value)
