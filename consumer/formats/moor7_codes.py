"""7moor's vocabularies (docs/formats.md F4.2-4.5): push types, call states, CDR statuses and
the field names kept as refs, times or durations, with what each value means.

Data apart from the reading of a record: a row changes with the vendor's document.
"""

from __future__ import annotations

from consumer.errors import InvalidMessage, Reason, clip
from consumer.formats import _decode as d
from consumer.model import Direction, HangupBy, JsonObject, Kind, Outcome

PUSH_KINDS: dict[str, Kind] = {
    "dialoutring": Kind.CALL_RINGING,
    "dialouthangup": Kind.CALL_ENDED,
    "callstatus": Kind.AGENT_STATUS,
    "cdr": Kind.CALL_RECORD,
    "mediafailreason": Kind.CALL_ENDED,
    "login": Kind.AGENT_SESSION,
    "logout": Kind.AGENT_SESSION,
}
CALL_EVENT_KINDS: dict[str, Kind] = {
    "calling": Kind.CALL_INITIATED,
    "ring": Kind.CALL_RINGING,
    "link": Kind.CALL_ANSWERED,
    "hangup": Kind.CALL_ENDED,
}
STATUS_OUTCOMES: dict[str, Outcome] = {
    "ANSWER": Outcome.ANSWERED,
    "CALL_TRANSFER": Outcome.ANSWERED,
    "CUSTOMER_NO_ANSWER": Outcome.NO_ANSWER,
    "AGENT_NO_ANSWER": Outcome.NO_ANSWER,
    "QUEUE_ABANDON": Outcome.CANCELLED,
    "IVR": Outcome.CANCELLED,
}
FAILURE_OUTCOMES: dict[str, Outcome] = {
    "forbidden": Outcome.BLOCKED,
    "serviceunavailable": Outcome.FAILED,
    "cancel": Outcome.CANCELLED,
    "requesttimeout": Outcome.NO_ANSWER,
    "decline": Outcome.REJECTED,
    "unknow": Outcome.UNKNOWN,
}

# Ids copied to refs (F4.3–4.5), under our snake_case names.
REFS: dict[str, str] = {
    "accountId": "account_id",
    "agentNumber": "agent_number",
    "agentId": "agent_id",
    "queueNumber": "queue_number",
    "taskId": "task_id",
    "ivrId": "ivr_id",
    "satisfyIvrId": "satisfy_ivr_id",
    "customerId": "customer_id",
    "_id": "record_id",
    "id": "row_id",
    "callId": "channel_call_id",
    "relativeCallUniqueId": "relative_call_id",
}
# Wall times (or epoch values) kept in extras, converted to RFC 3339 UTC.
TIME_EXTRAS = frozenset(
    {
        "createTime",
        "saveTime",
        "ivrTime",
        "joinQueueTime",
        "satisfyStartTime",
        "satisfyEndTime",
        "systemAnswerTime",
        "bridgeTime",
        "customerStartTime",
        "customerAnswerTime",
        "agentStartTime",
        "agentAnswerTime",
        "startTime",
        "hangupTime",
        "endTime",
        "statusTime",
    }
)
DURATION_EXTRAS = frozenset(
    {
        "totalDuration",
        "waitDuration",
        "agentRingDuration",
        "customerRingDuration",
        "playNumberDuration",
        "satisfyDuration",
        "recordingDuration",
    }
)


def event_kind(record: JsonObject) -> Kind:
    """The kind a push reports: its `pushType`, else its `callEvent`, else a CDR (`cdrType`)."""
    push_type = d.text(record, "pushType")
    call_event = d.text(record, "callEvent")
    if push_type is not None:
        kind = PUSH_KINDS.get(push_type.casefold())
        if kind is None and call_event is not None:
            kind = CALL_EVENT_KINDS.get(call_event.casefold())
        if kind is None:
            raise InvalidMessage(
                Reason.UNKNOWN_EVENT_TYPE,
                f"pushType {clip(push_type)} is not one of {', '.join(PUSH_KINDS)}"
                + ("" if call_event is None else f", and callEvent {clip(call_event)} is unknown"),
            )
        return kind
    if call_event is not None:
        kind = CALL_EVENT_KINDS.get(call_event.casefold())
        if kind is None:
            raise InvalidMessage(
                Reason.UNKNOWN_EVENT_TYPE,
                f"callEvent {clip(call_event)} is not one of {', '.join(CALL_EVENT_KINDS)}",
            )
        return kind
    if d.text(record, "cdrType") is not None:
        return Kind.CALL_RECORD
    raise InvalidMessage(Reason.MISSING_FIELD, "neither pushType nor callEvent is present")


def call_direction(call_type: str | None) -> Direction | None:
    """`callType`: `incoming` is inbound, every other call type (dialout, webcall...) outbound."""
    if call_type is None:
        return None
    return Direction.INBOUND if call_type.casefold() == "incoming" else Direction.OUTBOUND


def hangup_by(side: str | None, direction: Direction | None) -> HangupBy | None:
    """`hangUpSide`: the agent, or the customer, who is the callee of an outbound call."""
    folded = (side or "").casefold()
    if folded == "agent":
        return HangupBy.AGENT
    if folded == "customer" and direction is not None:
        return HangupBy.CALLEE if direction is Direction.OUTBOUND else HangupBy.CALLER
    return None


def cdr_outcome(status: str | None, failure: str | None) -> Outcome:
    """F4.5: `status` decides; `failureReason` refines a no-answer, or stands in for `status`."""
    outcome = STATUS_OUTCOMES.get((status or "").upper())
    refined = None if failure is None else FAILURE_OUTCOMES.get(failure.casefold())
    if outcome is Outcome.NO_ANSWER or (status is None and outcome is None):
        return refined or outcome or Outcome.UNKNOWN
    return outcome or Outcome.UNKNOWN
