"""The sinks the conformance suite runs against: the in-memory double, the real SQLite sink and
the real PostgreSQL sink (the server at 127.0.0.1:5432, database `test`, override with
CONSUMER_TEST_POSTGRES; one schema per test, dropped afterwards)."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from consumer.config.model import SinkConfig
from consumer.sinks import open_sink
from tests.conformance.harness import Store
from tests.conformance.sink_double import FaultySink, SinkDouble

POSTGRES = os.environ.get("CONSUMER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["double", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "double":
        double = SinkDouble()
        yield Store(FaultySink(double), double.stored_event_ids, "double")
    elif request.param == "sqlite":
        yield from _sqlite(tmp_path)
    else:
        yield from _postgres()


def _sqlite(tmp_path: Path) -> Iterator[Store]:
    path = tmp_path / "events.db"
    real = open_sink(SinkConfig(url=f"sqlite:///{path}"))
    real.migrate()

    def event_ids() -> list[str]:
        with sqlite3.connect(path) as db:
            return [row[0] for row in db.execute("SELECT event_id FROM call_events")]

    yield Store(FaultySink(real), event_ids, "sqlite")
    real.close()


def _postgres() -> Iterator[Store]:
    schema = f"conformance_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"the PostgreSQL conformance run needs the server at {POSTGRES}: {exc}")
    admin.execute(f'CREATE SCHEMA "{schema}"')
    real = open_sink(SinkConfig(url=f"{POSTGRES}?options=-csearch_path%3D{schema}"))
    try:
        real.migrate()

        def event_ids() -> list[str]:
            rows = admin.execute(f'SELECT event_id FROM "{schema}".call_events').fetchall()
            return [row[0] for row in rows]

        yield Store(FaultySink(real), event_ids, "postgres")
    finally:
        real.close()
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()
