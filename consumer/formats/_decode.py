"""Decoding and field helpers shared by the format modules.

Every helper raises `InvalidMessage` (never `KeyError`, `ValueError`, ...) so that a format module
built from them has exactly one failure mode, which the pipeline turns into a dead letter.

Every step is linear in the body, and a body above `MAX_BODY_BYTES` is refused before any
decoding, so one message costs a bounded amount of CPU (docs/security.md, "Decoding limits"):
no regular expression here may hold quantifiers that can split the same run of characters.
"""

from __future__ import annotations

import base64
import binascii
import functools
import gc
import json
import re
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, tzinfo
from operator import attrgetter
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from consumer.errors import InvalidMessage, Reason, clip
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
# A `%` that does not start an escape (`unquote` keeps it); linear, a fixed lookahead.
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
# What may make `json.dumps` fail on what `json.loads` made: a lone surrogate escape (a pair
# matches too, and only costs the full check) ...
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# ... or nesting deeper than its recursion limit, ruled out when the brackets of the body
# (strings included: a bracket in a string only makes the proof fail) empty within this many
# passes, each removing one or two levels (`_shallow`).
_SHALLOW_PASSES = 8
_NOT_BRACKET = bytes(byte for byte in range(256) if byte not in b"[]{}")
# Every byte but the form separators, deleted to leave a form's skeleton of `&` and `=`.
_NOT_FORM_SEPARATOR = bytes(byte for byte in range(256) if byte not in b"&=")
# What a base64 body may hold before its padding: the alphabet and line breaks (MIME wraps it).
_BASE64_TEXT = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/\r\n"

MAX_BODY_BYTES = 4 * 1024 * 1024
"""The largest body a format decodes: RocketMQ's own default limit, 64 times MNS's. A larger
one is dead-lettered as `too_large` unread, which bounds the CPU one message may cost."""
MAX_CONTAINERS = 100_000
"""The most `[` and `{` a JSON body may hold (each may open an array or an object): 4 MiB of
`[[]],` makes 1.7 million lists, which cost 70 ms per MiB to build and free. A push holds a
few per record, and 4 MiB of real records about 8,000 records."""

T = TypeVar("T")


def check_size(body: bytes) -> None:
    """Refuse a body above `MAX_BODY_BYTES` before any work is spent on it."""
    if len(body) > MAX_BODY_BYTES:
        raise InvalidMessage(
            Reason.TOO_LARGE, f"body is {len(body)} bytes, more than the {MAX_BODY_BYTES} decoded"
        )


