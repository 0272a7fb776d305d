"""What the four Aliyun VMS receipt formats share (docs/formats.md).

The status-code table is used by three of them, and all four share the body decoding (MNS
object or HTTP-push array), the `call_id` that merges them into one `calls` row, the `out_id`
echo and the Shanghai wall clock. Each format module only says which field goes where.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from consumer.errors import InvalidMessage, Reason, clip
from consumer.formats import _decode
from consumer.formats._common import each_record
from consumer.model import (
    CallEvent,
    Direction,
    HangupBy,
    JsonObject,
    Normalized,
    Outcome,
    Provider,
)

PROVIDER = Provider.ALIYUN_VMS

# Every documented VMS scenario but the inbound one (`biz_id`) is platform-originated.
DIRECTION = Direction.OUTBOUND

# Final codes only (运营商回执错误码, help.aliyun.com/document_detail/55085.htm). Intermediate
# codes (200101-200103, 200201, 200202, 300000), 200100 without an answer time and anything
# undocumented fall through to `unknown`.
OUTCOMES: Mapping[str, Outcome] = {
    "200000": Outcome.ANSWERED,
    "200001": Outcome.ANSWERED,
    "200002": Outcome.BUSY,
    "200003": Outcome.NO_ANSWER,
    "200004": Outcome.INVALID_NUMBER,
    "200005": Outcome.REJECTED,
    "200006": Outcome.FAILED,
    "200007": Outcome.UNREACHABLE,
    "200008": Outcome.ANSWERED,
    "200010": Outcome.POWERED_OFF,
    "200011": Outcome.OUT_OF_SERVICE,
    "200012": Outcome.BLOCKED,
    "200104": Outcome.BLOCKED,
    "200105": Outcome.BLOCKED,
    "200111": Outcome.REJECTED,
    "200112": Outcome.BUSY,
    "200113": Outcome.NO_ANSWER,
    "200116": Outcome.INVALID_NUMBER,
    "200117": Outcome.BLOCKED,
    "200118": Outcome.BLOCKED,
    "200119": Outcome.BLOCKED,
    "200120": Outcome.UNREACHABLE,
    "200121": Outcome.FAILED,
    "200130": Outcome.UNKNOWN,
    "9996": Outcome.FAILED,
    "999999": Outcome.FAILED,
    "500": Outcome.FAILED,
    "400": Outcome.FAILED,
    "482": Outcome.INVALID_NUMBER,
    "476": Outcome.OUT_OF_SERVICE,
}

# `hangup_direction`: the platform calls out, so "the user" (用户) is the callee. The dual-call
# page's example sends "aleg" (the caller leg, called first); "bleg" is its other leg.
HANGUP_BY: Mapping[str, HangupBy] = {
    "用户": HangupBy.CALLEE,
    "机器": HangupBy.SYSTEM,
    "aleg": HangupBy.CALLER,
    "bleg": HangupBy.CALLEE,
}

# The answer body of the HTTP batch push: `code` a number, any `msg` (http-batch-delivery-mode-1).
PUSH_ANSWER = json.dumps({"code": 0, "msg": "接收成功"}, ensure_ascii=False).encode("utf-8")

# out_id of the smart-outbound SaaS assistant: ALICOM_SMART_SAAS^<batch task id>^....
SAAS_PREFIX = "ALICOM_SMART_SAAS^"

_MAX_DIGITS = 18
_WHOLE = re.compile(r"[+-]?\d{1,18}")
# "10", "10秒" (V-VR-MNS); "1分10秒" and "1小时2分3秒" are not documented but cost nothing.
# The spaces after a unit belong to that unit's group: two `\s*` in a row (as this pattern once
# had) can split one run of spaces in quadratically many ways before failing.
_DURATION = re.compile(
    r"(?:(?P<h>\d{1,9})\s*小时\s*)?(?:(?P<m>\d{1,9})\s*分钟?\s*)?(?:(?P<s>\d{1,18})\s*秒?)?"
)


def outcome(code: str | None, *, answered: bool = False) -> Outcome:
    """The outcome of a final code; an answer time (VoiceReport `start_time`) overrides it."""
    if answered:
        return Outcome.ANSWERED
    return _decode.lookup(OUTCOMES, code, Outcome.UNKNOWN)


def call_id(record: Mapping[str, Any]) -> str:
    """The id that merges the four message types into one call; without it nothing merges.

    An inbound record (呼入) carries no `call_id` but a `biz_id`, which then stands in for it.
    """
    value = _decode.text(record, "call_id") or _decode.text(record, "biz_id")
    if value is None:
        raise InvalidMessage(Reason.MISSING_FIELD, "call_id is missing or empty")
    return value


def direction(record: Mapping[str, Any]) -> Direction:
    """Inbound for the inbound layout (`biz_id` without `call_id`), else outbound."""
    if _decode.text(record, "call_id") is None and _decode.text(record, "biz_id") is not None:
        return Direction.INBOUND
    return DIRECTION


def out_id_fields(record: Mapping[str, Any]) -> tuple[str | None, dict[str, str]]:
    """`correlation_id` and `refs` from `out_id`: the whole echo, plus the SaaS batch task id."""
    out_id = _decode.text(record, "out_id")
    refs: dict[str, str] = {}
    if out_id is not None and out_id.startswith(SAAS_PREFIX):
        task_id = out_id.removeprefix(SAAS_PREFIX).split("^", 1)[0].strip()
        if task_id:
            refs["task_id"] = task_id
    return out_id, refs


def hangup_by(record: Mapping[str, Any]) -> tuple[HangupBy | None, str | None]:
    """`hangup_by`, and the raw value when it is not one we know (to keep it in extras)."""
    raw = _decode.text(record, "hangup_direction")
    mapped = _decode.lookup(HANGUP_BY, raw, None)
    return mapped, (raw if mapped is None else None)


def time(record: Mapping[str, Any], key: str) -> datetime | None:
    """A Shanghai wall time in UTC; `0001-01-01 07:59:59` has no UTC instant: bad_time."""
    return _decode.shanghai_time(record, key)  # already UTC, the model's zone


def required_time(record: Mapping[str, Any], key: str) -> datetime:
    value = time(record, key)
    if value is None:
        raise InvalidMessage(Reason.MISSING_FIELD, f"{key} is missing or empty")
    return value


def in_utc(value: datetime | None, key: str) -> datetime | None:
    """In UTC, as the model wants it; before year 1 in UTC is bad input, not an OverflowError."""
    if value is None or value.tzinfo is UTC:
        return value
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidMessage(
            Reason.BAD_TIME, f"{key} is out of range: {value.isoformat()}"
        ) from None


def whole_number(record: Mapping[str, Any], key: str) -> int | None:
    """A whole number sent as a number or a string; unlike `_decode.integer`, "1.5" is refused."""
    raw = _decode.text(record, key)
    if raw is None:
        return None
    if not _WHOLE.fullmatch(raw):
        raise InvalidMessage(Reason.BAD_FIELD, f"{key} is not a whole number: {clip(raw)}")
    return int(raw)


def required_whole_number(record: Mapping[str, Any], key: str) -> int:
    value = whole_number(record, key)
    if value is None:
        raise InvalidMessage(Reason.MISSING_FIELD, f"{key} is missing or empty")
    return value


def duration(record: Mapping[str, Any], key: str = "duration") -> int | None:
    """Talk time in seconds from `10`, `"10"` or `"10秒"` (both spellings are on the pages)."""
    raw = _decode.text(record, key)
    if raw is None:
        return None
    if len(raw) <= _MAX_DIGITS and raw.isascii() and raw.isdigit():  # most: "10", as the regex
        return int(raw)
    match = _DURATION.fullmatch(raw)
    if match is None or not any(match.groups()):
        raise InvalidMessage(Reason.BAD_FIELD, f"{key} is not a number of seconds: {clip(raw)}")
    hours, minutes, seconds = (int(part or 0) for part in match.group("h", "m", "s"))
    total = hours * 3600 + minutes * 60 + seconds
    if len(str(total)) > _MAX_DIGITS:
        raise InvalidMessage(Reason.BAD_FIELD, f"{key} is out of range: {clip(raw)}")
    return total


def texts(record: Mapping[str, Any], *keys: str) -> dict[str, str | None]:
    """Documented string fields kept under their own names (for `extras`); absent ones are left
    out, as `event` would leave them."""
    return {key: _decode.text(record, key) for key in keys if key in record}


def undocumented(record: Mapping[str, Any], documented: frozenset[str]) -> JsonObject:
    """Keys the docs do not list, unchanged, so a new provider field is never dropped."""
    return {key: value for key, value in record.items() if key not in documented}


def event(record: Mapping[str, Any] | None = None, **fields: Any) -> CallEvent:
    """A VMS event: provider, direction (from `record`'s layout) and absent-value-free refs and
    extras filled in."""
    fields["refs"] = _decode.compact(fields.get("refs", {}))
    fields["extras"] = _decode.compact(fields.get("extras", {}))
    found = DIRECTION if record is None else direction(record)
    return _decode.build(provider=PROVIDER, direction=found, **fields)


def parse_records(body: bytes, normalize: Callable[[JsonObject], CallEvent]) -> list[Normalized]:
    """Decode an MNS body (base64 or raw JSON, object or array) and normalize every record.

    An error in one element of an array names the element, so a dead letter says which.
    """
    return each_record(
        _decode.load_mns_json(body),
        lambda record: (Normalized(_decode.storable(normalize(record)), record),),
        element="body[{}]",
    )
