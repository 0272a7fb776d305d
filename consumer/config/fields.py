"""What every section of the configuration is built from: the strict base model, durations, the
URL pattern of an API endpoint, and the bounded exponential backoff."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, model_validator

# Matched on the stripped text: a `\s*` on both sides of an optional unit backtracks
# quadratically over a run of spaces followed by anything else.
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> object:
    """`1s`, `500ms`, `2m`, `1h`, or a bare number of seconds."""
    if isinstance(value, timedelta | bool):
        return value
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    if isinstance(value, str) and (match := _DURATION.fullmatch(value.strip())):
        return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    raise ValueError(f"not a duration (like 500ms, 1s, 2m, 1h): {value!r}")


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(lambda td: f"{td.total_seconds():g}s", return_type=str),
]

HOST_URL = r"^https?://[^/\s?#]+/?$"
"""An API endpoint: http(s)://host[:port], without a path, query or fragment."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Backoff(Strict):
    """Exponential backoff from `initial` up to `max`, at most `attempts` tries; a subclass gives
    its section's defaults and bounds."""

    attempts: int
    initial: Duration
    max: Duration

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.initial > self.max:
            raise ValueError("initial must not be longer than max")
        return self


__all__ = ["HOST_URL", "Backoff", "Duration", "Strict", "parse_duration"]
