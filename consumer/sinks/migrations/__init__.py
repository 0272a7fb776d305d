"""Versioned schema migrations: `<dialect>/NNNN_name.sql`, applied in order at start-up.

A file is a list of statements, each ending with `;` at the end of a line (no procedural bodies
with inner semicolons). The sinks run every file not yet recorded in `schema_version` inside
one transaction that holds a migration lock, so workers starting together apply each file once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from consumer.errors import ConsumerError

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_STATEMENT_END = re.compile(r";[ \t]*(?:\n|$)")


class SchemaTooNew(ConsumerError):
    """The database was migrated by a newer consumer; running older code on it is unsafe."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def split_statements(sql: str) -> tuple[str, ...]:
    """The statements of one file, comments dropped."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    parts = _STATEMENT_END.split("\n".join(lines) + "\n")
    return tuple(part.strip() for part in parts if part.strip())


def load(dialect: str) -> tuple[Migration, ...]:
    """Every migration of `dialect` (`sqlite`, `postgres`) in version order."""
    folder = resources.files(__name__).joinpath(dialect)
    found: list[Migration] = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME.match(entry.name)
        if match is None:
            raise ValueError(f"migration file {dialect}/{entry.name} is not named NNNN_name.sql")
        statements = split_statements(entry.read_text(encoding="utf-8"))
        found.append(Migration(int(match.group(1)), match.group(2), statements))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two {dialect} migrations share a version: {versions}")
    return tuple(found)


def check_not_newer(applied: set[int], known: tuple[Migration, ...], where: str) -> None:
    newest_known = max((migration.version for migration in known), default=0)
    unknown = sorted(version for version in applied if version > newest_known)
    if unknown:
        raise SchemaTooNew(
            f"{where} has schema version {unknown[-1]}, newer than this consumer knows "
            f"({newest_known}); upgrade the consumer or use another database"
        )


__all__ = ["Migration", "SchemaTooNew", "check_not_newer", "load", "split_statements"]
