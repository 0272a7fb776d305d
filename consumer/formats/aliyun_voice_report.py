"""`aliyun.voice_report`: Aliyun VMS VoiceReport, the final call record (docs/formats.md).

It is the authoritative record of a VMS call: outcome, times and duration come from here. Two
layouts exist. The MNS queue record names the answer time `start_time`; the HTTP batch push
record (help.aliyun.com/zh/vms/voicereport-6) names it `b_start_time`, and the newer pages add
per-leg times `a_*` (caller leg of a dual call) and `b_*` (callee leg). The call-level field
wins; the callee leg fills what it leaves empty.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from consumer.errors import InvalidMessage, Reason
from consumer.formats import Format, _decode, aliyun_vms
from consumer.model import CallEvent, Kind, Normalized, event_id

NAME = "aliyun.voice_report"

# Per-leg fields of the HTTP push and dual-call pages: kept in extras as sent, and the b leg
# (the callee's) fills the call-level field it stands for when that one is empty.
LEGS = (
    "a_originate_time",
    "a_ring_time",
    "a_start_time",
    "a_end_time",
    "a_duration",
    "b_originate_time",
    "b_ring_time",
    "b_start_time",
    "b_end_time",
    "b_duration",
)

DOCUMENTED = frozenset(
    {
        "call_id",
        "biz_id",
        "originate_time",
        "ring_time",
        "start_time",
        "end_time",
        "caller",
        "callee",
        "duration",
        "status_code",
        "smart_status_code",
        "early_media_code",
        "hangup_direction",
        "status_msg",
        "out_id",
        "dtmf",
        "voice_type",
        "dialog_id",
        "toll_type",
        "extend",
        "parallel_leg_hangup_cause",
        "caller_show_num",
        "callee_show_num",
        *LEGS,
    }
)


def parse(body: bytes) -> list[Normalized]:
    """One `call.record` per record of the body (one per MNS message, N per HTTP-push array)."""
    return aliyun_vms.parse_records(body, normalize)


def _time(record: dict[str, Any], key: str, *fallbacks: str) -> datetime | None:
    """The first of `key` and its leg `fallbacks` that is set; each set one must be a time."""
    found = None
    for name in (key, *fallbacks):
        if name in record:
            value = aliyun_vms.time(record, name)
            found = value if found is None else found
    return found


def normalize(record: dict[str, Any]) -> CallEvent:
    call_id = aliyun_vms.call_id(record)
    code = _decode.text(record, "status_code")
    originated = _time(record, "originate_time", "a_originate_time", "b_originate_time")
    ringing = _time(record, "ring_time", "b_ring_time")
    answered = _time(record, "start_time", "b_start_time")  # the answer time, not the start
    ended = _time(record, "end_time", "b_end_time", "a_end_time")
    duration = _decode.first(aliyun_vms.duration(record), aliyun_vms.duration(record, "b_duration"))
    # A record without end_time is still the call's only record; date it by its latest time
    # rather than quarantine the whole CDR (ours).
    occurred = _decode.first(ended, answered, ringing, originated)
    if occurred is None:
        raise InvalidMessage(
            Reason.MISSING_FIELD, "end_time is missing or empty, and no other time dates the record"
        )
    correlation_id, refs = aliyun_vms.out_id_fields(record)
    hangup_by, unknown_hangup = aliyun_vms.hangup_by(record)
    extras: dict[str, Any] = {
        **aliyun_vms.undocumented(record, DOCUMENTED),
        **aliyun_vms.texts(
            record,
            "early_media_code",
            "smart_status_code",
            "status_msg",
            "dtmf",
            "voice_type",
            "toll_type",
            "extend",
            "parallel_leg_hangup_cause",
            "caller_show_num",
            "callee_show_num",
            *LEGS,
        ),
        "hangup_direction": unknown_hangup,
    }
    return aliyun_vms.event(
        record,
        event_id=event_id(NAME, call_id, code, _decode.text(record, "end_time")),
        kind=Kind.CALL_RECORD,
        call_id=call_id,
        occurred_at=occurred,
        caller=_decode.text(record, "caller"),
        callee=_decode.text(record, "callee"),
        started_at=originated,
        ringing_at=ringing,
        answered_at=answered,
        ended_at=ended,
        duration_seconds=duration,
        outcome=aliyun_vms.outcome(code, answered=answered is not None),
        provider_status=code,
        hangup_by=hangup_by,
        correlation_id=correlation_id,
        refs={**refs, "dialog_id": _decode.text(record, "dialog_id")},
        extras=extras,
    )


FORMAT = Format(name=NAME, provider=aliyun_vms.PROVIDER, parse=parse, answer=aliyun_vms.PUSH_ANSWER)
