"""Exponential backoff, computed by tenacity in one place.

Most retries here are not a loop around one call: the attempt count lives in a database row
(an outbox lease, a recording), in the supervisor's record of a child process, or in the worker's
count of failed rounds. `delay` gives tenacity's `wait_exponential` for such a count, so every
backoff in the package follows one formula (and never overflows, however long the outage).
`retry_until_stopped` is the loop form, for a call that is retried until it works or a stop
event is set (the migration at a worker's start).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import tenacity


def delay(attempt: int, initial: float, maximum: float) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): `initial * 2**(n-1)`,
    capped at `maximum`."""
    state = tenacity.RetryCallState(None, None, (), {})  # type: ignore[arg-type]
    state.attempt_number = max(attempt, 1)
    return float(tenacity.wait_exponential(multiplier=initial, max=maximum)(state))


def retry_until_stopped(
    call: Callable[[], object],
    *,
    retry_on: type[BaseException],
    stop: threading.Event,
    initial: float,
    maximum: float,
    before_sleep: Callable[[BaseException, float], None],
) -> bool:
    """Call until it returns (True) or `stop` is set while waiting to try again (False).

    `before_sleep(error, seconds)` is told about each failure: a log line, a heartbeat.
    """

    def _before_sleep(state: tenacity.RetryCallState) -> None:
        assert state.outcome is not None
        assert state.next_action is not None
        error = state.outcome.exception()
        assert error is not None
        before_sleep(error, state.next_action.sleep)

    def _sleep(seconds: float) -> None:
        if stop.wait(seconds):
            raise _Stopped

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(retry_on),
        wait=tenacity.wait_exponential(multiplier=initial, max=maximum),
        sleep=_sleep,
        before_sleep=_before_sleep,
        reraise=True,
    )
    try:
        retrying(call)
    except _Stopped:
        return False
    return True


class _Stopped(Exception):
    """Raised by the sleep when `stop` is set: tenacity then ends the loop at once."""


__all__ = ["delay", "retry_until_stopped"]
