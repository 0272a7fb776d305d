"""`aliyun.voice_report`: Aliyun VMS VoiceReport, the final call record (providers.md §1.3).

It is the authoritative record of a VMS call (§0.3): outcome, times and duration come from here.
"""

from __future__ import annotations

from typing import Any

from consumer.errors import InvalidMessage
from consumer.formats import Format, _decode, aliyun_vms
from consumer.model import CallEvent, Kind, Normalized, event_id

NAME = "aliyun.voice_report"

DOCUMENTED = frozenset(
    {
        "call_id",
        "originate_time",
        "ring_time",
        "start_time",
        "end_time",
        "caller",
        "callee",
        "duration",
        "status_code",
        "early_media_code",
        "hangup_direction",
        "status_msg",
        "out_id",
        "dtmf",
        "voice_type",
        "dialog_id",
        "toll_type",
    }
)


def parse(body: bytes) -> list[Normalized]:
    """One `call.record` per record of the body (one per MNS message, N per HTTP-push array)."""
    return aliyun_vms.parse_records(body, normalize)


def normalize(record: dict[str, Any]) -> CallEvent:
    call_id = aliyun_vms.call_id(record)
    code = _decode.text(record, "status_code")
    originated = aliyun_vms.time(record, "originate_time")
    ringing = aliyun_vms.time(record, "ring_time")
    answered = aliyun_vms.time(record, "start_time")  # the answer time, not the start
    ended = aliyun_vms.time(record, "end_time")
    # A record without end_time is still the call's only record; date it by its latest time
    # rather than quarantine the whole CDR (ours).
    occurred = _decode.first(ended, answered, ringing, originated)
    if occurred is None:
        raise InvalidMessage(
            "missing_field", "end_time is missing or empty, and no other time dates the record"
        )
    correlation_id, refs = aliyun_vms.out_id_fields(record)
    hangup_by, unknown_hangup = aliyun_vms.hangup_by(record)
    extras: dict[str, Any] = {
        **aliyun_vms.undocumented(record, DOCUMENTED),
        **aliyun_vms.texts(
            record, "early_media_code", "status_msg", "dtmf", "voice_type", "toll_type"
        ),
        "hangup_direction": unknown_hangup,
    }
    return aliyun_vms.event(
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
        duration_seconds=aliyun_vms.duration(record),
        outcome=aliyun_vms.outcome(code, answered=answered is not None),
        provider_status=code,
        hangup_by=hangup_by,
        correlation_id=correlation_id,
        refs={**refs, "dialog_id": _decode.text(record, "dialog_id")},
        extras=extras,
    )


FORMAT = Format(name=NAME, provider=aliyun_vms.PROVIDER, parse=parse)
