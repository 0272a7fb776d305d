"""The parts of an Aliyun Outbound Bot message (docs/formats.md F2.2): its contact, its call
attempts (`tasks[]`), its custom parameters, and the normalized fields of one attempt.

The document types these loosely; a part of the wrong shape is refused here, naming the part.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from consumer.errors import InvalidMessage, Reason
from consumer.formats import _decode as d
from consumer.formats.aliyun_outbound_bot_codes import TASK_OUTCOMES, TASK_STATUSES, canonical
from consumer.model import HangupBy, JsonObject, Outcome, rfc3339

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


def task_fields(task: JsonObject, *, final: bool) -> dict[str, Any]:
    """The normalized fields of one `tasks[]` entry (F2.2); `final` for JobComplete's records."""
    status = d.text(task, "status")
    name = canonical(status, TASK_STATUSES)
    if name is not None:
        outcome = TASK_OUTCOMES[name]
    elif status is not None:
        outcome = Outcome.UNKNOWN
    else:
        outcome = Outcome.UNKNOWN if final else None
    hangup_by = None
    if name is not None and name.startswith("SucceededClientHangUp"):
        hangup_by = HangupBy.CALLEE
    elif name is not None and name.startswith("SucceededChatbotHangUp"):
        hangup_by = HangupBy.SYSTEM
    planned = millis_time(task, "planedTime")
    extras: dict[str, Any] = {"planedTime": None if planned is None else rfc3339(planned)}
    extras.update({f"task.{k}": v for k, v in task.items() if k not in _TASK})
    return {
        "call_id": d.text(task, "callId"),
        "refs": d.compact({"task_id": d.text(task, "id")}),
        "caller": d.text(task, "callingNumber"),
        "callee": d.text(task, "calledNumber"),
        "started_at": millis_time(task, "actualTime"),
        "ended_at": millis_time(task, "endTime"),
        "provider_status": status,
        "outcome": outcome,
        "hangup_by": hangup_by,
        "extras": extras,
    }


def positive_millis(record: Mapping[str, Any], key: str) -> int | None:
    """Epoch millis as an int; 0 (a Java default for "not set") counts as absent."""
    value = d.integer(record, key)
    return value if value is not None and value > 0 else None


def millis_time(record: Mapping[str, Any], key: str) -> datetime | None:
    """An epoch-millis time; 0 is absent (`positive_millis`)."""
    return d.epoch_millis(record, key) if positive_millis(record, key) is not None else None


def first_contact(record: JsonObject) -> JsonObject:
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


def task_list(record: JsonObject) -> list[JsonObject]:
    """`tasks[]`, the job's call attempts; absent or empty is none yet."""
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


def call_attempt(record: JsonObject, event_type: str) -> JsonObject:
    """The attempt a call-level message is about; without one (or its callId) the event would
    be a hollow call event that merges into no call, so the message is refused."""
    tasks = task_list(record)
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
    ranked = [(positive_millis(task, "actualTime") or 0, index) for index, task in enumerate(tasks)]
    return tasks[max(ranked)[1]]


def flatten_extras(value: Any) -> dict[str, Any]:
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


def put(extras: dict[str, Any], key: str, value: Any, prefix: str) -> None:
    """Add a provider key without overwriting one we set: a clash goes under `prefix.key`."""
    if value in (None, "", [], {}):
        return
    extras[f"{prefix}.{key}" if key in extras else key] = value
