"""Aliyun Outbound Bot's enumerations (docs/formats.md F2.3) and the outcome each one means.

Data apart from the reading of a message: a row changes with the provider's documents. A value
comes as its name (any case) or as its integer, the index in its tuple here (`canonical`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from consumer.model import Kind, Outcome

KINDS: dict[str, Kind] = {
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
FAILURE_NAMES_ONLY = ("InArrears", "OutOfService", "NoneRepeatableJobMaxAttemptCountLimit")
JOB_ALIASES = {"succeed": "Succeeded"}

NOT_FINAL_JOB = frozenset({"Scheduling", "Executing", "Paused", "Drafted"})

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


def canonical(
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
