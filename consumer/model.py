"""The normalized call event: the one shape every provider's message becomes (docs/formats.md)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, PlainSerializer

JsonObject = dict[str, Any]


class Provider(StrEnum):
    ALIYUN_VMS = "aliyun_vms"
    ALIYUN_OUTBOUND_BOT = "aliyun_outbound_bot"
    HUAWEI_VOICE = "huawei_voice"
    HUAWEI_PRIVACY = "huawei_privacy"
    MOOR7 = "moor7"


class Kind(StrEnum):
    CALL_INITIATED = "call.initiated"
    CALL_RINGING = "call.ringing"
    CALL_ANSWERED = "call.answered"
    CALL_ENDED = "call.ended"
    CALL_RECORD = "call.record"
    CALL_INPUT = "call.input"
    RECORDING_READY = "recording.ready"
    ASR_SENTENCE = "asr.sentence"
    JOB_COMPLETED = "job.completed"
    AGENT_STATUS = "agent.status"
    AGENT_SESSION = "agent.session"


class Outcome(StrEnum):
    ANSWERED = "answered"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    REJECTED = "rejected"
    UNREACHABLE = "unreachable"
    POWERED_OFF = "powered_off"
    OUT_OF_SERVICE = "out_of_service"
    INVALID_NUMBER = "invalid_number"
    BLOCKED = "blocked"
    CANCELLED = "cancelled"
    FAILED = "failed"
    UNKNOWN = "unknown"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class HangupBy(StrEnum):
    CALLER = "caller"
    CALLEE = "callee"
    AGENT = "agent"
    SYSTEM = "system"


def _require_utc(value: datetime) -> datetime:
    if value.tzinfo is UTC:  # what every format module gives: nothing to convert
        return value
    # A naive time is a bug in a format module: its zone would be guessed later. Refuse it here.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("time must carry a zone")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01 00:00 at UTC+8 has no UTC instant
        raise ValueError("time is out of range") from None


def rfc3339(value: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, seconds precision unless the provider sent milliseconds."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # In UTC isoformat ends in "+00:00" and has no other "+"; without microseconds it stops at
    # the seconds (timespec "seconds"). Per event key and stored time: half the cost of replace.
    if value.microsecond:
        return value.isoformat(timespec="milliseconds")[:-6] + "Z"
    return value.isoformat()[:-6] + "Z"


UtcTime = Annotated[
    datetime, AfterValidator(_require_utc), PlainSerializer(rfc3339, return_type=str)
]


class CallEvent(BaseModel):
    """One thing that happened to one call (or job, or agent), in provider-neutral terms."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str
    provider: Provider
    kind: Kind
    call_id: str | None = None
    occurred_at: UtcTime
    caller: str | None = None
    callee: str | None = None
    direction: Direction | None = None
    started_at: UtcTime | None = None
    ringing_at: UtcTime | None = None
    answered_at: UtcTime | None = None
    ended_at: UtcTime | None = None
    duration_seconds: int | None = None
    outcome: Outcome | None = None
    provider_status: str | None = None
    hangup_by: HangupBy | None = None
    recording_url: str | None = None
    correlation_id: str | None = None
    refs: dict[str, str] = {}
    extras: dict[str, Any] = {}


@dataclass(frozen=True, slots=True)
class Normalized:
    """A normalized event with the JSON object it was made from (stored as `call_events.payload`).

    The payload is the single record, not the whole message: one Huawei fee push holds up to
    50 records, and each row keeps only its own.
    """

    event: CallEvent
    payload: JsonObject = field(default_factory=dict)


def event_id(format_name: str, *key: object) -> str:
    """A deterministic id from the format and the dedupe key, never from the transport's id.

    A provider that re-sends the same content does so as a new transport message; hashing the
    content's key makes that re-send the same event. `None` and `""` hash alike on purpose,
    since providers send either for "absent".
    """
    parts = [format_name, *["" if part is None else str(part) for part in key]]  # no generator
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return digest[:32]
