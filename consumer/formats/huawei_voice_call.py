"""`huawei.voice_call`: Huawei Cloud Voice Call status events and fee records (docs/formats.md F3).

Two scenarios write fee records differently (F3.5): voice notify / verification code (serviceType
001) has one leg, the platform calling the user; callback (002) calls A first, then bridges B,
so the call's caller is A's real number and the answer that counts is B's.
"""

from __future__ import annotations

from collections.abc import Mapping

from consumer.formats import Format, _decode, huawei, huawei_codes, huawei_product
from consumer.model import Direction, HangupBy, JsonObject, Normalized, Outcome, Provider

NAME = "huawei.voice_call"
NOTIFY = "001"
CALLBACK = "002"

# F3.6 stateCode, the hangup cause (outcomes are the proposal column).
STATE_CODES: Mapping[int, Outcome] = {
    0: Outcome.ANSWERED,
    **dict.fromkeys((7001, 7002, 7003, 7004, 7108), Outcome.BLOCKED),
    7109: Outcome.FAILED,
    **dict.fromkeys(
        (8000, 8001, 8002, 8005, 8006, 8007, 8008, 8012, 8015, 8018, 8020), Outcome.FAILED
    ),
    8003: Outcome.NO_ANSWER,
    8004: Outcome.REJECTED,
    8009: Outcome.CANCELLED,
    8010: Outcome.ANSWERED,
    8017: Outcome.ANSWERED,
    **dict.fromkeys((8100, 8106), Outcome.INVALID_NUMBER),
    **dict.fromkeys((8101, 8107), Outcome.NO_ANSWER),
    **dict.fromkeys((8102, 8108), Outcome.BUSY),
    **dict.fromkeys((8103, 8109), Outcome.UNREACHABLE),
    **dict.fromkeys((8104, 8110), Outcome.POWERED_OFF),
    **dict.fromkeys((8105, 8111), Outcome.OUT_OF_SERVICE),
}

# F3.6 ulFailReason, the teardown point. 518-520 ("read together with Q.850") only get here when
# neither Q.850 nor SIP said more, so all that is left to say is that the call failed (ours).
FAIL_REASONS: Mapping[int, Outcome] = {
    0: Outcome.ANSWERED,
    100: Outcome.ANSWERED,
    **dict.fromkeys((*range(501, 511), 512, *range(539, 543)), Outcome.FAILED),
    **dict.fromkeys(range(2901, 2915), Outcome.FAILED),
    513: Outcome.NO_ANSWER,
    514: Outcome.NO_ANSWER,
    **dict.fromkeys((515, 516, 530, 552, 553), Outcome.CANCELLED),
    **dict.fromkeys((517, 521, 522, 524, 526, 527, 529, 541, 550, 551), Outcome.FAILED),
    **dict.fromkeys((518, 519, 520), Outcome.FAILED),
    528: Outcome.BLOCKED,
    **dict.fromkeys(range(1001, 1005), Outcome.ANSWERED),
    **dict.fromkeys(range(2801, 2872), Outcome.FAILED),
    **dict.fromkeys((*range(7001, 7006), 7100, *range(7105, 7109)), Outcome.BLOCKED),
    7109: Outcome.FAILED,
}

# F3.6: agent hung up / user hung up / SP released the call / agent blind transfer.
FAIL_HANGUP_BY: Mapping[int, HangupBy] = {
    1001: HangupBy.AGENT,
    1002: HangupBy.CALLEE,
    1003: HangupBy.SYSTEM,
    1004: HangupBy.AGENT,
}

_B_LEG = ("fwdDstNum", "fwdStartTime", "fwdAlertingTime", "fwdAnswerTime")


def state_outcome(code: int) -> Outcome | None:
    return STATE_CODES.get(code)


def fail_outcome(code: int) -> Outcome | None:
    """ulFailReason: its own rows, then 8000-8111 as stateCode, then 400-699 as raw SIP."""
    if code in FAIL_REASONS:
        return FAIL_REASONS[code]
    if 8000 <= code <= 8111:
        return STATE_CODES.get(code)
    return huawei_codes.sip_outcome(code)


def mode(record: JsonObject) -> str:
    """001 (notify / verification code) or 002 (callback); a B leg means callback (ours)."""
    service_type = _decode.text(record, "serviceType")
    if service_type in (NOTIFY, CALLBACK):
        return service_type
    return CALLBACK if any(_decode.text(record, key) for key in _B_LEG) else NOTIFY


def legs(record: JsonObject) -> huawei_product.Legs:
    """F3.5 callers, callees and times of a Voice fee record. Every Voice call is outbound."""
    if mode(record) == CALLBACK:
        a_answered = _decode.text(record, "callOutAnswerTime") is not None
        return huawei_product.Legs(
            caller="calleeNum",
            callee="fwdDstNum",
            direction=Direction.OUTBOUND,
            started=("callOutStartTime", "fwdStartTime"),
            ringing="fwdAlertingTime",
            answered="fwdAnswerTime",
            q850=("fwdUnaswRsn",) if a_answered else ("callOutUnaswRsn", "fwdUnaswRsn"),
        )
    return huawei_product.Legs(
        caller="callerNum",
        callee="calleeNum",
        direction=Direction.OUTBOUND,
        started=("callOutStartTime",),
        ringing="callOutAlertingTime",
        answered="callOutAnswerTime",
        q850=("callOutUnaswRsn",),
    )


PRODUCT = huawei_product.Product(
    format_name=NAME,
    provider=Provider.HUAWEI_VOICE,
    service_types=frozenset({NOTIFY, CALLBACK}),
    status_direction=Direction.OUTBOUND,
    state_outcome=state_outcome,
    fail_outcome=fail_outcome,
    fail_hangup_by=FAIL_HANGUP_BY.get,
    legs=legs,
)


def parse(body: bytes) -> list[Normalized]:
    return huawei.parse(PRODUCT, body)


FORMAT = Format(name=NAME, provider=Provider.HUAWEI_VOICE, parse=parse, answer=huawei.PUSH_ANSWER)
