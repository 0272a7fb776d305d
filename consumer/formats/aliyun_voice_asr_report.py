"""`aliyun.voice_asr_report`: Aliyun VMS VoiceRTASRReport, real-time ASR (docs/formats.md).

Each record is one recognized sentence. `begin_time` is the call's start, the same for every
sentence of a call, so a sentence is dated by `begin_time` plus its `begin_offset` (ms).
"""

from __future__ import annotations

from typing import Any

from consumer.formats import Format, _decode, aliyun_vms
from consumer.model import CallEvent, Kind, Normalized, event_id

NAME = "aliyun.voice_asr_report"

DOCUMENTED = frozenset(
    {"role", "identity", "words", "begin_offset", "end_offset", "begin_time", "call_id", "out_id"}
    | {"biz_id"}
)


def parse(body: bytes) -> list[Normalized]:
    """One `asr.sentence` per record."""
    return aliyun_vms.parse_records(body, normalize)


def normalize(record: dict[str, Any]) -> CallEvent:
    call_id = aliyun_vms.call_id(record)
    # begin_offset both dates the sentence and tells two sentences of one speaker apart in the
    # dedupe key (one speaker cannot start two sentences at the same millisecond), so it is
    # required (ours); end_offset is not.
    begin_offset = aliyun_vms.required_whole_number(record, "begin_offset")
    end_offset = aliyun_vms.whole_number(record, "end_offset")
    begin = aliyun_vms.required_time(record, "begin_time")
    occurred = aliyun_vms.in_utc(_decode.plus_millis(begin, begin_offset), "begin_offset")
    role = _decode.text(record, "role")
    identity = _decode.text(record, "identity")
    correlation_id, refs = aliyun_vms.out_id_fields(record)
    return aliyun_vms.event(
        record,
        event_id=event_id(NAME, call_id, role, identity, begin_offset, end_offset),
        kind=Kind.ASR_SENTENCE,
        call_id=call_id,
        occurred_at=occurred,
        correlation_id=correlation_id,
        refs=refs,
        extras={
            **aliyun_vms.undocumented(record, DOCUMENTED),
            "role": role,
            "identity": identity,
            "words": _decode.text(record, "words"),
            "begin_offset": begin_offset,
            "end_offset": end_offset,
            "begin_time": _decode.text(record, "begin_time"),
        },
    )


FORMAT = Format(name=NAME, provider=aliyun_vms.PROVIDER, parse=parse, answer=aliyun_vms.PUSH_ANSWER)
