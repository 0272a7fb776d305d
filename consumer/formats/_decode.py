"""Decoding and field helpers shared by the format modules.

Every helper raises `InvalidMessage` (never `KeyError`, `ValueError`, ...) so that a format module
built from them has exactly one failure mode, which the pipeline turns into a dead letter.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from operator import attrgetter
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from consumer.errors import InvalidMessage
from consumer.model import CallEvent, JsonObject

SHANGHAI = ZoneInfo("Asia/Shanghai")
_WALL_TIME = "%Y-%m-%d %H:%M:%S"
# The canonical spelling of `_WALL_TIME`, read without strptime (about 10x faster); anything
# else (one-digit fields, several spaces, other digits) still goes through strptime.
_CANONICAL_WALL_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})"
)
_SPACES = re.compile(r"\s+")
_WHOLE = re.compile(r"([+-]?\d+)(?:\.0*)?")
_BASE64 = re.compile(rb"[A-Za-z0-9+/\r\n]+={0,2}\s*")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")

T = TypeVar("T")


def load_json(body: bytes) -> Any:
    """Strict UTF-8 JSON; the body of every HTTP push and RocketMQ message."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidMessage(
            "not_utf8", f"body is not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    text = text.removeprefix("\ufeff")
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InvalidMessage(
            "not_json", f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise InvalidMessage("not_json", "JSON nested too deeply") from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise InvalidMessage("not_json", str(exc)) from None
    if _SURROGATE_ESCAPE.search(text) is None and text.count("[") + text.count("{") < 500:
        # Nothing to find: a lone surrogate only comes from a \uD800-\uDFFF escape, and
        # what json.loads nested less than 500 deep json.dumps writes back.
        return value
    return sound_json(value)


def _no_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON does not, and PostgreSQL's jsonb refuses them.
    raise InvalidMessage("not_json", f"{name} is not a JSON value")


def load_mns_json(body: bytes) -> Any:
    """An MNS body: base64 of UTF-8 JSON (what Alicom sends), else raw JSON (formats.md F1.1)."""
    stripped = body.strip()
    if stripped and _BASE64.fullmatch(stripped):
        try:
            decoded = base64.b64decode(stripped, validate=False)
        except (binascii.Error, ValueError):
            decoded = None
        if decoded is not None:
            try:
                return load_json(decoded)
            except InvalidMessage:
                pass  # not base64 of JSON after all (a bare JSON number is valid base64 too)
    try:
        return load_json(body)
    except InvalidMessage as exc:
        raise InvalidMessage(exc.reason, f"neither base64 of JSON nor JSON: {exc.detail}") from None


def objects(value: Any, what: str = "body") -> list[JsonObject]:
    """A JSON object, or an array of objects (an Aliyun HTTP-push batch), as a non-empty list."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        if not value:
            raise InvalidMessage("empty_batch", f"{what} is an empty array")
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                raise InvalidMessage(
                    "not_object", f"{what}[{index}] is {type_name(item)}, not an object"
                )
        return value
    raise InvalidMessage("not_object", f"{what} is {type_name(value)}, not an object or array")


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
            "missing_field" if value is None else "bad_field",
            f"{key} must be an object, got {type_name(value)}",
        )
    return value


def text(record: Mapping[str, Any], key: str) -> str | None:
    """An optional scalar as text: `""`, whitespace and null are absent; numbers become strings."""
    value = record.get(key)
    if value is None or isinstance(value, bool):
        return None if value is None else str(value).lower()
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    raise InvalidMessage("bad_field", f"{key} must be a string or number, got {type_name(value)}")


def required_text(record: Mapping[str, Any], key: str) -> str:
    value = text(record, key)
    if value is None:
        raise InvalidMessage("missing_field", f"{key} is missing or empty")
    return value


def integer(record: Mapping[str, Any], key: str) -> int | None:
    """An optional whole number sent as a number or a string (`10`, `"10"`, `"10.0"`)."""
    raw = text(record, key)
    if raw is None:
        return None
    match = _WHOLE.fullmatch(raw)
    if match is None or len(match.group(1)) > 19:
        raise InvalidMessage("bad_field", f"{key} is not a whole number: {raw!r}")
    return int(match.group(1))


def shanghai_time(record: Mapping[str, Any], key: str) -> datetime | None:
    """A `yyyy-MM-dd HH:mm:ss` wall time in Asia/Shanghai (Aliyun VMS, 7moor), as UTC."""
    return _wall_time(record, key, SHANGHAI)


def utc_wall_time(record: Mapping[str, Any], key: str) -> datetime | None:
    """A `yyyy-MM-dd HH:mm:ss` UTC time without a marker, double spaces allowed (Huawei)."""
    return _wall_time(record, key, UTC)


def _wall_time(record: Mapping[str, Any], key: str, zone: tzinfo) -> datetime | None:
    raw = text(record, key)
    if raw is None:
        return None
    wall = _canonical_wall_time(raw)
    if wall is None:
        try:
            wall = datetime.strptime(_SPACES.sub(" ", raw), _WALL_TIME)
        except ValueError:
            raise InvalidMessage(
                "bad_time", f"{key} is not a yyyy-MM-dd HH:mm:ss time: {raw!r}"
            ) from None
    try:
        return wall.replace(tzinfo=zone).astimezone(UTC)
    except OverflowError:  # 0001-01-01 07:59 in Shanghai has no UTC instant
        raise InvalidMessage("bad_time", f"{key} is out of range: {raw!r}") from None


def _canonical_wall_time(raw: str) -> datetime | None:
    """`raw` read as strptime would read it, when it is spelled canonically; else None.

    strptime accepts every canonical spelling that names a real time and gives the same
    datetime; an impossible one (month 13, 24:00) returns None and strptime words the error.
    """
    match = _CANONICAL_WALL_TIME.fullmatch(raw)
    if match is None:
        return None
    year, month, day, hour, minute, second = map(int, match.groups())
    try:
        return datetime(year, month, day, hour, minute, second)
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
        raise InvalidMessage("bad_time", f"{key} is out of range: {seconds}") from None


def plus_millis(value: datetime | None, millis: int | None) -> datetime | None:
    if value is None:
        return None
    try:
        return value + timedelta(milliseconds=millis or 0)
    except OverflowError:
        raise InvalidMessage("bad_time", f"offset {millis} ms is out of range") from None


def first(*values: T | None) -> T | None:
    """The first value that is not None: the fallback chains of docs/formats.md."""
    return next((value for value in values if value is not None), None)


def lookup(table: Mapping[str, T], code: str | None, default: T) -> T:
    return default if code is None else table.get(code, default)


def build(factory: Callable[..., CallEvent] = CallEvent, /, **fields: Any) -> CallEvent:
    """Build an event; a value the model refuses is the message's fault, so it is InvalidMessage."""
    try:
        return factory(**fields)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise InvalidMessage("bad_field", f"{where}: {problem['msg']}") from None


def compact(values: Mapping[str, Any]) -> dict[str, Any]:
    """Drop absent values (None, "", [], {}) so refs and extras hold only what was sent."""
    return {key: value for key, value in values.items() if value not in (None, "", [], {})}


def sound_json(value: T, what: str = "body") -> T:
    """`value` if it can be written back as UTF-8 JSON, else InvalidMessage.

    `json.loads` accepts lone UTF-16 surrogate escapes (`"\\ud800"`); kept, they make every later
    encode fail (event id, sink), so the message would be retried forever, not dead-lettered.
    """
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMessage("bad_unicode", f"{what} holds a lone UTF-16 surrogate") from None
    except (ValueError, RecursionError) as exc:
        raise InvalidMessage("not_json", f"{what} cannot be encoded as JSON again: {exc}") from None
    return value


def storable(event: CallEvent) -> CallEvent:
    """`event` if it serializes: pydantic refuses values nested deeper than ~250 levels."""
    if _plainly_serializable(event):
        return event
    try:
        event.model_dump_json()
    except ValueError as exc:  # PydanticSerializationError is a ValueError
        raise InvalidMessage("bad_field", f"event cannot be serialized: {exc}") from None
    return event


_EVENT_TEXTS = attrgetter(
    "event_id", "call_id", "caller", "callee", "provider_status", "recording_url", "correlation_id"
)
_SCALARS = (int, float, bool, type(None))


def _plainly_serializable(event: CallEvent) -> bool:
    """True when `model_dump_json` cannot fail: text encodes, extras hold only scalars.

    The check most events pass at a fraction of a serialization's cost; anything nested or
    unusual is left to the serialization itself. `isascii` is O(1) on CPython's strings.
    """
    texts = [text for text in _EVENT_TEXTS(event) if text is not None]
    texts += event.refs.keys()
    texts += event.refs.values()
    for key, value in event.extras.items():
        texts.append(key)
        if isinstance(value, str):
            texts.append(value)
        elif not isinstance(value, _SCALARS):
            return False
    return all(text.isascii() or _encodes(text) for text in texts)


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
