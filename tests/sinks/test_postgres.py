"""PostgreSQL specifics: a real outage through a TCP proxy that the test cuts and restores."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from consumer.config.model import SinkConfig
from consumer.errors import TransientError
from consumer.model import CallEvent
from consumer.sinks import migrations, open_sink
from consumer.sinks.postgres import PostgresSink
from consumer.testing.tcp_proxy import TcpProxy
from tests.sinks.conftest import POSTGRES, schema_url
from tests.sinks.scenarios import SCENARIOS, event, stored, with_call_id

NEWEST = migrations.load("postgres")[-1].version

pytestmark = pytest.mark.postgres


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    info = psycopg.conninfo.conninfo_to_dict(POSTGRES)
    with TcpProxy(str(info.get("host", "127.0.0.1")), int(str(info.get("port", 5432)))) as running:
        yield running


@pytest.fixture
def proxied(proxy: TcpProxy, pg_schema: str) -> Iterator[PostgresSink]:
    """A sink that reaches the database only through the proxy."""
    base = POSTGRES.replace(_host_port(POSTGRES), f"127.0.0.1:{proxy.port}")
    sink = PostgresSink(schema_url(pg_schema, base), connect_timeout=1, acquire_timeout=1.5)
    yield sink
    sink.close()


def _host_port(url: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    return f"{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}"


def _events_in(admin: psycopg.Connection[Any], schema: str) -> list[str]:
    rows = admin.execute(f'SELECT event_id FROM "{schema}".call_events').fetchall()
    return [row[0] for row in rows]


def _batch(n: int, size: int = 16) -> list[CallEvent]:
    return [
        event("call.ringing", "moor7", f"call-{n}-{k % 4}", k, provider_status=f"b{n}")
        for k in range(size)
    ]


def test_a_connection_cut_mid_transaction_commits_nothing(
    proxied: PostgresSink,
    proxy: TcpProxy,
    pg_schema: str,
    postgres_admin: psycopg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a migrated database reached through the proxy
    proxied.migrate()
    events = stored(SCENARIOS[0].events)
    # And the connection is cut right after the events were inserted, before the calls merge
    original = proxied._recompute_calls

    def cut_then_merge(*args: Any) -> None:
        proxy.cut()
        original(*args)

    monkeypatch.setattr(proxied, "_recompute_calls", cut_then_merge)
    # When the batch is stored, Then it is a TransientError
    with pytest.raises(TransientError):
        proxied.store(events, [])
    # And the events inserted before the cut were not committed
    assert _events_in(postgres_admin, pg_schema) == []
    # When the network is back, Then the same batch is stored in full by the same sink
    monkeypatch.undo()
    proxy.restore()
    proxied.store(events, [])
    assert len(_events_in(postgres_admin, pg_schema)) == len(SCENARIOS[0].events)


def test_an_outage_while_writes_flow(
    proxied: PostgresSink,
    proxy: TcpProxy,
    pg_schema: str,
    postgres_admin: psycopg.Connection[Any],
) -> None:
    # Given a writer that stores batches of 16 events, retrying a batch on TransientError
    proxied.migrate()
    batches = 40
    committed: list[int] = []
    transient: list[str] = []
    failures: list[BaseException] = []

    def writer() -> None:
        for n in range(batches):
            deadline = time.monotonic() + 30
            while True:
                try:
                    proxied.store(stored(_batch(n)), [])
                except TransientError as exc:
                    transient.append(str(exc))
                    if time.monotonic() > deadline:
                        failures.append(exc)
                        return
                    time.sleep(0.05)
                    continue
                except BaseException as exc:
                    failures.append(exc)
                    return
                committed.append(n)
                break

    thread = threading.Thread(target=writer)
    thread.start()
    _wait_until(lambda: len(committed) >= 5)
    # When the network to the database is cut while writes flow
    proxy.cut()
    _wait_until(lambda: len(transient) >= 2)
    # Then every batch is either all there or not there at all
    during = _events_in(postgres_admin, pg_schema)
    per_batch: dict[str, int] = {}
    for batch in range(batches):
        ids = {e.event_id for e in _batch(batch)}
        per_batch[str(batch)] = len(ids & set(during))
    assert set(per_batch.values()) <= {0, 16}
    # When the network comes back
    proxy.restore()
    thread.join(60)
    # Then the writer finished: the pool reconnected and every batch was stored once
    assert failures == []
    assert transient, "the outage was never noticed"
    assert sorted(committed) == list(range(batches))
    assert len(_events_in(postgres_admin, pg_schema)) == 16 * batches


def test_a_database_down_at_start_up_is_transient_until_it_is_back(
    proxied: PostgresSink, proxy: TcpProxy
) -> None:
    # Given the database unreachable when the worker starts
    proxy.cut()
    # When it migrates, Then that is a TransientError (the runtime retries), not a crash
    started = time.monotonic()
    with pytest.raises(TransientError):
        proxied.migrate()
    assert time.monotonic() - started < 10
    # When the database is reachable again, Then the same sink migrates and stores
    proxy.restore()
    _retry(proxied.migrate)
    proxied.store(stored(with_call_id(SCENARIOS[4].events, "after-outage")), [])
    assert proxied.schema_version() == NEWEST


def test_url_schema_option_keeps_tables_apart(
    pg_schema: str, postgres_admin: psycopg.Connection[Any]
) -> None:
    # Given a sink URL that selects a schema through options=-csearch_path
    sink = PostgresSink(schema_url(pg_schema))
    # When it migrates, Then the tables are created in that schema
    sink.migrate()
    sink.close()
    rows = postgres_admin.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1",
        (pg_schema,),
    ).fetchall()
    assert [row[0] for row in rows] == [
        "call_events",
        "calls",
        "dead_letters",
        "forward_state",
        "outbox",
        "push_nonces",
        "reconcile_state",
        "recordings",
        "schema_version",
    ]


def test_the_password_is_masked_in_repr() -> None:
    # Given a URL with a password, Then the sink's repr does not show it
    sink = PostgresSink("postgresql://user:s3cret@127.0.0.1:1/test")
    try:
        assert "s3cret" not in repr(sink)
    finally:
        sink.close()


def _wait_until(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def _retry(action: Any, timeout: float = 15.0) -> None:
    """Retry a TransientError like the pipeline does."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            action()
            return
        except TransientError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_open_sink_picks_postgres_for_a_postgresql_url(pg_schema: str) -> None:
    # Given a sink section with a PostgreSQL URL (either scheme libpq knows)
    for scheme in ("postgresql://", "postgres://"):
        url = schema_url(pg_schema).replace("postgresql://", scheme, 1)
        # When it is opened, Then it is a working PostgreSQL sink
        sink = open_sink(SinkConfig(url=url))
        try:
            assert isinstance(sink, PostgresSink)
            sink.migrate()
            assert sink.schema_version() == NEWEST
        finally:
            sink.close()
