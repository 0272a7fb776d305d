"""The one backoff formula, and the retry loop that a stop event ends."""

from __future__ import annotations

import threading

import pytest

from consumer.backoff import delay, retry_until_stopped


def test_the_delay_doubles_from_initial_up_to_the_cap() -> None:
    # Given attempts 1 to 6 with 1 s initial and a 10 s cap
    # When the delays are computed
    delays = [delay(attempt, 1.0, 10.0) for attempt in range(1, 7)]
    # Then they double and stop at the cap
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_a_failure_count_of_days_neither_overflows_nor_passes_the_cap() -> None:
    # Given a forwarder that has failed 5000 times
    # When its next delay is computed
    # Then it is the cap
    assert delay(5000, 1.0, 300.0) == 300.0


def test_a_call_is_retried_until_it_works_and_each_failure_is_reported() -> None:
    # Given a call that fails twice, then works
    calls: list[int] = []
    told: list[tuple[str, float]] = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError(f"down {len(calls)}")

    # When it is retried
    done = retry_until_stopped(
        flaky,
        retry_on=ConnectionError,
        stop=threading.Event(),
        initial=0.001,
        maximum=0.002,
        before_sleep=lambda error, seconds: told.append((str(error), seconds)),
    )
    # Then it ran three times and both failures were told with their growing waits
    assert done is True
    assert len(calls) == 3
    assert told == [("down 1", 0.001), ("down 2", 0.002)]


def test_a_stop_ends_the_retries_without_another_attempt() -> None:
    # Given a call that always fails and a stop already set
    stop = threading.Event()
    stop.set()
    calls: list[int] = []

    def down() -> None:
        calls.append(1)
        raise ConnectionError("down")

    # When it is retried
    done = retry_until_stopped(
        down, retry_on=ConnectionError, stop=stop, initial=5.0, maximum=5.0, before_sleep=print
    )
    # Then it gives up after the one attempt, reporting it stopped
    assert done is False
    assert calls == [1]


def test_another_exception_is_not_retried() -> None:
    # Given a call that raises something outside retry_on
    def bug() -> None:
        raise ValueError("a bug")

    # When it is retried, Then the exception comes straight out
    with pytest.raises(ValueError, match="a bug"):
        retry_until_stopped(
            bug,
            retry_on=ConnectionError,
            stop=threading.Event(),
            initial=0.001,
            maximum=0.001,
            before_sleep=print,
        )
