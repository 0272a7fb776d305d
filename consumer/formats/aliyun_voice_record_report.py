"""`aliyun.voice_record_report`: Aliyun VMS VoiceRecordReport, recording ready (docs/formats.md).

It adds the recording URL to the call; the outcome is left to the VoiceReport, so
`status_code` is kept only as `provider_status`.
"""

from __future__ import annotations

from typing import Any

from consumer.errors import InvalidMessage, Reason
from consumer.formats import Format, _decode, aliyun_vms
from consumer.model import CallEvent, Kind, Normalized, event_id

NAME = "aliyun.voice_record_report"

DOCUMENTED = frozenset(
    {
        "call_id",
        "start_time",
        "end_time",
        "duration",
        "status_code",
        "record_file",
        "out_id",
        "record_begin_time",
        "smart_status_code",
        "biz_id",
    }
)


def parse(body: bytes) -> list[Normalized]:
    """One `recording.ready` per record."""
    return aliyun_vms.parse_records(body, normalize)


def normalize(record: dict[str, Any]) -> CallEvent:
    call_id = aliyun_vms.call_id(record)
    # A recording notice without the recording has nothing to say, and record_file is half
    # of the dedupe key (ours).
    record_file = _decode.required_text(record, "record_file")
    answered = aliyun_vms.time(record, "start_time")
    ended = aliyun_vms.time(record, "end_time")
    record_begin = aliyun_vms.time(record, "record_begin_time")  # validated, kept as sent
    occurred = _decode.first(ended, record_begin, answered)
    if occurred is None:
        raise InvalidMessage(
            Reason.MISSING_FIELD,
            "end_time is missing or empty, and no other time dates the recording",
        )
    correlation_id, refs = aliyun_vms.out_id_fields(record)
    return aliyun_vms.event(
        record,
        event_id=event_id(NAME, call_id, record_file),
        kind=Kind.RECORDING_READY,
        call_id=call_id,
        occurred_at=occurred,
        answered_at=answered,
        ended_at=ended,
        duration_seconds=aliyun_vms.duration(record),
        provider_status=_decode.text(record, "status_code"),
        recording_url=record_file,
        correlation_id=correlation_id,
        refs=refs,
        extras={
            **aliyun_vms.undocumented(record, DOCUMENTED),
            **aliyun_vms.texts(record, "record_begin_time", "smart_status_code"),
        },
    )


FORMAT = Format(name=NAME, provider=aliyun_vms.PROVIDER, parse=parse, answer=aliyun_vms.PUSH_ANSWER)
