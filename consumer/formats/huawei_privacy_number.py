"""`huawei.privacy_number`: Huawei Cloud Private Number call events and fee records.

One format for every mode (AX, AXB, AXYB, X, AXE; docs/formats.md F3): they share the envelopes
and the fee layout, where the caller dials the privacy number X (`bindNum`, also `calleeNum`)
and the platform forwards the call to `fwdDstNum`.
"""

from __future__ import annotations

from collections.abc import Mapping

from consumer.formats import Format, _decode, huawei, huawei_product
from consumer.model import Direction, HangupBy, JsonObject, Normalized, Outcome, Provider

NAME = "huawei.privacy_number"
# F3.5: 003 AX, 004 AXB or X, 005 AXE, 007 AXYB.
SERVICE_TYPES = frozenset({"003", "004", "005", "007"})

_CONTROL_BLOCKED = (
    *(7500, 8018, 8023, 8024, 8042, 8043, 8044, 8046, 8047, 8048, 8049, 8050, 8051),
    *(8055, 8056, 8057),
)

# F3.7 stateCode (outcomes are the proposal column).
STATE_CODES: Mapping[int, Outcome] = {
    # normal
    0: Outcome.ANSWERED,
    8010: Outcome.ANSWERED,
    # binding
    **dict.fromkeys((8013, 8014, 8019, 8022, 8025, 8030, 8031), Outcome.FAILED),
    8016: Outcome.BLOCKED,
    # caller
    **dict.fromkeys((7501, 7502, 7516, 8033), Outcome.CANCELLED),
    8032: Outcome.FAILED,
    # callee
    7503: Outcome.REJECTED,
    7504: Outcome.REJECTED,
    8035: Outcome.NO_ANSWER,
    8101: Outcome.NO_ANSWER,
    8100: Outcome.INVALID_NUMBER,
    8102: Outcome.BUSY,
    8103: Outcome.UNREACHABLE,
    8104: Outcome.POWERED_OFF,
    8105: Outcome.OUT_OF_SERVICE,
    # tenant
    **dict.fromkeys((7100, 7101, 7105, 7106, 7507, 8006), Outcome.FAILED),
    7108: Outcome.BLOCKED,
    # control
    **dict.fromkeys(range(7001, 7006), Outcome.BLOCKED),
    7107: Outcome.FAILED,
    7109: Outcome.FAILED,
    **dict.fromkeys(_CONTROL_BLOCKED, Outcome.BLOCKED),
    # platform
    **dict.fromkeys((522, 8007, 8008, 8015, 8041, 7102, 8011, 8020, 8040, 8139), Outcome.FAILED),
    # network
    **dict.fromkeys((7505, 7506, 7508), Outcome.FAILED),
}

# F3.7 ulFailReason: "map them as stateCode", plus two codes only it lists; blocked is ours
# (8058 practitioner not real-name registered, 8059 carrier interception).
FAIL_REASONS: Mapping[int, Outcome] = {
    **STATE_CODES,
    8058: Outcome.BLOCKED,
    8059: Outcome.BLOCKED,
}

# F3.5 `direction`: AX/AXB/AXE. 2 (abnormal, e.g. no binding) has no direction.
DIRECTIONS: Mapping[str, Direction] = {"1": Direction.OUTBOUND, "0": Direction.INBOUND}


def no_hangup_by(code: int) -> HangupBy | None:
    """Private Number's ulFailReason says nothing about who hung up (callRelDirection does)."""
    return None


def legs(record: JsonObject) -> huawei_product.Legs:
    """F3.5: the caller dials X (calleeNum) and the platform forwards to fwdDstNum."""
    return huawei_product.Legs(
        caller="callerNum",
        callee="fwdDstNum",
        direction=_decode.lookup(DIRECTIONS, _decode.text(record, "direction"), None),
        started=("callInTime", "fwdStartTime"),
        ringing="fwdAlertingTime",
        answered="fwdAnswerTime",
        q850=("fwdUnaswRsn",),
        bind_fallback="calleeNum",
    )


PRODUCT = huawei_product.Product(
    format_name=NAME,
    provider=Provider.HUAWEI_PRIVACY,
    service_types=SERVICE_TYPES,
    status_direction=None,
    state_outcome=STATE_CODES.get,
    fail_outcome=FAIL_REASONS.get,
    fail_hangup_by=no_hangup_by,
    legs=legs,
)


def parse(body: bytes) -> list[Normalized]:
    return huawei.parse(PRODUCT, body)


FORMAT = Format(name=NAME, provider=Provider.HUAWEI_PRIVACY, parse=parse, answer=huawei.PUSH_ANSWER)
