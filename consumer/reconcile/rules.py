"""Which events close a call, and when a call that has none is owed one (docs/reconcile.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from consumer.model import CallEvent, Kind, Provider

SHANGHAI = ZoneInfo("Asia/Shanghai")


class State(StrEnum):
    OPEN = "open"
    """No final record yet, still within the provider's deadline."""
    FINAL = "final"
    """The final record is stored (pushed, or fetched by the reconciler)."""
    OVERDUE = "overdue"
    """Past the deadline without a final record: the reconciler asks for it."""
    LOST = "lost"
    """Past `give_up_after`: counted, no longer queried; only a late push can close it."""


# The final record of each provider: the event the provider sends once a call is over and that
# carries its outcome, times and duration. Outbound Bot sends CallFinished (normalized as
# call.ended) when the call ends and the task records of JobComplete (call.record).
FINAL_KINDS: dict[Provider, frozenset[Kind]] = {
    Provider.ALIYUN_VMS: frozenset({Kind.CALL_RECORD}),
    Provider.ALIYUN_OUTBOUND_BOT: frozenset({Kind.CALL_RECORD, Kind.CALL_ENDED}),
    Provider.HUAWEI_VOICE: frozenset({Kind.CALL_RECORD}),
    Provider.HUAWEI_PRIVACY: frozenset({Kind.CALL_RECORD}),
    Provider.MOOR7: frozenset({Kind.CALL_RECORD}),
}

# After the call's last event; sized to each provider's own re-push budget (docs/reconcile.md).
DEFAULT_DEADLINES: dict[Provider, timedelta] = {
    Provider.ALIYUN_VMS: timedelta(minutes=15),
    Provider.ALIYUN_OUTBOUND_BOT: timedelta(minutes=30),
    Provider.HUAWEI_VOICE: timedelta(hours=7),
    Provider.HUAWEI_PRIVACY: timedelta(hours=11),
    Provider.MOOR7: timedelta(minutes=30),
}


def is_final(event: CallEvent) -> bool:
    """Whether this event is its call's final record."""
    return event.call_id is not None and event.kind in FINAL_KINDS[event.provider]


def shanghai_day_start(moment: datetime) -> datetime:
    """Midnight Asia/Shanghai of the day `moment` falls on there (Aliyun's "call's day")."""
    local = moment.astimezone(SHANGHAI)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)


def epoch_millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


__all__ = [
    "DEFAULT_DEADLINES",
    "FINAL_KINDS",
    "SHANGHAI",
    "State",
    "epoch_millis",
    "is_final",
    "shanghai_day_start",
]
