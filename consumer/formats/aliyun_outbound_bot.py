"""`aliyun.outbound_bot`: Aliyun Outbound Bot (智能外呼) job and call events (docs/formats.md F2).

Every message carries the whole job (one contact) with its call attempts in `tasks[]`. So
`JobComplete` becomes one `job.completed` plus one `call.record` per attempt, and a call-level
message is about one of the attempts: the latest one, since the seed does not say which.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from consumer.errors import InvalidMessage, Reason, clip
from consumer.formats import Format, aliyun_vms
from consumer.formats import _decode as d
from consumer.model import (
    CallEvent,
    Direction,
    HangupBy,
    JsonObject,
    Kind,
    Normalized,
    Outcome,
    Provider,
    event_id,
    rfc3339,
)

FORMAT_NAME = "aliyun.outbound_bot"

_KINDS: dict[str, Kind] = {
    "JobComplete": Kind.JOB_COMPLETED,
    "Dialing": Kind.CALL_INITIATED,
    "Ringing": Kind.CALL_RINGING,
    "CallAnswered": Kind.CALL_ANSWERED,
    "CallFinished": Kind.CALL_ENDED,
    "RecordingReady": Kind.RECORDING_READY,
}

# Enumerations of F2.3, indexed by their integer value; names are matched case-insensitively.
JOB_STATUSES = ("Scheduling", "Executing", "Succeeded", "Paused", "Failed", "Cancelled", "Drafted")
FAILURE_REASONS = (
    "Unknown",
    "NoAnswer",
    "InvalidStrategy",
    "TimeUp",
    "NoStrategy",
    "CallFailed",
    "PerDayCallCountLimit",
    "ContactBlockList",
    "EmptyNumber",
    "JobPerDayCallCountLimit",
    "VerificationCancelled",
    "ContactSuspended",
)
TASK_STATUSES = (
    "Executing",
    "Succeeded",
    "NoAnswer",
    "NotExist",
    "Busy",
    "Cancelled",
    "Failed",
    "NotConnected",
    "PoweredOff",
    "OutOfService",
    "InArrears",
    "EmptyNumber",
    "PerDayCallCountLimit",
    "ContactBlockList",
    "CallerNotRegistered",
    "Terminated",
    "VerificationCancelled",
    "OutOfServiceNoCall",
    "InArrearsNoCall",
    "CallingNumberNotExist",
    "SucceededFinish",
    "SucceededChatbotHangUpAfterNoAnswer",
    "SucceededChatbotHangUpAfterSilence",
    "SucceededClientHangUpAfterNoAnswer",
    "SucceededClientHangUp",
    "SucceededTransferByIntent",
    "SucceededTransferAfterNoAnswer",
    "SucceededInoInterAction",
    "SucceededError",
    "SucceededSpecialInterceptVoiceAssistant",
    "SucceededSpecialInterceptExtensionNumberTransfer",
    "SucceededSpecialInterceptCustomSpecialIntercept",
    "HighRiskSipCode",
)
# Names the SDK lists without a number, and FAQ Q10's spelling of Succeeded.
_FAILURE_NAMES_ONLY = ("InArrears", "OutOfService", "NoneRepeatableJobMaxAttemptCountLimit")
_JOB_ALIASES = {"succeed": "Succeeded"}

_NOT_FINAL_JOB = frozenset({"Scheduling", "Executing", "Paused", "Drafted"})

FAILURE_OUTCOMES: dict[str, Outcome] = {
    "Unknown": Outcome.UNKNOWN,
    "NoAnswer": Outcome.NO_ANSWER,
    "InvalidStrategy": Outcome.FAILED,
    "NoStrategy": Outcome.FAILED,
    "TimeUp": Outcome.CANCELLED,
    "CallFailed": Outcome.FAILED,
    "PerDayCallCountLimit": Outcome.BLOCKED,
    "JobPerDayCallCountLimit": Outcome.BLOCKED,
    "ContactBlockList": Outcome.BLOCKED,
    "ContactSuspended": Outcome.BLOCKED,
    "EmptyNumber": Outcome.INVALID_NUMBER,
    "VerificationCancelled": Outcome.CANCELLED,
    "InArrears": Outcome.OUT_OF_SERVICE,
    "OutOfService": Outcome.OUT_OF_SERVICE,
    "NoneRepeatableJobMaxAttemptCountLimit": Outcome.FAILED,
}

TASK_OUTCOMES: dict[str, Outcome | None] = {
    "Executing": None,
    "Succeeded": Outcome.ANSWERED,
    "NoAnswer": Outcome.NO_ANSWER,
    "NotExist": Outcome.INVALID_NUMBER,
    "Busy": Outcome.BUSY,
    "Cancelled": Outcome.CANCELLED,
    "Failed": Outcome.FAILED,
    "NotConnected": Outcome.UNREACHABLE,
    "PoweredOff": Outcome.POWERED_OFF,
    "OutOfService": Outcome.OUT_OF_SERVICE,
    "InArrears": Outcome.OUT_OF_SERVICE,
    "EmptyNumber": Outcome.INVALID_NUMBER,
    "PerDayCallCountLimit": Outcome.BLOCKED,
    "ContactBlockList": Outcome.BLOCKED,
    "CallerNotRegistered": Outcome.FAILED,
    "Terminated": Outcome.CANCELLED,
    "VerificationCancelled": Outcome.CANCELLED,
    "OutOfServiceNoCall": Outcome.OUT_OF_SERVICE,
    "InArrearsNoCall": Outcome.OUT_OF_SERVICE,
    "CallingNumberNotExist": Outcome.FAILED,
    "HighRiskSipCode": Outcome.BLOCKED,
    **dict.fromkeys(TASK_STATUSES[20:32], Outcome.ANSWERED),
}

_TOP_LEVEL = frozenset(
    {
        "eventType",
        "eventTime",
        "instanceId",
        "groupId",
        "id",
        "status",
        "failureReason",
        "extras",
        "contacts",
        "tasks",
        "recording",
    }
)
_CONTACT = frozenset({"id", "honorific", "name", "phoneNumber", "referenceId"})
_TASK = frozenset(
    {
        "id",
        "callId",
        "planedTime",
        "actualTime",
        "endTime",
        "callingNumber",
        "calledNumber",
        "status",
    }
)
_RECORDING = frozenset({"taskId", "callId", "duration", "fileName", "mkvUrl", "url"})


def parse(body: bytes) -> list[Normalized]:
    """One message (or an array of them) into its events: 1 + len(tasks) for `JobComplete`."""
    value = d.load_mns_json(body)
    events: list[Normalized] = []
    for index, record in enumerate(d.objects(value)):
        try:
            events.extend(_parse_record(record))
        except InvalidMessage as exc:
            if isinstance(value, list):
                raise InvalidMessage(exc.reason, f"record [{index}]: {exc.detail}") from None
            raise
    return events


FORMAT = Format(
    name=FORMAT_NAME,
    provider=Provider.ALIYUN_OUTBOUND_BOT,
    parse=parse,
    answer=aliyun_vms.PUSH_ANSWER,
)


def _parse_record(record: JsonObject) -> list[Normalized]:
    sent = d.required_text(record, "eventType")
    event_type = _canonical(sent, (), tuple(_KINDS))
    if event_type is None:
        raise InvalidMessage(
            Reason.UNKNOWN_EVENT_TYPE, f"eventType {clip(sent)} is not one of {', '.join(_KINDS)}"
        )
    kind = _KINDS[event_type]
    millis = _positive(record, "eventTime")
    if millis is None:
        raise InvalidMessage(Reason.MISSING_FIELD, "eventTime is missing, empty or zero")
    job = _Job(record, event_type, d.epoch_millis(record, "eventTime"), millis)

    if kind is Kind.JOB_COMPLETED:
        tasks = _tasks(record)
        return [job.completed(), *(job.task_record(task) for task in tasks)]
    if kind is Kind.RECORDING_READY:
        return [job.recording_ready()]
    return [job.call_event(kind, _attempt(record, event_type))]


class _Job:
    """The job-level context shared by every event a message gives."""

    def __init__(
        self, record: JsonObject, event_type: str, event_time: datetime | None, millis: int
    ) -> None:
        self.record = record
        self.event_type = event_type
        self.event_time = event_time
        self.millis = millis
        self.job_id = d.text(record, "id")
        self.status_raw = d.text(record, "status")
        self.status = _canonical(self.status_raw, JOB_STATUSES, (), _JOB_ALIASES)
        self.reason_raw = d.text(record, "failureReason")
        self.reason = _canonical(self.reason_raw, FAILURE_REASONS, _FAILURE_NAMES_ONLY)
        contact = _contact(record)
        self.correlation_id = d.text(contact, "referenceId")
        self.phone_number = d.text(contact, "phoneNumber")
        self.refs = d.compact(
            {
                "instance_id": d.text(record, "instanceId"),
                "group_id": d.text(record, "groupId"),
                "job_id": self.job_id,
                "contact_id": d.text(contact, "id"),
            }
        )
        own: dict[str, Any] = {
            "failureReason": self.reason_raw,
            "honorific": d.text(contact, "honorific"),
            "name": d.text(contact, "name"),
        }
        own.update({f"contact.{k}": v for k, v in contact.items() if k not in _CONTACT})
        contacts = record.get("contacts")
        if isinstance(contacts, list) and len(contacts) > 1:
            own["more_contacts"] = contacts[1:]
        self.own = own
        # Keys we did not name ourselves; added last so that they never hide one of ours.
        self.foreign: list[tuple[str, Any, str]] = [
            (key, item, "unknown") for key, item in record.items() if key not in _TOP_LEVEL
        ]
        self.foreign += [
            (key, item, "extras") for key, item in _flatten_extras(record.get("extras")).items()
        ]

    def _event(self, kind: Kind, key: Sequence[object], **fields: Any) -> CallEvent:
        extras = {**self.own, **fields.pop("extras", {})}
        callee = fields.get("callee") or self.phone_number
        fields["callee"] = callee
        if self.phone_number is not None and self.phone_number != callee:
            extras["phoneNumber"] = self.phone_number
        extras = d.compact(extras)
        for name, item, prefix in self.foreign:
            _put(extras, name, item, prefix)
        fields.setdefault("refs", {})
        fields["refs"] = {**self.refs, **fields["refs"]}
        fields.setdefault("occurred_at", self.event_time)
        return d.storable(
            d.build(
                event_id=event_id(FORMAT_NAME, *key),
                provider=Provider.ALIYUN_OUTBOUND_BOT,
                kind=kind,
                direction=Direction.OUTBOUND,
                correlation_id=self.correlation_id,
                extras=extras,
                **fields,
            )
        )

    def completed(self) -> Normalized:
        event = self._event(
            Kind.JOB_COMPLETED,
            (self.event_type, self.job_id, None, self.millis),
            call_id=None,
            outcome=self._job_outcome(),
            provider_status=self.status_raw,
        )
        return Normalized(event, self.record)

    def _job_outcome(self) -> Outcome | None:
        if self.status == "Succeeded":
            return Outcome.ANSWERED
        if self.status == "Cancelled":
            return Outcome.CANCELLED
        if self.reason_raw is not None:
            return FAILURE_OUTCOMES.get(self.reason or "", Outcome.UNKNOWN)
        if self.status == "Failed":
            return Outcome.FAILED
        if self.status in _NOT_FINAL_JOB:
            return None
        return Outcome.UNKNOWN  # JobComplete with an unknown status, or none at all

    def task_record(self, task: JsonObject) -> Normalized:
        fields = _task_fields(task, final=True)
        status = fields["provider_status"]
        canonical = _canonical(status, TASK_STATUSES)
        end = _positive(task, "endTime")
        key = ("task", fields["call_id"], canonical or status, end, d.text(task, "id"))
        fields["occurred_at"] = d.first(fields["ended_at"], fields["started_at"], self.event_time)
        fields["extras"] = {**fields["extras"], **self._job_status_extra()}
        event = self._event(Kind.CALL_RECORD, key, **fields)
        return Normalized(event, {**self.record, "tasks": [task]})

    def call_event(self, kind: Kind, task: JsonObject) -> Normalized:
        fields = _task_fields(task, final=False)
        fields["extras"] = {**fields["extras"], **self._job_status_extra()}
        if kind is Kind.CALL_INITIATED:
            fields["started_at"] = d.first(fields["started_at"], self.event_time)
        elif kind is Kind.CALL_RINGING:
            fields["ringing_at"] = self.event_time
        elif kind is Kind.CALL_ANSWERED:
            fields["answered_at"] = self.event_time
            fields["outcome"] = fields["outcome"] or Outcome.ANSWERED
        elif kind is Kind.CALL_ENDED:
            fields["ended_at"] = d.first(fields["ended_at"], self.event_time)
        key = (self.event_type, self.job_id, fields["call_id"], self.millis)
        return Normalized(self._event(kind, key, **fields), self.record)

    def recording_ready(self) -> Normalized:
        recording = d.obj(self.record, "recording")
        call_id = d.text(recording, "callId")
        task_id = d.text(recording, "taskId")
        task = next(
            (
                task
                for task in _tasks(self.record)
                if (call_id is not None and d.text(task, "callId") == call_id)
                or (task_id is not None and d.text(task, "id") == task_id)
            ),
            None,
        )
        fields = _task_fields(task or {}, final=False)
        extras = {
            **fields["extras"],
            **self._job_status_extra(),
            "file_name": d.text(recording, "fileName"),
            "mkv_url": d.text(recording, "mkvUrl"),
        }
        extras.update({f"recording.{k}": v for k, v in recording.items() if k not in _RECORDING})
        # A recording of no call, or without its URL, would be a hollow event (strict shapes).
        call_id = d.first(call_id, fields["call_id"])
        if call_id is None:
            raise InvalidMessage(Reason.MISSING_FIELD, "recording.callId is missing or empty")
        url = d.text(recording, "url")
        if url is None:
            raise InvalidMessage(Reason.MISSING_FIELD, "recording.url is missing or empty")
        fields.update(
            call_id=call_id,
            refs={**fields["refs"], **d.compact({"task_id": task_id})},
            recording_url=url,
            duration_seconds=d.integer(recording, "duration"),
            extras=extras,
        )
        key = (self.event_type, self.job_id, fields["call_id"], self.millis)
        return Normalized(self._event(Kind.RECORDING_READY, key, **fields), self.record)

    def _job_status_extra(self) -> dict[str, Any]:
        """The job's status, where provider_status holds the task's."""
        return {"status": self.status_raw}


def _task_fields(task: JsonObject, *, final: bool) -> dict[str, Any]:
    """The normalized fields of one `tasks[]` entry (F2.2); `final` for JobComplete's records."""
    status = d.text(task, "status")
    canonical = _canonical(status, TASK_STATUSES)
    if canonical is not None:
        outcome = TASK_OUTCOMES[canonical]
    elif status is not None:
        outcome = Outcome.UNKNOWN
    else:
        outcome = Outcome.UNKNOWN if final else None
    hangup_by = None
    if canonical is not None and canonical.startswith("SucceededClientHangUp"):
        hangup_by = HangupBy.CALLEE
    elif canonical is not None and canonical.startswith("SucceededChatbotHangUp"):
        hangup_by = HangupBy.SYSTEM
    planned = _millis(task, "planedTime")
    extras: dict[str, Any] = {"planedTime": None if planned is None else rfc3339(planned)}
    extras.update({f"task.{k}": v for k, v in task.items() if k not in _TASK})
    return {
        "call_id": d.text(task, "callId"),
        "refs": d.compact({"task_id": d.text(task, "id")}),
        "caller": d.text(task, "callingNumber"),
        "callee": d.text(task, "calledNumber"),
        "started_at": _millis(task, "actualTime"),
        "ended_at": _millis(task, "endTime"),
        "provider_status": status,
        "outcome": outcome,
        "hangup_by": hangup_by,
        "extras": extras,
    }


