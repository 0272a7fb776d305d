"""The normalized model's time rules and event ids, against their plain definitions."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from consumer.model import CallEvent, event_id, rfc3339

_ZONES = st.sampled_from(
    [
        UTC,
        timezone(timedelta(0)),
        ZoneInfo("UTC"),
        timezone(timedelta(hours=8)),
        timezone(timedelta(hours=-5, minutes=-30)),
        ZoneInfo("Asia/Shanghai"),
    ]
)
_TIMES = st.datetimes(
    min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=_ZONES
)


def _rfc3339_reference(value: datetime) -> str:
    value = value.astimezone(UTC)
    spec = "milliseconds" if value.microsecond else "seconds"
    return value.isoformat(timespec=spec).replace("+00:00", "Z")


@settings(max_examples=500, deadline=None)
@given(_TIMES)
def test_rfc3339_is_the_utc_isoformat_with_a_z(value: datetime) -> None:
    assert rfc3339(value) == _rfc3339_reference(value)


def _event(at: datetime) -> CallEvent:
    return CallEvent(event_id="e", provider="moor7", kind="call.ended", occurred_at=at)


@settings(max_examples=200, deadline=None)
@given(_TIMES)
def test_times_are_kept_as_utc_instants(value: datetime) -> None:
    stored = _event(value).occurred_at
    assert stored == value.astimezone(UTC)  # (== across zones is False in a fold)
    assert stored.tzinfo is UTC


def test_a_utc_time_is_kept_as_given() -> None:
    at = datetime(2019, 1, 24, 3, 4, 49, tzinfo=UTC)
    assert _event(at).occurred_at is at


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValidationError, match="time must carry a zone"):
        _event(datetime(2019, 1, 24, 3, 4, 49))


def test_a_time_without_a_utc_instant_is_refused() -> None:
    with pytest.raises(ValidationError, match="time is out of range"):
        _event(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=8))))


_PARTS = st.lists(st.one_of(st.none(), st.text(max_size=6), st.integers()), max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=10), _PARTS)
def test_event_id_is_the_sha256_of_the_joined_key(fmt: str, key: list[object]) -> None:
    parts = [fmt, *("" if part is None else str(part) for part in key)]
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]
    assert event_id(fmt, *key) == digest


def test_event_ids_are_pinned() -> None:
    key = ("status", "s-1", "disconnect", "2019-01-24T03:04:49Z", "0", "+1", "+2", None)
    assert event_id("huawei.voice_call", *key) == "42325dbd06b57e86c71f849771081ac5"
