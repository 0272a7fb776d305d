"""Bodies to JSON values (or form fields) within bounds, for the format modules.

Every step is linear in the body, and a body above `MAX_BODY_BYTES` is refused before any
decoding, so one message costs a bounded amount of CPU (docs/security.md, "Decoding limits"):
no regular expression here may hold quantifiers that can split the same run of characters.
Every helper raises `InvalidMessage` (never `KeyError`, `ValueError`, ...).
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
from collections.abc import Callable
from typing import Any, TypeVar

from consumer.errors import InvalidMessage, Reason, clip

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
    # At most one container per byte: below 500 bytes (every status push) the length bounds
    # the count well enough for both tests below, and the two passes are spared.
    containers = len(body) if len(body) < 500 else body.count(b"[") + body.count(b"{")
    if containers > MAX_CONTAINERS:
        raise InvalidMessage(
            Reason.TOO_LARGE,
            f"body holds {containers} '[' and '{{', more than the {MAX_CONTAINERS} decoded",
        )
    try:
        value = _loads(text)
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

    def __enter__(self) -> None:
        # A class rather than a @contextmanager: the generator cost ~2 us per message.
        with self._lock:
            if self._holders == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._holders += 1

    def __exit__(self, *_: object) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0 and self._was_enabled:
                gc.enable()


_GC_PAUSE = _GcPause()
# A body this small makes at most ~2,000 containers: a few young collections, cheaper than the
# pause's lock and GC calls (a tenth of the parse of a status push, some 250 bytes).
_UNPAUSED_BYTES = 4096


def bounded(parse: Callable[[bytes], T]) -> Callable[[bytes], T]:
    """`parse` for a body of at most `MAX_BODY_BYTES` (else `too_large`, whatever the path the
    format would take), run with the cyclic GC paused (`_GcPause`) unless it is small."""

    @functools.wraps(parse)
    def paused(body: bytes) -> T:
        if len(body) <= _UNPAUSED_BYTES:
            return parse(body)
        check_size(body)
        with _GC_PAUSE:
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


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def _loads(text: str) -> Any:
    """`json.loads(text, parse_constant=_no_constant)` on one decoder (it builds one per call)."""
    if text.startswith("\ufeff"):
        return json.loads(text)  # its own error for a byte order mark left over
    return _DECODER.decode(text)


def load_mns_json(body: bytes) -> Any:
    """An MNS body: base64 of UTF-8 JSON (what Alicom sends), else raw JSON (formats.md F1.1)."""
    check_size(body)
    stripped = body.strip()
    # A JSON object or array is never base64 ("{" and "[" are not in its alphabet): spare the
    # pass over the body that would say so.
    if stripped[:1] not in b"{[" and _looks_base64(stripped):
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


__all__ = [
    "MAX_BODY_BYTES",
    "MAX_CONTAINERS",
    "bounded",
    "check_size",
    "form_fields",
    "load_json",
    "load_mns_json",
    "sound_json",
    "unquote_plus",
]