def _canonical(
    raw: str | None,
    names: Sequence[str],
    names_only: Sequence[str] = (),
    aliases: Mapping[str, str] | None = None,
) -> str | None:
    """The enum name for a value sent as a name (any case) or as its integer; None if unknown."""
    if raw is None:
        return None
    if raw.isdecimal():
        number = int(raw) if len(raw) < 6 else -1
        return names[number] if 0 <= number < len(names) else None
    folded = raw.casefold()
    for name in (*names, *names_only):
        if name.casefold() == folded:
            return name
    return (aliases or {}).get(folded)


def _positive(record: Mapping[str, Any], key: str) -> int | None:
    """Epoch millis as an int; 0 (a Java default for "not set") counts as absent."""
    value = d.integer(record, key)
    return value if value is not None and value > 0 else None


def _millis(record: Mapping[str, Any], key: str) -> datetime | None:
    return d.epoch_millis(record, key) if _positive(record, key) is not None else None


def _contact(record: JsonObject) -> JsonObject:
    """`contacts[0]` (one job = one contact, FAQ Q2); the document makes `contacts` an array."""
    contacts = record.get("contacts")
    if contacts in (None, "", []):
        return {}
    if isinstance(contacts, list):
        if isinstance(contacts[0], dict):
            return contacts[0]
        raise InvalidMessage(
            Reason.BAD_FIELD, f"contacts[0] must be an object, got {d.type_name(contacts[0])}"
        )
    raise InvalidMessage(
        Reason.BAD_FIELD, f"contacts must be an array, got {d.type_name(contacts)}"
    )


