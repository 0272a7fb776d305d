"""Every pattern that reads untrusted input, fed adversarial input of the size limit.

Each body here once cost minutes to hours of CPU (a regex whose quantifiers could split the same
run of characters many ways); each test asserts the answer, not the time: docs/security.md
("Decoding limits") and bench/bench_hostile.py give the figures. A regex holds the interpreter,
so no signal can stop it: a relapse shows as this module's thread timeout failing the run.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import json
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qsl
from urllib.parse import unquote_plus as stdlib_unquote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.errors import InvalidMessage
from consumer.formats import FORMAT_NAMES, parse
from consumer.formats._decode import MAX_BODY_BYTES, MAX_CONTAINERS, form_fields, unquote_plus
from consumer.logs import mask_phone_numbers
from consumer.sources.http_auth import Credentials, HuaweiAksk, sign_huawei

pytestmark = pytest.mark.timeout(120, method="thread")

LIMIT = MAX_BODY_BYTES
VOICE_REPORT = "aliyun.voice_report"


def sample(name: str) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(
        files("consumer.testing").joinpath("samples", name).read_text(encoding="utf-8")
    )
    return record


def voice_report(**changes: Any) -> bytes:
    return json.dumps({**sample("aliyun.voice_report.seed000.json"), **changes}).encode()


def padded(text: str, around: str = "") -> str:
    """`text` repeated until the voice report holding it as a field is the size limit."""
    room = LIMIT - len(voice_report(duration=around)) - 16
    return text * (room // len(text.encode()))


def invalid(fmt: str, body: bytes) -> InvalidMessage:
    with pytest.raises(InvalidMessage) as caught:
        parse(fmt, body)
    return caught.value


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_a_letter_newlines_and_a_bang_are_not_json_in_every_format(fmt: str) -> None:
    # Given the body that held the base64 regex for minutes: a letter, newlines, a `!`
    body = b"a" + b"\n" * (LIMIT - 2) + b"!"
    # When a format decodes it, Then it is neither base64 of JSON nor JSON
    assert invalid(fmt, body).reason == "not_json"


def test_base64_cut_by_a_size_limit_of_line_breaks_still_decodes() -> None:
    # Given a voice report in base64 with megabytes of CRLF inside it (MIME-style breaks)
    plain = voice_report()
    encoded = base64.b64encode(plain)
    breaks = b"\r\n" * ((LIMIT - len(encoded)) // 2)
    body = encoded[:8] + breaks + encoded[8:]
    assert len(body) <= LIMIT
    # When it is parsed, Then it is the same event as the plain JSON body
    assert parse(VOICE_REPORT, body) == parse(VOICE_REPORT, plain)


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_a_body_over_the_limit_is_refused_unread(fmt: str) -> None:
    # Given a valid-looking body one byte over the limit
    body = b"{" + b" " * (LIMIT - 1) + b"}"
    # When a format gets it, Then it is too large, and the message says both sizes
    error = invalid(fmt, body)
    assert error.reason == "too_large"
    assert f"{LIMIT + 1} bytes" in error.detail
    assert str(LIMIT) in error.detail


def test_a_7moor_form_over_the_limit_is_refused_unread() -> None:
    # Given a form body whose one field holds JSON, one byte over the limit (the form path
    # once decoded it whole after the JSON path had refused it)
    head = b"data=%7B%7D"
    body = head + b"+" * (LIMIT + 1 - len(head))
    # When it is parsed, Then it is too large
    assert invalid("moor7.event", body).reason == "too_large"


def test_a_body_of_exactly_the_limit_is_decoded() -> None:
    # Given a good voice report padded with whitespace to exactly the limit
    plain = voice_report()
    body = plain + b" " * (LIMIT - len(plain))
    # When it is parsed, Then it is the same event
    assert parse(VOICE_REPORT, body) == parse(VOICE_REPORT, plain)


def test_a_duration_with_a_run_of_spaces_and_no_unit_is_a_bad_field() -> None:
    # Given a duration of `1小时`, megabytes of spaces and a letter (quadratic before)
    duration = "1小时" + padded(" ") + "x"
    # When it is parsed, Then it is a bad field, quoted short with its size
    error = invalid(VOICE_REPORT, voice_report(duration=duration))
    assert error.reason == "bad_field"
    assert error.detail.startswith("duration is not a number of seconds: '1小时   ")
    assert f"({len(duration.encode())} bytes)" in error.detail


def test_a_duration_with_a_run_of_spaces_between_its_units_is_read() -> None:
    # Given `1小时`, megabytes of spaces, `2分`, spaces again and `3秒`
    spaces = padded(" ")[: LIMIT // 3]
    body = voice_report(duration=f"1小时{spaces}2分{spaces}3秒")
    # When it is parsed, Then the duration is 1 h 2 min 3 s
    (normalized,) = parse(VOICE_REPORT, body)
    assert normalized.event.duration_seconds == 3723


def test_a_whole_number_of_megabytes_of_digits_is_a_bad_field() -> None:
    # Given an ASR offset of megabytes of digits and a trailing letter
    record = sample("aliyun.voice_asr_report.fields.json")
    record["begin_offset"] = "1" * (LIMIT - 4096) + "x"
    # When it is parsed, Then it is a bad field
    assert invalid("aliyun.voice_asr_report", json.dumps(record).encode()).reason == "bad_field"


def test_a_wall_time_with_megabytes_of_spaces_is_read() -> None:
    # Given an originate time whose date and time are parted by megabytes of spaces
    body = voice_report(originate_time="2020-05-01" + padded(" ") + "10:00:00")
    # When it is parsed, Then the spaces count as one
    (normalized,) = parse(VOICE_REPORT, body)
    assert normalized.event.started_at == datetime(2020, 5, 1, 2, 0, tzinfo=UTC)


def test_a_form_body_of_one_long_word_is_not_json() -> None:
    # Given a 7moor body of letters only (the form-field pattern scans them)
    # When it is parsed, Then it is neither JSON nor a form
    assert invalid("moor7.event", b"a" * LIMIT).reason == "not_json"


def test_a_wsse_header_of_one_long_word_is_refused() -> None:
    # Given an X-WSSE header of one 4 MiB word (each letter once restarted the scan)
    checker = HuaweiAksk("key", "secret", timedelta(minutes=5), clock=lambda: 1_700_000_000.0)
    # When it is checked, Then it lacks every field
    denied = checker.check(Credentials({"X-WSSE": "a" * LIMIT}, None, []))
    assert denied is not None
    assert denied.reason == "bad_signature"


def test_a_signed_wsse_header_behind_a_long_word_is_accepted() -> None:
    # Given a signed X-WSSE header with a 4 MiB word in front of its fields
    created = datetime.fromtimestamp(1_700_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = sign_huawei("X-WSSE", "key", "secret", nonce="n-1", created=created)
    token = headers["X-WSSE"].replace("UsernameToken ", "UsernameToken " + "a" * LIMIT + " ")
    checker = HuaweiAksk("key", "secret", timedelta(minutes=5), clock=lambda: 1_700_000_000.0)
    # When it is checked, Then it passes
    assert checker.check(Credentials({"X-WSSE": token}, None, [])) is None


def test_megabytes_of_digits_in_a_phone_field_are_masked() -> None:
    # Given a phone value of megabytes of digits, and a text of many mobile numbers
    digits = "1" * LIMIT
    numbers = "13812345678 " * (LIMIT // 12)
    # When they are masked, Then the run keeps 3 + 4 digits and each number its own
    assert mask_phone_numbers(digits, phone_field=True) == "111****1111"
    assert mask_phone_numbers(numbers) == "138****5678 " * (LIMIT // 12)


def test_a_form_of_a_million_empty_fields_is_refused_naming_the_field() -> None:
    # Given a 7moor form body of `a=&` up to the limit (parse_qsl decoded every field first)
    body = b"a=&" * (LIMIT // 3)
    # When it is parsed, Then the last, empty field is named by its number
    error = invalid("moor7.event", body)
    assert error.reason == "not_json"
    count = LIMIT // 3 + 1
    assert error.detail.endswith(f"bad query field: field {count} of {count} has no '='")


def test_a_form_field_of_escapes_up_to_the_limit_is_decoded() -> None:
    # Given a 7moor form whose one field is a urlencoded voice push, each byte escaped, padded
    # with escaped spaces up to the limit
    push = b'{"pushType": "login", "agentNumber": "8001", "statusTime": "2024-05-01 10:00:00"}'
    escaped = "".join(f"%{byte:02X}" for byte in push)
    body = ("data=" + escaped + "%20" * ((LIMIT - len(escaped) - 5) // 3)).encode()
    # When it is parsed, Then it is the same event as the JSON
    assert parse("moor7.event", body) == parse("moor7.event", push)


FORM_PIECES = st.sampled_from(
    [
        *"%%%==&&+_ \t\r\naZgG09fFcCeE7",
        *("é", "秒", "%E7", "%A7", "%92", "%3D", "%25", "%0A", "%C3", "%A9", "%e7", "%26"),
        *("\x00", "\x7f"),
    ]
)


def _outcome(call: Any, text: str) -> tuple[str, Any]:
    try:
        return "ok", call(text)
    except UnicodeDecodeError:
        return "not utf-8", None
    except ValueError:
        return "malformed", None


@settings(max_examples=400, deadline=None)
@given(st.lists(FORM_PIECES, max_size=24).map("".join))
def test_unquote_plus_answers_as_the_standard_library_does(text: str) -> None:
    # Given any text of escapes, separators and UTF-8, Then the C-speed decoding agrees
    assert _outcome(unquote_plus, text) == _outcome(
        lambda t: stdlib_unquote_plus(t, errors="strict"), text
    )


@settings(max_examples=400, deadline=None)
@given(st.lists(FORM_PIECES, max_size=24).map("".join).filter(lambda text: "=" in text))
def test_form_fields_answer_as_parse_qsl_does(text: str) -> None:
    # Given any form text, When both read it
    got = _outcome(form_fields, text)
    want = _outcome(
        lambda t: parse_qsl(t, keep_blank_values=True, strict_parsing=True, errors="strict"), text
    )
    # Then both refuse it, or both give the same fields (the first five of them, decoded)
    if want[0] == "ok":
        assert got == ("ok", (len(want[1]), want[1][:5]))
    else:
        assert got[0] != "ok"


@pytest.mark.parametrize("body", [voice_report(), b"[" + b"[]," * 1000 + b"[]]"])
def test_the_gc_paused_for_a_parse_is_running_again_after_it(body: bytes) -> None:
    # Given the GC running, When a body is parsed (stored, or refused)
    with contextlib.suppress(InvalidMessage):
        parse(VOICE_REPORT, body)
    # Then the GC runs again
    assert gc.isenabled()


def test_a_gc_disabled_by_the_application_stays_disabled() -> None:
    # Given an application that turned the GC off
    gc.disable()
    try:
        # When a body is parsed, Then the GC is still off
        parse(VOICE_REPORT, voice_report())
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_7moor_event_id_of_megabytes_is_hashed() -> None:
    # Given a 7moor login push whose eventUniqueId is megabytes of id letters (the readable-id
    # patterns are bounded, {1,64})
    record = sample("moor7.event.login.json")
    record["eventUniqueId"] = "a" * (LIMIT - 4096)
    # When it is parsed, Then its event id is a short hash, not the id itself
    (normalized,) = parse("moor7.event", json.dumps(record).encode())
    assert normalized.event.event_id.startswith("moor7-")
    assert len(normalized.event.event_id) < 100


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_a_body_of_a_million_small_arrays_is_refused_before_decoding(fmt: str) -> None:
    # Given a JSON array of `[[]]` up to the limit: 1.7 million lists to build and free
    body = b"[" + b",".join([b"[[]]"] * ((LIMIT - 2) // 5)) + b"]"
    # When a format gets it, Then it is too large, counting its brackets
    error = invalid(fmt, body)
    assert error.reason == "too_large"
    assert f"more than the {MAX_CONTAINERS} decoded" in error.detail


def test_a_push_of_5000_records_is_decoded() -> None:
    # Given an HTTP-push array of 5,000 voice reports (two brackets each, far below the bound)
    record = sample("aliyun.voice_report.seed000.json")
    records = [{**record, "call_id": f"c-{n}"} for n in range(5000)]
    # When it is parsed, Then it is 5,000 events
    assert len(parse(VOICE_REPORT, json.dumps(records).encode())) == 5000
