"""The shared Aliyun VMS pieces: status-code table (docs/formats.md F1.2), field helpers, decoding,
and the guarantee that every one of the four formats fails only with InvalidMessage."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.errors import InvalidMessage
from consumer.formats import aliyun_vms as vms
from consumer.formats import get_format
from consumer.model import HangupBy, Outcome, Provider
from tests.formats.strategies import PROPERTY, check, json_values, stringified

SAMPLES = Path(__file__).parent / "samples"
FORMATS = (
    "aliyun.voice_report",
    "aliyun.voice_call_report",
    "aliyun.voice_record_report",
    "aliyun.voice_asr_report",
)
SAMPLE_FILES = sorted(SAMPLES.glob("aliyun.voice_*.json"))


# --- the status-code table, row by row (F1.2) ---------------------------------------------------

TABLE = [
    ("200000", Outcome.ANSWERED),
    ("200001", Outcome.ANSWERED),
    ("200002", Outcome.BUSY),
    ("200003", Outcome.NO_ANSWER),
    ("200004", Outcome.INVALID_NUMBER),
    ("200005", Outcome.REJECTED),
    ("200006", Outcome.FAILED),
    ("200007", Outcome.UNREACHABLE),
    ("200008", Outcome.ANSWERED),
    ("200010", Outcome.POWERED_OFF),
    ("200011", Outcome.OUT_OF_SERVICE),
    ("200012", Outcome.BLOCKED),
    ("200100", Outcome.UNKNOWN),
    ("200101", Outcome.UNKNOWN),
    ("200102", Outcome.UNKNOWN),
    ("200103", Outcome.UNKNOWN),
    ("200104", Outcome.BLOCKED),
    ("200105", Outcome.BLOCKED),
    ("200111", Outcome.REJECTED),
    ("200112", Outcome.BUSY),
    ("200113", Outcome.NO_ANSWER),
    ("200116", Outcome.INVALID_NUMBER),
    ("200117", Outcome.BLOCKED),
    ("200118", Outcome.BLOCKED),
    ("200119", Outcome.BLOCKED),
    ("200120", Outcome.UNREACHABLE),
    ("200121", Outcome.FAILED),
    ("200130", Outcome.UNKNOWN),
    ("200201", Outcome.UNKNOWN),
    ("200202", Outcome.UNKNOWN),
    ("300000", Outcome.UNKNOWN),
    ("9996", Outcome.FAILED),
    ("999999", Outcome.FAILED),
    ("500", Outcome.FAILED),
    ("400", Outcome.FAILED),
    ("482", Outcome.INVALID_NUMBER),
    ("476", Outcome.OUT_OF_SERVICE),
    ("200009", Outcome.UNKNOWN),
    ("abc", Outcome.UNKNOWN),
    (None, Outcome.UNKNOWN),
]


@pytest.mark.parametrize(("code", "expected"), TABLE)
def test_outcome_follows_the_status_code_table(code: str | None, expected: Outcome) -> None:
    # Given a status code without an answer time / When it is looked up / Then F1.2 decides
    assert vms.outcome(code) is expected


@pytest.mark.parametrize("code", ["200010", "200100", "200002", "777", None])
def test_an_answer_time_always_means_answered(code: str | None) -> None:
    # Given any code, and a VoiceReport start_time / When looked up / Then the call was answered
    assert vms.outcome(code, answered=True) is Outcome.ANSWERED


# --- hangup_direction, out_id -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"hangup_direction": "用户"}, (HangupBy.CALLEE, None)),
        ({"hangup_direction": " 机器 "}, (HangupBy.SYSTEM, None)),
        ({"hangup_direction": "平台"}, (None, "平台")),
        ({"hangup_direction": ""}, (None, None)),
        ({}, (None, None)),
    ],
)
def test_hangup_direction_maps_user_to_callee_and_machine_to_system(
    raw: dict[str, Any], expected: tuple[HangupBy | None, str | None]
) -> None:
    # Given a hangup_direction / When mapped / Then 用户 is the callee, 机器 the system, else raw
    assert vms.hangup_by(raw) == expected


@pytest.mark.parametrize(
    ("out_id", "correlation_id", "refs"),
    [
        ("123456", "123456", {}),
        (123456, "123456", {}),
        (
            "ALICOM_SMART_SAAS^111111^2222222",
            "ALICOM_SMART_SAAS^111111^2222222",
            {"task_id": "111111"},
        ),
        ("ALICOM_SMART_SAAS^42", "ALICOM_SMART_SAAS^42", {"task_id": "42"}),
        ("ALICOM_SMART_SAAS^^9", "ALICOM_SMART_SAAS^^9", {}),
        ("ALICOM_SMART_SAAS", "ALICOM_SMART_SAAS", {}),
        ("", None, {}),
        (None, None, {}),
    ],
)
def test_out_id_is_the_correlation_id_and_a_saas_out_id_names_its_task(
    out_id: object, correlation_id: str | None, refs: dict[str, str]
) -> None:
    # Given an out_id / When read / Then it is kept whole, and a SaaS batch task id is a ref
    assert vms.out_id_fields({"out_id": out_id}) == (correlation_id, refs)


# --- numbers and times ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("10", 10),
        (10, 10),
        (10.0, 10),
        ("10秒", 10),
        (" 10 秒 ", 10),
        ("0", 0),
        ("0秒", 0),
        ("1分10秒", 70),
        ("1小时2分钟3秒", 3723),
        ("", None),
        (None, None),
    ],
)
def test_duration_accepts_numbers_strings_and_chinese_units(
    raw: object, seconds: int | None
) -> None:
    # Given a duration as Aliyun may send it / When read / Then it is whole seconds
    assert vms.duration({"duration": raw}) == seconds


@pytest.mark.parametrize("raw", ["ten", "-5", -5, "1.5", 10.5, "10分钟秒x", "秒", "9" * 19, True])
def test_a_duration_that_is_not_seconds_is_refused_by_name(raw: object) -> None:
    # Given a nonsense duration / When read / Then InvalidMessage names the field and value
    with pytest.raises(InvalidMessage) as caught:
        vms.duration({"duration": raw})
    assert caught.value.reason == "bad_field"
    assert "duration" in caught.value.detail


@given(digits=st.text(alphabet="0123456789٣３", min_size=1, max_size=24))
def test_bare_digits_read_as_the_same_digits_with_the_seconds_unit(digits: str) -> None:
    # Given digits of any length, ASCII or not / When read bare and as "<digits>秒" (the unit
    # makes them go through the unit pattern) / Then both read alike: same seconds or same refusal
    def read(raw: str) -> int | str | None:
        try:
            return vms.duration({"duration": raw})
        except InvalidMessage as exc:
            return exc.reason

    assert read(digits) == read(digits + "秒")


def test_a_duration_that_is_not_a_scalar_is_refused() -> None:
    with pytest.raises(InvalidMessage, match="duration must be a string or number"):
        vms.duration({"duration": {"value": 10}})


@pytest.mark.parametrize(("raw", "value"), [("1200", 1200), (1200, 1200), ("-3", -3), (None, None)])
def test_whole_number_reads_numbers_and_numeric_strings(raw: object, value: int | None) -> None:
    assert vms.whole_number({"n": raw}, "n") == value


@pytest.mark.parametrize("raw", ["1.5", 1.5, "12ms", "9" * 19, "1e3"])
def test_whole_number_refuses_what_is_not_a_whole_number(raw: object) -> None:
    # Given a value _decode.integer would have bent into digits / When read / Then it is refused
    with pytest.raises(InvalidMessage, match="n is not a whole number"):
        vms.whole_number({"n": raw}, "n")


def test_times_are_shanghai_wall_times_converted_to_utc() -> None:
    # Given a VMS wall time / When read / Then it is eight hours earlier in UTC
    value = vms.time({"t": "2020-05-01 00:30:00"}, "t")
    assert value is not None
    assert value.isoformat() == "2020-04-30T16:30:00+00:00"


@pytest.mark.parametrize("raw", ["0001-01-01 07:59:59", "0001-01-01 00:00:00"])
def test_a_time_before_year_one_in_utc_is_a_bad_time_not_a_crash(raw: str) -> None:
    # Given a Shanghai time whose UTC instant falls before year 1 / When read / Then bad_time
    with pytest.raises(InvalidMessage) as caught:
        vms.time({"t": raw}, "t")
    assert caught.value.reason == "bad_time"
    assert "t is out of range" in caught.value.detail


def test_the_latest_representable_time_still_converts() -> None:
    value = vms.time({"t": "9999-12-31 23:59:59"}, "t")
    assert value is not None
    assert value.isoformat() == "9999-12-31T15:59:59+00:00"


@pytest.mark.parametrize("raw", ["2020-05-01T10:00:00", "2020-02-30 10:00:00", "yesterday"])
def test_a_time_in_another_shape_is_refused_by_name(raw: str) -> None:
    with pytest.raises(InvalidMessage, match="end_time is not a yyyy-MM-dd HH:mm:ss time"):
        vms.time({"end_time": raw}, "end_time")


def test_required_values_name_what_is_missing() -> None:
    with pytest.raises(InvalidMessage, match="call_id is missing or empty"):
        vms.call_id({"call_id": " "})
    with pytest.raises(InvalidMessage, match="begin_time is missing or empty"):
        vms.required_time({}, "begin_time")
    with pytest.raises(InvalidMessage, match="begin_offset is missing or empty"):
        vms.required_whole_number({"begin_offset": None}, "begin_offset")


# --- body decoding and registry -------------------------------------------------------------------


@pytest.mark.parametrize("name", FORMATS)
def test_each_format_is_registered_for_the_aliyun_vms_provider(name: str) -> None:
    fmt = get_format(name)
    assert fmt.name == name
    assert fmt.provider is Provider.ALIYUN_VMS


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda path: path.name)
def test_a_base64_mns_body_gives_the_same_events_as_raw_json(path: Path) -> None:
    # Given a sample, raw and as Alicom sends it over MNS (base64) / When parsed
    name = path.name.split(".")[0] + "." + path.name.split(".")[1]
    raw = path.read_bytes()
    parse = get_format(name).parse
    # Then both give exactly the same events and payloads
    assert parse(base64.b64encode(raw)) == parse(raw)
    assert parse(base64.encodebytes(raw)) == parse(raw)


@pytest.mark.parametrize(
    ("body", "reason", "detail"),
    [
        (b"", "not_json", "neither base64 of JSON nor JSON"),
        (b"\xff\xfe", "not_utf8", "not UTF-8"),
        (b"[]", "empty_batch", "body is an empty array"),
        (b'"call"', "not_object", "body is a string"),
        (b'[{"call_id":"1"}, 3]', "not_object", "body[1] is a number"),
    ],
)
@pytest.mark.parametrize("name", FORMATS)
def test_bodies_that_are_not_records_are_refused_with_the_reason(
    name: str, body: bytes, reason: str, detail: str
) -> None:
    with pytest.raises(InvalidMessage) as caught:
        get_format(name).parse(body)
    assert caught.value.reason == reason
    assert detail in caught.value.detail


@pytest.mark.parametrize("name", FORMATS)
def test_a_bad_record_in_an_array_is_named_by_its_index(name: str) -> None:
    # Given a two-record array whose second record lacks call_id
    good = json.loads(_first_sample(name))
    good = good[0] if isinstance(good, list) else good
    bad = {key: value for key, value in good.items() if key != "call_id"}
    # When parsed / Then the error names body[1] and the field
    with pytest.raises(InvalidMessage) as caught:
        get_format(name).parse(json.dumps([good, bad]).encode())
    assert caught.value.reason == "missing_field"
    assert caught.value.detail == "body[1]: call_id is missing or empty"


def _first_sample(name: str) -> bytes:
    return next(path for path in SAMPLE_FILES if path.name.startswith(name + ".")).read_bytes()


# --- properties: only InvalidMessage, whatever the bytes ------------------------------------------

_RECORDS: dict[str, list[dict[str, Any]]] = {name: [] for name in FORMATS}
for _path in SAMPLE_FILES:
    _value = json.loads(_path.read_bytes())
    _RECORDS[".".join(_path.name.split(".")[:2])].extend(
        _value if isinstance(_value, list) else [_value]
    )
_ALL_RECORDS = [record for records in _RECORDS.values() for record in records]
_KEYS = sorted({key for record in _ALL_RECORDS for key in record})


@st.composite
def _mutated_records(draw: st.DrawFn, name: str) -> dict[str, Any]:
    # Mostly the format's own records (to get past the required fields), sometimes another's.
    pool = _RECORDS[name] if draw(st.integers(0, 4)) else _ALL_RECORDS
    record = dict(draw(st.sampled_from(pool)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        key = draw(st.sampled_from([*_KEYS, draw(st.text(max_size=6))]))
        action = draw(st.sampled_from(["delete", "replace", "stringify", "add"]))
        if action == "delete":
            record.pop(key, None)
        elif action == "stringify":
            record[key] = stringified(record.get(key))
        else:
            record[key] = draw(json_values)
    return record


@st.composite
def _mutated_bodies(draw: st.DrawFn, name: str) -> bytes:
    records = draw(st.lists(_mutated_records(name), min_size=1, max_size=3))
    value: Any = records if draw(st.booleans()) or len(records) > 1 else records[0]
    body = json.dumps(value, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    return base64.b64encode(body) if draw(st.booleans()) else body


def _parse_or_refuse(name: str, body: bytes) -> None:
    result = check(name, body)
    if isinstance(result, list):
        for event in result:
            assert event.provider is Provider.ALIYUN_VMS
            assert event.call_id


@pytest.mark.parametrize("name", FORMATS)
@PROPERTY
@given(data=st.data())
def test_mutated_valid_bodies_give_events_or_invalid_message(
    name: str, data: st.DataObject
) -> None:
    _parse_or_refuse(name, data.draw(_mutated_bodies(name), label="body"))


@pytest.mark.parametrize("name", FORMATS)
def test_a_lone_surrogate_is_refused_not_crashed_on(name: str) -> None:
    # Given a valid record whose undocumented key holds a lone UTF-16 surrogate escape
    record = json.loads(_first_sample(name))
    record = record[0] if isinstance(record, list) else record
    body = json.dumps(record | {"note": "\ud800"}).encode()
    # When parsed / Then it is a dead letter, not an encode error later in the sink
    with pytest.raises(InvalidMessage) as caught:
        get_format(name).parse(body)
    assert caught.value.reason == "bad_unicode"


@pytest.mark.parametrize("name", FORMATS)
def test_an_extra_nested_too_deeply_to_store_is_refused(name: str) -> None:
    # Given a valid record with an undocumented key nested 400 levels deep
    record = json.loads(_first_sample(name))
    record = record[0] if isinstance(record, list) else record
    body = json.dumps(record).encode()[:-1] + b', "deep": ' + b"[" * 400 + b"]" * 400 + b"}"
    # When parsed / Then it is refused, since the event could never be serialized
    with pytest.raises(InvalidMessage, match="event cannot be serialized"):
        get_format(name).parse(body)
