"""The shared decoding helpers: the cheap paths refuse exactly what the full checks refuse."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from consumer.errors import InvalidMessage
from consumer.formats import _decode
from consumer.model import CallEvent


@pytest.mark.parametrize("escape", ["\\ud800", "\\uDFFF", "\\udc0a", "\\uDbFf"])
def test_a_lone_surrogate_escape_in_any_spelling_is_refused(escape: str) -> None:
    # Given JSON whose string holds a lone surrogate escape, in upper, lower or mixed case hex
    body = ('{"a": "x' + escape + 'y"}').encode()
    # When it is loaded, Then it is refused as bad unicode, not passed on to fail later
    with pytest.raises(InvalidMessage) as raised:
        _decode.load_json(body)
    assert raised.value.reason == "bad_unicode"


def test_a_surrogate_pair_and_deep_but_storable_json_load() -> None:
    # Given a valid pair of surrogate escapes (one emoji) and 600 nested arrays (the slow path)
    body = b'{"a": "\\ud83d\\ude00", "b": ' + b"[" * 600 + b"]" * 600 + b"}"
    # When loaded, Then the values are there
    value = _decode.load_json(body)
    assert value["a"] == "\U0001f600"


def _event(**fields: Any) -> CallEvent:
    return CallEvent(
        event_id="e", provider="moor7", kind="call.ended", occurred_at=datetime.now(UTC), **fields
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"caller": "\ud800"},
        {"refs": {"k": "\udfff"}},
        {"extras": {"a": "中文\udc00"}},
        {"extras": {"a": b"\xff"}},
    ],
    ids=["text", "ref", "extra-value", "bytes"],
)
def test_an_event_that_cannot_be_serialized_is_refused(fields: dict[str, Any]) -> None:
    # Given an event holding something JSON cannot carry, Then storable refuses it
    with pytest.raises(InvalidMessage, match="cannot be serialized"):
        _decode.storable(_event(**fields))


def test_an_event_nested_too_deeply_is_refused_and_a_plain_one_kept() -> None:
    # Given an extra nested deeper than pydantic serializes, Then it is refused
    deep: Any = "x"
    for _ in range(300):
        deep = [deep]
    with pytest.raises(InvalidMessage):
        _decode.storable(_event(extras={"deep": deep}))
    # And an event of text, numbers and shallow nesting is the same event
    plain = _event(caller="中文", extras={"n": 1, "f": 1.5, "b": True, "z": None, "l": [1]})
    assert _decode.storable(plain) is plain


@settings(max_examples=300)
@given(
    year=st.integers(0, 9999),
    fields=st.lists(st.integers(0, 99), min_size=5, max_size=5),
)
def test_a_canonical_wall_time_reads_as_strptime_reads_it(year: int, fields: list[int]) -> None:
    # Given any time spelled yyyy-MM-dd HH:mm:ss, possible or not (month 13, hour 24, ...)
    month, day, hour, minute, second = fields
    raw = f"{year:04d}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}:{second:02d}"
    try:
        expected: datetime | None = datetime.strptime(raw, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        expected = None
    # When it is read as a UTC wall time
    if expected is None:
        # Then what strptime refuses is a bad time
        with pytest.raises(InvalidMessage) as raised:
            _decode.utc_wall_time({"t": raw}, "t")
        assert raised.value.reason == "bad_time"
    else:
        # Then what it reads is the same time, in UTC
        assert _decode.utc_wall_time({"t": raw}, "t") == expected.replace(tzinfo=UTC)


@settings(max_examples=500)
@given(wall=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)))
@example(wall=datetime(1, 1, 1, 7, 59, 59))  # the last wall time without a UTC instant
@example(wall=datetime(1, 1, 1, 8))
@example(wall=datetime(1991, 9, 15, 1, 30))  # in the last DST transition's repeated hour
@example(wall=datetime(1991, 12, 31, 23, 59, 59))
@example(wall=datetime(1992, 1, 1))  # the first wall time of the fixed +08:00
@example(wall=datetime(9999, 12, 31, 23, 59, 59))
def test_a_shanghai_wall_time_converts_as_zoneinfo_converts_it(wall: datetime) -> None:
    # Given any Shanghai wall time of years 1-9999, spelled as Aliyun VMS and 7moor send it
    raw = wall.isoformat(sep=" ", timespec="seconds")
    whole = wall.replace(microsecond=0)
    try:
        expected: datetime | None = whole.replace(tzinfo=_decode.SHANGHAI).astimezone(UTC)
    except OverflowError:
        expected = None
    # When it is read
    if expected is None:
        # Then a time without a UTC instant (before 0001-01-01 UTC) is the same bad time
        with pytest.raises(InvalidMessage) as raised:
            _decode.shanghai_time({"t": raw}, "t")
        assert raised.value.reason == "bad_time"
        assert raised.value.detail == f"t is out of range: {raw!r}"
    else:
        # Then it is the instant ZoneInfo gives, in UTC
        value = _decode.shanghai_time({"t": raw}, "t")
        assert value == expected
        assert value is not None
        assert value.tzinfo is UTC


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([b"{", b"["]), st.binary(max_size=40))
def test_a_body_opening_a_json_container_is_never_base64(opening: bytes, rest: bytes) -> None:
    # load_mns_json skips the base64 test for these: the test itself must say no to them
    from consumer.formats._bodies import _looks_base64

    assert not _looks_base64(opening + rest)


def test_a_body_over_4_kib_parses_with_the_gc_paused() -> None:
    import gc

    from consumer.formats import _bodies

    seen: list[tuple[int, bool]] = []
    parse = _bodies.bounded(lambda body: seen.append((len(body), gc.isenabled())))
    was_enabled = gc.isenabled()
    gc.enable()
    try:
        parse(b" " * 4097)
        parse(b"{}")  # small: the pause costs more than the GC it spares
        assert gc.isenabled()
    finally:
        if not was_enabled:
            gc.disable()
    assert seen == [(4097, False), (2, True)]


_GOOD: dict[str, Any] = {
    "event_id": "e",
    "provider": "huawei_voice",
    "kind": "call.ended",
    "occurred_at": datetime(2019, 1, 24, 3, 4, 49, tzinfo=UTC),
    "refs": {"subscription_id": "s"},
    "extras": {"eventType": "disconnect", "n": 1},
}


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"outcome": "busy", "ended_at": datetime(2019, 1, 24, 3, 4, 49, tzinfo=UTC)},
        {"occurred_at": datetime(2019, 1, 24, 3, 4, 49)},
        {"kind": "call.lost"},
        {"refs": {"a": 1}},
        {"unexpected": 1},
        {"duration_seconds": "x"},
    ],
)
def test_build_is_the_model_constructor(change: dict[str, Any]) -> None:
    # build() validates with the model's validator directly: the same event, or the same error,
    # as through the model's constructor (any other factory takes that path)
    fields = {**_GOOD, **change}

    def outcome(*factory: Any) -> tuple[str, Any]:
        try:
            event = _decode.build(*factory, **fields)
        except InvalidMessage as exc:
            return (exc.reason, exc.detail)
        return (event.model_dump_json(), event.model_fields_set)

    through_init = lambda **given: CallEvent(**given)  # noqa: E731, PLW0108 - not CallEvent itself
    assert outcome() == outcome(through_init)