def _tasks(record: JsonObject) -> list[JsonObject]:
    tasks = record.get("tasks")
    if tasks in (None, ""):
        return []
    if not isinstance(tasks, list):
        raise InvalidMessage(Reason.BAD_FIELD, f"tasks must be an array, got {d.type_name(tasks)}")
    for index, task in enumerate(tasks):
        if not isinstance(task, dict):
            raise InvalidMessage(
                Reason.BAD_FIELD, f"tasks[{index}] must be an object, got {d.type_name(task)}"
            )
    return tasks


def _attempt(record: JsonObject, event_type: str) -> JsonObject:
    """The attempt a call-level message is about; without one (or its callId) the event would
    be a hollow call event that merges into no call, so the message is refused."""
    tasks = _tasks(record)
    task = _latest(tasks)
    if task is None:
        raise InvalidMessage(
            Reason.MISSING_FIELD, f"tasks is missing or empty in a {event_type} (a call event)"
        )
    if d.text(task, "callId") is None:
        raise InvalidMessage(
            Reason.MISSING_FIELD, f"tasks[{tasks.index(task)}].callId is missing or empty"
        )
    return task


def _latest(tasks: list[JsonObject]) -> JsonObject | None:
    """The attempt a call-level message is about: the greatest actualTime, the last on a tie."""
    if not tasks:
        return None
    ranked = [(_positive(task, "actualTime") or 0, index) for index, task in enumerate(tasks)]
    return tasks[max(ranked)[1]]


def _flatten_extras(value: Any) -> dict[str, Any]:
    """Job custom parameters, `[{key, value}]`, as a mapping; the last of a repeated key wins."""
    if value in (None, "", [], {}):
        return {}
    if not isinstance(value, list):
        raise InvalidMessage(
            Reason.BAD_FIELD, f"extras must be an array of {{key, value}}, got {d.type_name(value)}"
        )
    flat: dict[str, Any] = {}
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise InvalidMessage(
                Reason.BAD_FIELD, f"extras[{index}] must be an object, got {d.type_name(item)}"
            )
        key = d.text(item, "key")
        if key is None:
            raise InvalidMessage(Reason.BAD_FIELD, f"extras[{index}].key is missing or empty")
        flat[key] = item.get("value")
    return flat


def _put(extras: dict[str, Any], key: str, value: Any, prefix: str) -> None:
    """Add a provider key without overwriting one we set: a clash goes under `prefix.key`."""
    if value in (None, "", [], {}):
        return
    extras[f"{prefix}.{key}" if key in extras else key] = value
