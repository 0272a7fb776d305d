"""What every Huawei event is made with: the `Product` a product module states (its code tables
and which legs of a fee record are the call's), the UTC clock (F0.1), the envelope's extras and
the event itself.

A module of its own so that `huawei` (status events) and `huawei_fee` (fee records) both stand
on it without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from consumer.errors import InvalidMessage, Reason
from consumer.formats import _decode
from consumer.model import (
    Direction,
    HangupBy,
    JsonObject,
    Kind,
    Normalized,
    Outcome,
    Provider,
    event_id,
)


def huawei_time(record: Mapping[str, Any], key: str) -> datetime | None:
    """A Huawei time: a UTC `yyyy-MM-dd HH:mm:ss`, double spaces allowed (F0.1).

    The status `timestamp` is documented as a "UNIX timestamp" although every sample is the
    wall-time form; 10 or 13 digits are read as epoch seconds or milliseconds just in case.
    """
    raw = _decode.text(record, key)
    if raw is not None and raw.isascii() and raw.isdigit() and len(raw) in (10, 13):
        return _decode.epoch_millis({key: raw if len(raw) == 13 else raw + "000"}, key)
    return None if raw is None else _decode.read_utc_wall_time(raw, key)


def required_time(record: Mapping[str, Any], key: str) -> datetime:
    value = huawei_time(record, key)
    if value is None:
        raise InvalidMessage(Reason.MISSING_FIELD, f"{key} is missing or empty")
    return value


@dataclass(frozen=True, slots=True)
class Legs:
    """How one fee record reads for its product: which keys are the call's parties and times."""

    caller: str | None = None
    callee: str | None = None
    direction: Direction | None = None
    # Keys for started_at, first present wins.
    started: tuple[str, ...] = ()
    ringing: str | None = None
    answered: str | None = None
    # Q.850 causes of the failed leg, most relevant first (F3.5 rule 2).
    q850: tuple[str, ...] = ()
    # The key that stands for refs.bind_num when bindNum is absent (Private Number: calleeNum).
    bind_fallback: str | None = None


@dataclass(frozen=True, slots=True)
class Product:
    """The product-specific half of a Huawei format (docs/formats.md F3.5-3.7)."""

    format_name: str
    provider: Provider
    service_types: frozenset[str]
    # The direction of every status event, when the product has only one (Voice: outbound).
    status_direction: Direction | None
    # stateCode → outcome (F3.6 / F3.7); None for a code the table does not know.
    state_outcome: Callable[[int], Outcome | None]
    # ulFailReason → outcome; None for a code the table does not know.
    fail_outcome: Callable[[int], Outcome | None]
    # ulFailReason → who hung up (Voice 1001-1004), None otherwise.
    fail_hangup_by: Callable[[int], HangupBy | None]
    legs: Callable[[JsonObject], Legs]


def envelope_extras(
    envelope: JsonObject, keys: tuple[str, ...], taken: Mapping[str, Any]
) -> dict[str, Any]:
    """Undocumented envelope keys, kept under their own name unless the record has it too."""
    extras: dict[str, Any] = {}
    for key, value in envelope.items():
        if key in keys:
            continue
        extras[f"envelope.{key}" if key in taken else key] = value
    return extras


def event(
    product: Product, kind: Kind, key: Sequence[object], payload: JsonObject, **fields: Any
) -> Normalized:
    """One storable event of `product`, its id derived from `key` (F3.2)."""
    built = _decode.build(
        event_id=event_id(product.format_name, *key), provider=product.provider, kind=kind, **fields
    )
    return Normalized(event=_decode.storable(built), payload=payload)
