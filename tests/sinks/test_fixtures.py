"""The PostgreSQL fixtures themselves: a connection the server drops breaks no later test."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.sinks.conftest import POSTGRES


@pytest.mark.postgres
def test_a_connection_the_server_drops_breaks_neither_this_teardown_nor_later_fixtures(
    postgres_admin: psycopg.Connection[Any], pg_schema: str
) -> None:
    # Given the test's admin connection terminated by the server, as a restart terminates all
    with psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5) as other:
        other.execute("SELECT pg_terminate_backend(%s)", (postgres_admin.info.backend_pid,))
    with pytest.raises(psycopg.OperationalError):
        postgres_admin.execute("SELECT 1")
    # Then a fresh connection, as the next test's fixtures open, works and sees the schema
    # (whose teardown, like the admin connection's, runs on connections of its own)
    with psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5) as fresh:
        found = fresh.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname = %s", (pg_schema,)
        ).fetchall()
    assert found == [(pg_schema,)]
