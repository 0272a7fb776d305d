"""Shared pieces for the pipeline tests: a fake clock, a test format, stored events."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta

import pytest
import structlog
from structlog.testing import capture_logs
from structlog.typing import EventDict

from consumer.config.model import RetryConfig
from consumer.formats import get_format
from consumer.pipeline.normalize import Unit, prepare
from consumer.sources.base import Message
from tests.conformance import bodies
from tests.conformance.sink_double import FaultySink, SinkDouble

QUEUE = "q1"
RECEIVED = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)


class FakeTime:
    """A monotonic clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 50.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def captured() -> AbstractContextManager[list[EventDict]]:
    """Log lines as emitted, with the bound context merged in (as the real configuration does)."""
    return capture_logs(processors=[structlog.contextvars.merge_contextvars])


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def double() -> SinkDouble:
    return SinkDouble()


@pytest.fixture
def sink(double: SinkDouble) -> FaultySink:
    return FaultySink(double)


def retry(
    attempts: int = 3, initial: float = 1, maximum: float = 4, total: float = 60
) -> RetryConfig:
    return RetryConfig(
        attempts=attempts,
        initial=timedelta(seconds=initial),
        max=timedelta(seconds=maximum),
        total=timedelta(seconds=total),
    )


def message(n: int, *, count: int = 1, body: bytes | None = None) -> Message:
    return Message(f"m-{n}", bodies.voice_report(n) if body is None else body, count, f"h-{n}")


def unit(n: int, *, body: bytes | None = None) -> Unit:
    return prepare(
        message(n, body=body),
        queue=QUEUE,
        fmt=get_format(bodies.FORMAT),
        max_deliveries=10,
        received_at=RECEIVED,
    )
