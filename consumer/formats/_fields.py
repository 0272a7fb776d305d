"""A record's fields as the format modules read them: text, whole numbers, nested objects.

Every helper raises `InvalidMessage` (never `KeyError`, `ValueError`, ...), so that a format
module built from them has exactly one failure mode, which the pipeline turns into a dead letter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

from consumer.errors import InvalidMessage, Reason, clip
from consumer.model import JsonObject

_WHOLE = re.compile(r"([+-]?\d+)(?:\.0*)?")
# Falsy values that mean "not sent"; 0 and false are sent values. A truthy value is never one,
# so `compact` tests membership (four comparisons) only for falsy ones.
_ABSENT: tuple[object, ...] = (None, "", [], {})

T = TypeVar("T")


def objects(value: Any, what: str = "body") -> list[JsonObject]:
    """A JSON object, or an array of objects (an Aliyun HTTP-push batch), as a non-empty list."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        if not value:
            raise InvalidMessage(Reason.EMPTY_BATCH, f"{what} is an empty array")
        if type(value[0]) is dict and set(map(type, value)) == {dict}:  # one pass in C
            return value
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                raise InvalidMessage(
                    Reason.NOT_OBJECT, f"{what}[{index}] is {type_name(item)}, not an object"
                )
        return value
    raise InvalidMessage(Reason.NOT_OBJECT, f"{what} is {type_name(value)}, not an object or array")


def type_name(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def obj(record: Mapping[str, Any], key: str) -> JsonObject:
    """A required nested object."""
    value = record.get(key)
    if not isinstance(value, dict):
        raise InvalidMessage(
            Reason.MISSING_FIELD if value is None else Reason.BAD_FIELD,
            f"{key} must be an object, got {type_name(value)}",
        )
    return value


def text(record: Mapping[str, Any], key: str) -> str | None:
    """An optional scalar as text: `""`, whitespace and null are absent; numbers become strings."""
    value = record.get(key)
    if type(value) is str:  # most fields: one test before the general case below
        value = value.strip()
        return value or None
    if value is None or isinstance(value, bool):
        return None if value is None else str(value).lower()
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    raise InvalidMessage(
        Reason.BAD_FIELD, f"{key} must be a string or number, got {type_name(value)}"
    )


def required_text(record: Mapping[str, Any], key: str) -> str:
    value = text(record, key)
    if value is None:
        raise InvalidMessage(Reason.MISSING_FIELD, f"{key} is missing or empty")
    return value


def integer(record: Mapping[str, Any], key: str) -> int | None:
    """An optional whole number sent as a number or a string (`10`, `"10"`, `"10.0"`)."""
    raw = text(record, key)
    if raw is None:
        return None
    match = _WHOLE.fullmatch(raw)
    if match is None or len(match.group(1)) > 19:
        raise InvalidMessage(Reason.BAD_FIELD, f"{key} is not a whole number: {clip(raw)}")
    return int(match.group(1))


def first(*values: T | None) -> T | None:
    """The first value that is not None: the fallback chains of docs/formats.md."""
    for value in values:  # a loop, not next() over a generator: half the cost, called per field
        if value is not None:
            return value
    return None


def lookup(table: Mapping[str, T], code: str | None, default: T) -> T:
    return default if code is None else table.get(code, default)


def compact(values: Mapping[str, Any]) -> dict[str, Any]:
    """Drop absent values (None, "", [], {}) so refs and extras hold only what was sent."""
    return {key: value for key, value in values.items() if value or value not in _ABSENT}


__all__ = [
    "compact",
    "first",
    "integer",
    "lookup",
    "obj",
    "objects",
    "required_text",
    "text",
    "type_name",
]
