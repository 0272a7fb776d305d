"""The one walk over a configuration's secrets: for log redaction, `check`'s masking, the loader.

It walks models, mappings and lists alike, so it serves both a validated `Config` and the plain
data `model_dump` makes of it (where the `SecretStr` values are still `SecretStr`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, SecretStr

from consumer.config.problems import KeyPath

MASK = "***"


def secret_items(value: Any, where: KeyPath = ()) -> Iterator[tuple[KeyPath, SecretStr]]:
    """Each `SecretStr` under `value`, with its key path."""
    if isinstance(value, SecretStr):
        yield where, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from secret_items(getattr(value, name), (*where, name))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from secret_items(item, (*where, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from secret_items(item, (*where, index))


def mask_secrets(data: Any) -> Any:
    """`data` (plain mappings and lists) with every secret replaced by `***`, in place."""
    for where, _ in list(secret_items(data)):
        if not where:
            return MASK
        parent = data
        for part in where[:-1]:
            parent = parent[part]
        parent[where[-1]] = MASK
    return data


__all__ = ["MASK", "mask_secrets", "secret_items"]
