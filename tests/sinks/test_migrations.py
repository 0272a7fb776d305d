"""The migration files: naming, splitting, and both dialects in step."""

from __future__ import annotations

import re

import pytest

from consumer.sinks import migrations


def test_statements_split_at_line_ends_and_comments_go() -> None:
    # Given a file with comments, a multi-line statement and a ';' inside a literal
    sql = (
        "-- header\nCREATE TABLE a (\n  x TEXT DEFAULT ';'\n);\n\n-- note\nCREATE INDEX i ON a (x);"
    )
    # When it is split, Then each statement is whole
    assert migrations.split_statements(sql) == (
        "CREATE TABLE a (\n  x TEXT DEFAULT ';'\n)",
        "CREATE INDEX i ON a (x)",
    )


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_each_dialect_has_numbered_migrations(dialect: str) -> None:
    # Given the packaged migration files, When loaded, Then versions rise from 1 (features
    # developed side by side reserve their numbers, so a branch may skip some)
    loaded = migrations.load(dialect)
    versions = [m.version for m in loaded]
    assert versions[0] == 1
    assert versions == sorted(set(versions))
    assert all(m.statements for m in loaded)


def test_both_dialects_create_the_same_tables_and_columns() -> None:
    # Given the SQLite and PostgreSQL migrations
    def columns(dialect: str) -> dict[str, list[str]]:
        tables: dict[str, list[str]] = {}
        for migration in migrations.load(dialect):
            for statement in migration.statements:
                match = re.match(r"CREATE TABLE (\w+) \((.*)\)$", statement, re.S)
                if match:
                    names = [line.split()[0] for line in match.group(2).strip().splitlines()]
                    tables[match.group(1)] = [n for n in names if n.islower()]
        return tables

    # Then they agree on every table and column, in order
    assert columns("sqlite") == columns("postgres")
    assert set(columns("sqlite")) == {
        "call_events",
        "calls",
        "dead_letters",
        "outbox",
        "forward_state",
        "push_nonces",
        "recordings",
        "reconcile_state",
    }


def test_a_newer_database_is_named() -> None:
    # Given a database at version 70 and code that knows fewer
    known = migrations.load("sqlite")
    newest = known[-1].version
    # Then the check names both
    with pytest.raises(migrations.SchemaTooNew, match=rf"version 70, newer .* \({newest}\)"):
        migrations.check_not_newer({1, 70}, known, "the database")