def load_json(body: bytes) -> Any:
    """Strict UTF-8 JSON; the body of every HTTP push and RocketMQ message."""
    check_size(body)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidMessage(
            Reason.NOT_UTF8, f"body is not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    text = text.removeprefix("\ufeff")
    containers = body.count(b"[") + body.count(b"{")
    if containers > MAX_CONTAINERS:
        raise InvalidMessage(
            Reason.TOO_LARGE,
            f"body holds {containers} '[' and '{{', more than the {MAX_CONTAINERS} decoded",
        )
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InvalidMessage(
            Reason.NOT_JSON, f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise InvalidMessage(Reason.NOT_JSON, "JSON nested too deeply") from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise InvalidMessage(Reason.NOT_JSON, clip(str(exc), quote=False)) from None
    if _SURROGATE_ESCAPE.search(text) is None and (containers < 500 or _shallow(body)):
        # Nothing to find: a lone surrogate only comes from a \uD800-\uDFFF escape, and what
        # json.loads nested less than 500 deep (or `_shallow` proves shallow) json.dumps writes
        # back: spare the second pass (up to 30 ms per MiB).
        return value
    return sound_json(value)


def _shallow(body: bytes) -> bool:
    """True only when the JSON `body` surely nests at most 2 x `_SHALLOW_PASSES` levels (its
    brackets empty within the passes); linear, in C."""
    brackets = body.translate(None, _NOT_BRACKET)
    for _ in range(_SHALLOW_PASSES):
        if not brackets:
            return True
        inner = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if len(inner) == len(brackets):
            return False  # a bracket in a string: no proof
        brackets = inner
    return not brackets


class _GcPause:
    """Python's cyclic GC, paused while a format parses one body (`Format` wraps `parse`).

    Each container `json.loads` makes counts towards a collection, and each collection walks
    the young ones again: a 4 MiB array of `[]` took 400 ms to load with the GC, 70 ms without,
    and 60 ms more if the GC comes back while the value still lives. Paused for the whole
    parse, the value is freed by reference counting before any collection sees it. A parse is
    bounded by the body cap, so are the cycles it may leave (caught exceptions) until then.
    Threads parsing at once share one pause; the last of them enables the GC again, if it was
    enabled before the first.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._was_enabled = False

    @contextmanager
    def paused(self) -> Iterator[None]:
        with self._lock:
            if self._holders == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._holders += 1
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0 and self._was_enabled:
                    gc.enable()


_GC_PAUSE = _GcPause()


def bounded(parse: Callable[[bytes], T]) -> Callable[[bytes], T]:
    """`parse` for a body of at most `MAX_BODY_BYTES` (else `too_large`, whatever the path the
    format would take), run with the cyclic GC paused (`_GcPause`)."""

    @functools.wraps(parse)
    def paused(body: bytes) -> T:
        check_size(body)
        with _GC_PAUSE.paused():
            try:
                return parse(body)
            except BaseException as exc:
                _release_locals(exc)
                raise

    return paused


def _release_locals(exc: BaseException) -> None:
    """Clear the frames an exception holds (and those of its causes): their locals keep the
    parsed body alive, and the GC would walk all of it when it resumes. Tracebacks still
    print; only the local variables go."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        traceback.clear_frames(error.__traceback__)
        error = error.__cause__ or error.__context__


def _no_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON does not, and PostgreSQL's jsonb refuses them.
    raise InvalidMessage(Reason.NOT_JSON, f"{name} is not a JSON value")


def load_mns_json(body: bytes) -> Any:
    """An MNS body: base64 of UTF-8 JSON (what Alicom sends), else raw JSON (formats.md F1.1)."""
    check_size(body)
    stripped = body.strip()
    if _looks_base64(stripped):
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


def _looks_base64(stripped: bytes) -> bool:
    """Base64 text with line breaks and at most two `=` of padding at the end; linear.

    It was a regex whose `\\s*` after `[...\\r\\n]+` could split one run of newlines in
    quadratically many ways: one letter, 150 KB of newlines and a `!` cost minutes.
    `bytes.translate` looks at each byte once.
    """
    text = stripped.rstrip(b"=")
    return bool(text) and len(stripped) - len(text) <= 2 and not text.translate(None, _BASE64_TEXT)


def unquote_plus(text: str) -> str:
    """`urllib.parse.unquote_plus(text, errors="strict")`, decoded in C.

    The standard one loops in Python over each escape (about 100 ms per MiB of `%41`). Here
    the escapes become quoted-printable ones (`=41`; a literal `=` becomes `=3D`, a `%` that
    escapes nothing `=25`) for `binascii.a2b_qp`; a UTF-8 error raises `UnicodeDecodeError`
    as the standard one does (the test compares the two).
    """
    text = text.replace("+", " ")
    if "%" not in text:
        return text
    escaped = _BAD_ESCAPE.sub(b"=25", text.encode("utf-8").replace(b"=", b"=3D"))
    return binascii.a2b_qp(escaped.replace(b"%", b"=")).decode("utf-8")


def form_fields(text: str, decoded: int = 5) -> tuple[int, list[tuple[str, str]]]:
    """The number of fields of a form body and its first `decoded` fields, unquoted.

    What `parse_qsl(text, keep_blank_values=True, strict_parsing=True, errors="strict")` says
    of the body (a `ValueError` for a field without `=`, a `UnicodeDecodeError`), without
    decoding a million fields to say there is more than one.
    """
    skeleton = text.encode("utf-8").translate(None, _NOT_FORM_SEPARATOR)
    count = skeleton.count(b"&") + 1
    # A field without `=` is an `&` at either end of the skeleton, or two in a row.
    if skeleton[:1] != b"=":
        malformed = 0
    elif (pair := skeleton.find(b"&&")) >= 0:
        malformed = skeleton.count(b"&", 0, pair + 1)
    elif skeleton.endswith(b"&"):
        malformed = count - 1
    else:
        malformed = -1
    if malformed >= 0:
        raise ValueError(f"bad query field: field {malformed + 1} of {count} has no '='")
    pairs = []
    for field in text.split("&", decoded)[:decoded]:
        name, _, value = field.partition("=")
        pairs.append((unquote_plus(name), unquote_plus(value)))
    return count, pairs


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
            spaced = _SPACES.sub(" ", raw)
            if len(spaced) > len("yyyy-MM-dd HH:mm:ss"):  # strptime would quote it all
                raise ValueError(spaced)
            wall = datetime.strptime(spaced, _WALL_TIME)
        except ValueError:
            raise InvalidMessage(
                Reason.BAD_TIME, f"{key} is not a yyyy-MM-dd HH:mm:ss time: {clip(raw)}"
            ) from None
    try:
        return wall.replace(tzinfo=zone).astimezone(UTC)
    except OverflowError:  # 0001-01-01 07:59 in Shanghai has no UTC instant
        raise InvalidMessage(Reason.BAD_TIME, f"{key} is out of range: {clip(raw)}") from None


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
        raise InvalidMessage(Reason.BAD_TIME, f"{key} is out of range: {seconds}") from None


def plus_millis(value: datetime | None, millis: int | None) -> datetime | None:
    if value is None:
        return None
    try:
        return value + timedelta(milliseconds=millis or 0)
    except OverflowError:
        raise InvalidMessage(Reason.BAD_TIME, f"offset {millis} ms is out of range") from None


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
        raise InvalidMessage(
            Reason.BAD_FIELD, f"{clip(where, quote=False)}: {problem['msg']}"
        ) from None


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
        raise InvalidMessage(Reason.BAD_UNICODE, f"{what} holds a lone UTF-16 surrogate") from None
    except (ValueError, RecursionError) as exc:
        raise InvalidMessage(
            Reason.NOT_JSON, f"{what} cannot be encoded as JSON again: {exc}"
        ) from None
    return value


def storable(event: CallEvent) -> CallEvent:
    """`event` if it serializes: pydantic refuses values nested deeper than ~250 levels."""
    if _plainly_serializable(event):
        return event
    try:
        event.model_dump_json()
    except ValueError as exc:  # PydanticSerializationError is a ValueError
        raise InvalidMessage(Reason.BAD_FIELD, f"event cannot be serialized: {exc}") from None
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
