"""`aliyun.outbound_bot`: Aliyun Outbound Bot (智能外呼) job and call events (docs/formats.md F2).

Every message carries the whole job (one contact) with its call attempts in `tasks[]`. So
`JobComplete` becomes one `job.completed` plus one `call.record` per attempt, and a call-level
message is about one of the attempts: the latest one, since the seed does not say which.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from consumer.errors import InvalidMessage, Reason, clip
from consumer.formats import Format, aliyun_vms
from consumer.formats import _decode as d
from consumer.formats._common import each_record
from consumer.formats.aliyun_outbound_bot_codes import (
    FAILURE_NAMES_ONLY,
    FAILURE_OUTCOMES,
    FAILURE_REASONS,
    JOB_ALIASES,
    JOB_STATUSES,
    KINDS,
    NOT_FINAL_JOB,
    TASK_STATUSES,
    canonical,
)
from consumer.formats.aliyun_outbound_bot_message import (
    call_attempt,
    first_contact,
    flatten_extras,
    positive_millis,
    put,
    task_fields,
    task_list,
)
from consumer.model import (
    CallEvent,
    Direction,
    JsonObject,
    Kind,
    Normalized,
    Outcome,
    Provider,
    event_id,
)

FORMAT_NAME = "aliyun.outbound_bot"

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
_RECORDING = frozenset({"taskId", "callId", "duration", "fileName", "mkvUrl", "url"})


def parse(body: bytes) -> list[Normalized]:
    """One message (or an array of them) into its events: 1 + len(tasks) for `JobComplete`."""
    return each_record(d.load_mns_json(body), _parse_record)


FORMAT = Format(
    name=FORMAT_NAME,
    provider=Provider.ALIYUN_OUTBOUND_BOT,
    parse=parse,
    answer=aliyun_vms.PUSH_ANSWER,
)


def _parse_record(record: JsonObject) -> list[Normalized]:
    sent = d.required_text(record, "eventType")
    event_type = canonical(sent, (), tuple(KINDS))
    if event_type is None:
        raise InvalidMessage(
            Reason.UNKNOWN_EVENT_TYPE, f"eventType {clip(sent)} is not one of {', '.join(KINDS)}"
        )
    kind = KINDS[event_type]
    millis = positive_millis(record, "eventTime")
    if millis is None:
        raise InvalidMessage(Reason.MISSING_FIELD, "eventTime is missing, empty or zero")
    job = _Job(record, event_type, d.epoch_millis(record, "eventTime"), millis)

    if kind is Kind.JOB_COMPLETED:
        tasks = task_list(record)
        return [job.completed(), *(job.task_record(task) for task in tasks)]
    if kind is Kind.RECORDING_READY:
        return [job.recording_ready()]
    return [job.call_event(kind, call_attempt(record, event_type))]


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
        self.status = canonical(self.status_raw, JOB_STATUSES, (), JOB_ALIASES)
        self.reason_raw = d.text(record, "failureReason")
        self.reason = canonical(self.reason_raw, FAILURE_REASONS, FAILURE_NAMES_ONLY)
        contact = first_contact(record)
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
            (key, item, "extras") for key, item in flatten_extras(record.get("extras")).items()
        ]

    def _event(self, kind: Kind, key: Sequence[object], **fields: Any) -> CallEvent:
        extras = {**self.own, **fields.pop("extras", {})}
        callee = fields.get("callee") or self.phone_number
        fields["callee"] = callee
        if self.phone_number is not None and self.phone_number != callee:
            extras["phoneNumber"] = self.phone_number
        extras = d.compact(extras)
        for name, item, prefix in self.foreign:
            put(extras, name, item, prefix)
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
        if self.status in NOT_FINAL_JOB:
            return None
        return Outcome.UNKNOWN  # JobComplete with an unknown status, or none at all

    def task_record(self, task: JsonObject) -> Normalized:
        fields = task_fields(task, final=True)
        status = fields["provider_status"]
        name = canonical(status, TASK_STATUSES)
        end = positive_millis(task, "endTime")
        key = ("task", fields["call_id"], name or status, end, d.text(task, "id"))
        fields["occurred_at"] = d.first(fields["ended_at"], fields["started_at"], self.event_time)
        fields["extras"] = {**fields["extras"], **self._job_status_extra()}
        event = self._event(Kind.CALL_RECORD, key, **fields)
        return Normalized(event, {**self.record, "tasks": [task]})

    def call_event(self, kind: Kind, task: JsonObject) -> Normalized:
        fields = task_fields(task, final=False)
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
                for task in task_list(self.record)
                if (call_id is not None and d.text(task, "callId") == call_id)
                or (task_id is not None and d.text(task, "id") == task_id)
            ),
            None,
        )
        fields = task_fields(task or {}, final=False)
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
