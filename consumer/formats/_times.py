"""Times as the providers write them (wall times of a zone, epoch seconds or milliseconds),
as aware datetimes; a time that cannot be read is `InvalidMessage` (`bad_time`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from consumer.errors import InvalidMessage, Reason, clip
from consumer.formats._fields import integer, text

SHANGHAI = ZoneInfo("Asia/Shanghai")
_WALL_TIME = "%Y-%m-%d %H:%M:%S"
# The canonical spelling of `_WALL_TIME`, read without strptime (about 20x faster); anything
# else (one-digit fields, several spaces, other digits) still goes through strptime.
# Hours 00-23 only: a later fromisoformat reads 24:00 as the next midnight; strptime refuses it.
_CANONICAL_WALL_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2} (?:[01][0-9]|2[0-3]):[0-9]{2}:[0-9]{2}"
)
_SPACES = re.compile(r"\s+")
# Asia/Shanghai has kept +08:00 without DST since its last transition in September 1991 (the
# tzdata rule for all later years, up to 9999, is "CST-8"): from 1992 on a wall time converts
# by subtraction, without the ZoneInfo lookups of `astimezone` (a fifth of a VoiceReport parse).
# Wall times are read as if in UTC (`datetime.replace(tzinfo=)` costs more than the parse), so
# this bound is too.
_SHANGHAI_FIXED_SINCE = datetime(1992, 1, 1, tzinfo=UTC)
_SHANGHAI_OFFSET = timedelta(hours=8)


def shanghai_time(record: Mapping[str, Any], key: str) -> datetime | None:
    """A `yyyy-MM-dd HH:mm:ss` wall time in Asia/Shanghai (Aliyun VMS, 7moor), as UTC."""
    return _wall_time(record, key, _shanghai_to_utc)


def utc_wall_time(record: Mapping[str, Any], key: str) -> datetime | None:
    """A `yyyy-MM-dd HH:mm:ss` UTC time without a marker, double spaces allowed (Huawei)."""
    return _wall_time(record, key, _utc_to_utc)


def _shanghai_to_utc(wall: datetime) -> datetime:
    """The UTC instant of a Shanghai wall time (read as if UTC); OverflowError before year 1."""
    if wall >= _SHANGHAI_FIXED_SINCE:
        return wall - _SHANGHAI_OFFSET
    return wall.replace(tzinfo=SHANGHAI).astimezone(UTC)


def _utc_to_utc(wall: datetime) -> datetime:
    return wall


def _wall_time(
    record: Mapping[str, Any], key: str, to_utc: Callable[[datetime], datetime]
) -> datetime | None:
    raw = text(record, key)
    return None if raw is None else _read_wall_time(raw, key, to_utc)


def read_utc_wall_time(raw: str, key: str) -> datetime:
    """`utc_wall_time` of text already read (`raw`, from field `key`): one field read less."""
    return _read_wall_time(raw, key, _utc_to_utc)


def _read_wall_time(raw: str, key: str, to_utc: Callable[[datetime], datetime]) -> datetime:
    wall = _canonical_wall_time(raw)
    if wall is None:
        try:
            spaced = _SPACES.sub(" ", raw)
            if len(spaced) > len("yyyy-MM-dd HH:mm:ss"):  # strptime would quote it all
                raise ValueError(spaced)
            wall = datetime.strptime(spaced, _WALL_TIME).replace(tzinfo=UTC)
        except ValueError:
            raise InvalidMessage(
                Reason.BAD_TIME, f"{key} is not a yyyy-MM-dd HH:mm:ss time: {clip(raw)}"
            ) from None
    try:
        return to_utc(wall)
    except OverflowError:  # 0001-01-01 07:59 in Shanghai has no UTC instant
        raise InvalidMessage(Reason.BAD_TIME, f"{key} is out of range: {clip(raw)}") from None


def _canonical_wall_time(raw: str) -> datetime | None:
    """`raw` read as strptime would read it, as if in UTC, when spelled canonically; else None.

    strptime accepts every canonical spelling that names a real time and gives the same
    datetime; an impossible one (month 13, 24:00) returns None and strptime words the error.
    """
    if _CANONICAL_WALL_TIME.fullmatch(raw) is None:
        return None
    try:
        return datetime.fromisoformat(raw + "Z")  # in C, half the cost of int() on the groups
    except ValueError:
        return None


def epoch_millis(record: Mapping[str, Any], key: str) -> datetime | None:
    """Epoch milliseconds (Outbound Bot), as a JSON number or string."""
    value = integer(record, key)
    return None if value is None else _from_epoch(key, value / 1000)


def epoch_auto(record: Mapping[str, Any], key: str) -> datetime | None:
    """7moor `statusTime`: 10 digits epoch seconds, 13 digits millis, else Shanghai wall time."""
    raw = text(record, key)
    if raw is None:
        return None
    digits = raw.isascii() and raw.isdigit()  # "²" is a digit to isdigit but not to int
    if digits and len(raw) == 10:
        return _from_epoch(key, int(raw))
    if digits and len(raw) == 13:
        return _from_epoch(key, int(raw) / 1000)
    return shanghai_time(record, key)


def _from_epoch(key: str, seconds: float) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise InvalidMessage(Reason.BAD_TIME, f"{key} is out of range: {seconds}") from None


def plus_millis(value: datetime | None, millis: int | None) -> datetime | None:
    if value is None:
        return None
    try:
        return value + timedelta(milliseconds=millis or 0)
    except OverflowError:
        raise InvalidMessage(Reason.BAD_TIME, f"offset {millis} ms is out of range") from None


__all__ = [
    "SHANGHAI",
    "epoch_auto",
    "epoch_millis",
    "plus_millis",
    "read_utc_wall_time",
    "shanghai_time",
    "utc_wall_time",
]
