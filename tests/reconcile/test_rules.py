"""Which events close a call, the day Aliyun files a call under, and the query pacing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from consumer.model import CallEvent, Kind, Provider
from consumer.reconcile.query import QueryError, RateLimiter, classify_code
from consumer.reconcile.rules import FINAL_KINDS, is_final, shanghai_day_start


def event(provider: Provider, kind: Kind, call_id: str | None = "c") -> CallEvent:
    return CallEvent(
        event_id="e", provider=provider, kind=kind, call_id=call_id, occurred_at=datetime.now(UTC)
    )


@pytest.mark.parametrize("provider", list(Provider))
def test_the_call_record_closes_every_providers_call(provider: Provider) -> None:
    assert is_final(event(provider, Kind.CALL_RECORD))
    assert not is_final(event(provider, Kind.CALL_ANSWERED))
    assert not is_final(event(provider, Kind.RECORDING_READY))
    assert not is_final(event(provider, Kind.CALL_RECORD, call_id=None))


def test_a_hangup_closes_only_an_outbound_bot_call() -> None:
    # CallFinished is Outbound Bot's final record; elsewhere call.ended is progress (a Huawei
    # disconnect, a 7moor hangup) and the fee record or cdr is still owed
    assert is_final(event(Provider.ALIYUN_OUTBOUND_BOT, Kind.CALL_ENDED))
    others = [p for p in Provider if p is not Provider.ALIYUN_OUTBOUND_BOT]
    assert not any(is_final(event(p, Kind.CALL_ENDED)) for p in others)
    assert set(FINAL_KINDS) == set(Provider)


@pytest.mark.parametrize(
    ("moment", "midnight"),
    [
        # 2024-05-01 23:59 in Shanghai is still May 1st there
        (datetime(2024, 5, 1, 15, 59, tzinfo=UTC), datetime(2024, 4, 30, 16, tzinfo=UTC)),
        # 2024-05-02 00:30 in Shanghai is May 2nd, though still May 1st in UTC
        (datetime(2024, 5, 1, 16, 30, tzinfo=UTC), datetime(2024, 5, 1, 16, tzinfo=UTC)),
    ],
)
def test_the_call_day_is_the_shanghai_day(moment: datetime, midnight: datetime) -> None:
    assert shanghai_day_start(moment) == midnight


def test_queries_are_spaced_to_the_rate_in_call_order() -> None:
    # Given 100 per second and three callers at the same instant
    slept: list[float] = []
    limiter = RateLimiter(100, clock=lambda: 50.0, sleep=slept.append)
    # When they wait, Then the first goes at once and the others 10 and 20 ms later
    for _ in range(3):
        limiter.wait()
    assert slept == pytest.approx([0.01, 0.02])


@pytest.mark.parametrize(
    ("code", "status", "result", "retry"),
    [
        ("SignatureDoesNotMatch", 400, "auth_error", False),
        ("InvalidAccessKeyId.NotFound", 403, "auth_error", False),
        ("Forbidden.RAM", 403, "auth_error", False),
        ("Throttling.User", 400, "throttled", True),
        ("", 429, "throttled", True),
        ("InternalError", 500, "error", True),
        ("", None, "error", True),  # no answer at all: the network
        ("isv.InvalidParameter", 400, "error", False),
    ],
)
def test_failures_are_classified(code: str, status: int | None, result: str, retry: bool) -> None:
    error = classify_code(code, status, "why")
    assert isinstance(error, QueryError)
    assert (error.result, error.retry, error.reason) == (result, retry, "why")
