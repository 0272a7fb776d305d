"""`aliyun.voice_call_report`: Aliyun VMS VoiceCallReport, intermediate states (docs/formats.md).

These give the ringing and answer times before the VoiceReport arrives. A single call
goes 200101 → 200201 → 200102 → 200100; a dual call 200101 → 200201 → 200102 → 200202 →
200103 → 200100. The message does not say which, so 200102 (caller leg answered in a dual call)
is `call.answered` either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from consumer.formats import Format, _decode, aliyun_vms
from consumer.formats._common import STATE_TIME_FIELD
from consumer.model import CallEvent, Kind, Normalized, Outcome, event_id

NAME = "aliyun.voice_call_report"

# The outbound layout, plus the inbound one's `biz_id` (its call id) and `extend`.
DOCUMENTED = frozenset(
    {"call_id", "status_code", "smart_status_code", "status_time", "out_id", "dtmf"}
    | {"biz_id", "extend"}
)

# Kind mapping (ours); any other code is a final one and ends the call.
KINDS: Mapping[str, Kind] = {
    "200101": Kind.CALL_INITIATED,
    "200201": Kind.CALL_RINGING,
    "200202": Kind.CALL_RINGING,
    "200102": Kind.CALL_ANSWERED,
    "200103": Kind.CALL_ANSWERED,
    "200100": Kind.CALL_ENDED,
    "300000": Kind.CALL_INPUT,
}


def parse(body: bytes) -> list[Normalized]:
    """One event per record: the kind follows `status_code`."""
    return aliyun_vms.parse_records(body, normalize)


def normalize(record: dict[str, Any]) -> CallEvent:
    call_id = aliyun_vms.call_id(record)
    code = _decode.required_text(record, "status_code")
    status_time = _decode.required_text(record, "status_time")
    occurred = aliyun_vms.required_time(record, "status_time")
    kind = _decode.lookup(KINDS, code, Kind.CALL_ENDED)
    # An intermediate state says nothing about how the call ends (ours); a hang-up (200100)
    # carries no answer time here, so it is `unknown`; a final code gives its outcome.
    outcome: Outcome | None = None
    if kind is Kind.CALL_ENDED:
        outcome = aliyun_vms.outcome(code)
    dtmf = _decode.text(record, "dtmf")
    correlation_id, refs = aliyun_vms.out_id_fields(record)
    times: dict[str, Any] = {}
    if kind in STATE_TIME_FIELD:
        times[STATE_TIME_FIELD[kind]] = occurred
    return aliyun_vms.event(
        record,
        event_id=event_id(NAME, call_id, code, status_time, dtmf),
        kind=kind,
        call_id=call_id,
        occurred_at=occurred,
        outcome=outcome,
        provider_status=code,
        correlation_id=correlation_id,
        refs=refs,
        extras={
            **aliyun_vms.undocumented(record, DOCUMENTED),
            **aliyun_vms.texts(record, "smart_status_code", "extend"),
            "dtmf": dtmf,
        },
        **times,
    )


FORMAT = Format(name=NAME, provider=aliyun_vms.PROVIDER, parse=parse, answer=aliyun_vms.PUSH_ANSWER)
