"""Sink fixtures: every shared test runs on SQLite and on PostgreSQL.

PostgreSQL is the server at 127.0.0.1:5432, database `test` (override with
CONSUMER_TEST_POSTGRES). Each test gets a schema of its own, named after this test process (an
xdist worker is a process of its own), and drops it afterwards; a run that dies half-way leaves
only schemas with its own prefix. Every connection is the test's own, so a server restart
between two tests fails neither.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from consumer.sinks.postgres import PostgresSink
from consumer.sinks.sql import SqlSink
from consumer.sinks.sqlite import SqliteSink

POSTGRES = os.environ.get("CONSUMER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
RUN = f"sinks_{os.getpid()}_{uuid.uuid4().hex[:6]}"
_counter = itertools.count()

SinkFactory = Callable[..., SqlSink]


def schema_url(schema: str, base: str = POSTGRES) -> str:
    return f"{base}?options=-csearch_path%3D{schema}"


def _connect() -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL tests need the server at {POSTGRES}: {exc}")


@pytest.fixture(scope="session")
def _run_schemas() -> Iterator[None]:
    """At the end of the run (of this xdist worker: RUN holds its pid), drop what is left."""
    yield
    try:
        conn = psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError:
        return  # the server is gone: nothing to clean, or nothing we can do
    with conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (f"{RUN}%",)
        ).fetchall()
        for (schema,) in rows:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def postgres_admin(_run_schemas: None) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection of the test's own: a server restart between tests costs
    nothing (one connection for the whole run turned every later test into an error)."""
    with _connect() as conn:
        yield conn


@pytest.fixture
def pg_schema(_run_schemas: None) -> Iterator[str]:
    """A fresh, empty schema for one test."""
    schema = f"{RUN}_{next(_counter)}"
    with _connect() as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield schema
    with _connect() as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """One empty database of the backend under test, as a sink URL."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    schema: str = request.getfixturevalue("pg_schema")
    return schema_url(schema)


@pytest.fixture
def make_sink(db_url: str) -> Iterator[SinkFactory]:
    """Sinks on the test's database (as many as a test wants: one per worker, say)."""
    opened: list[SqlSink] = []

    def make(*, migrate: bool = True, **options: Any) -> SqlSink:
        sink: SqlSink
        if db_url.startswith("sqlite:"):
            sink = SqliteSink.from_url(db_url, **options)
        else:
            sink = PostgresSink(db_url, **options)
        opened.append(sink)
        if migrate:
            sink.migrate()
        return sink

    yield make
    for sink in opened:
        sink.close()


@pytest.fixture
def sink(make_sink: SinkFactory) -> SqlSink:
    return make_sink(forwarders=["test-forwarder"])
