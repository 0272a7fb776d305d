"""A captured Huawei AK/SK push, replayed against the real daemon (`consumer run`).

The signature covers the nonce and `Created`, not the body, so what refuses a replay (with the
same or a forged body) is the nonce: remembered in the database with the request's events, it
holds across a restart and at every daemon on the same PostgreSQL. A refused replay is 401 and
stores nothing, not even a dead letter.
"""

from __future__ import annotations

import http.client
import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from consumer.sources.http_auth import sign_huawei
from tests.runtime.helpers import Start, free_port, started_daemons
from tests.sinks.conftest import POSTGRES, schema_url

pytestmark = pytest.mark.timeout(120)

APP_KEY = "ka4k3nAppKeyYnEm2"
APP_SECRET = "s3cret-for-the-replay-tests"
PATH = "/push/huawei/privacy"
BEIJING = timedelta(hours=8)


@pytest.fixture
def start() -> Iterator[Start]:
    """Starts daemons; any still running when the test ends (it failed) is killed."""
    yield from started_daemons()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh schema on the test PostgreSQL, as a sink URL."""
    schema = f"hostile_replay_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    yield schema_url(schema)
    with psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def write_config(path: Path, sink_url: str, port: int) -> Path:
    path.write_text(
        f"""
log: {{level: info, format: json}}
sink: {{url: "{sink_url}"}}
http: {{listen: "127.0.0.1:{port}"}}
queues:
  - name: privacy
    source: http
    format: huawei.privacy_number
    http:
      path: {PATH}
      auth: {{mode: huawei_aksk, app_key: {APP_KEY}, app_secret: {APP_SECRET}, max_skew: 5m}}
"""
    )
    return path


def disconnect(session: str) -> bytes:
    """A Private Number call event whose call id is `session`."""
    return json.dumps(
        {
            "eventType": "disconnect",
            "statusInfo": {
                "sessionId": session,
                "timestamp": "2026-12-03 02:30:22",
                "caller": "+8613800000022",
                "called": "+8613800007021",
                "stateCode": 0,
                "stateDesc": "The user releases the call.",
            },
        }
    ).encode()


def signed(created: str, nonce: str | None = None) -> dict[str, str]:
    return sign_huawei(
        "X-AKSK", APP_KEY, APP_SECRET, nonce=nonce or uuid.uuid4().hex, created=created
    )


def post(port: int, body: bytes, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            "POST", PATH, body=body, headers={**headers, "Content-Type": "application/json"}
        )
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def utc_z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sqlite_rows(db: Path) -> tuple[list[str], int, list[float]]:
    """Stored call ids, the number of dead letters, and the remembered nonces' expiries."""
    with sqlite3.connect(db) as conn:
        calls = [row[0] for row in conn.execute("SELECT call_id FROM call_events")]
        letters = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        expiries = [row[0] for row in conn.execute("SELECT expires_at FROM push_nonces")]
    return calls, int(letters), expiries


def pg_rows(url: str) -> tuple[list[str], int]:
    with psycopg.connect(url) as conn:
        calls: list[Any] = conn.execute("SELECT call_id FROM call_events").fetchall()
        letters: Any = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
    return [row[0] for row in calls], int(letters[0])


def test_a_push_signed_in_beijing_time_is_refused_again_after_a_restart(
    tmp_path: Path, start: Start
) -> None:
    # Given the daemon on SQLite and a push signed with Beijing time mislabelled `Z` (as one
    # Huawei page describes it), accepted as fresh
    db = tmp_path / "events.db"
    port = free_port()
    config = write_config(tmp_path / "consumer.yaml", f"sqlite:///{db}", port)
    daemon = start(config, tmp_path)
    headers = signed(utc_z(datetime.now(UTC) + BEIJING))
    original = disconnect("session-original@callenabler.test")
    assert post(port, original, headers) == 200
    # When the daemon restarts (its memory of nonces is gone) and the captured request is
    # replayed: once as it was, once with a forged body under the same headers
    assert daemon.stop() == 0
    start(config, tmp_path)
    same = post(port, original, headers)
    forged = post(port, disconnect("session-forged@callenabler.test"), headers)
    # Then both are refused, and only the original is stored
    assert (same, forged) == (401, 401)
    calls, letters, expiries = sqlite_rows(db)
    assert calls == ["session-original@callenabler.test"]
    assert letters == 0
    # And the nonce is remembered until the UTC reading of its `Created` has passed too, so the
    # same headers are not taken 8 hours on either
    assert len(expiries) == 1
    assert expiries[0] >= time.time() + BEIJING.total_seconds() - 60


@pytest.mark.postgres
def test_a_replay_at_a_second_daemon_on_the_same_postgresql_is_refused(
    tmp_path: Path, start: Start, pg_url: str
) -> None:
    # Given two daemons on one PostgreSQL schema, and a push stored through the first
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first_dir.mkdir()
    second_dir.mkdir()
    first_port, second_port = free_port(), free_port()
    start(write_config(first_dir / "consumer.yaml", pg_url, first_port), first_dir)
    start(write_config(second_dir / "consumer.yaml", pg_url, second_port), second_dir)
    headers = signed(utc_z(datetime.now(UTC)))
    original = disconnect("session-original@callenabler.test")
    assert post(first_port, original, headers) == 200
    # When the captured request is replayed at the second daemon, as it was and with a forged
    # body
    same = post(second_port, original, headers)
    forged = post(second_port, disconnect("session-forged@callenabler.test"), headers)
    # Then both are refused and nothing of them is stored
    assert (same, forged) == (401, 401)
    assert pg_rows(pg_url) == (["session-original@callenabler.test"], 0)
    # And a freshly signed push still goes through the second daemon
    fresh = disconnect("session-fresh@callenabler.test")
    assert post(second_port, fresh, signed(utc_z(datetime.now(UTC)))) == 200
    assert sorted(pg_rows(pg_url)[0]) == [
        "session-fresh@callenabler.test",
        "session-original@callenabler.test",
    ]


def test_created_is_fresh_only_around_the_instant_it_denotes(tmp_path: Path, start: Start) -> None:
    # Given the daemon with a 5-minute window
    db = tmp_path / "events.db"
    port = free_port()
    start(write_config(tmp_path / "consumer.yaml", f"sqlite:///{db}", port), tmp_path)
    now = datetime.now(UTC)
    beijing = now.astimezone(UTC) + BEIJING
    # When Beijing wall-clock time is sent without a zone (read as UTC, as every zone-less
    # Huawei time is) or with +08:00 but 8 hours off, or with +08:00 ten minutes old
    zone_less = beijing.strftime("%Y-%m-%dT%H:%M:%S")
    shifted = (beijing + BEIJING).strftime("%Y-%m-%dT%H:%M:%S+08:00")
    stale = (beijing - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S+08:00")
    refused = [
        post(port, disconnect(f"session-{n}@callenabler.test"), signed(created))
        for n, created in enumerate((zone_less, shifted, stale))
    ]
    # Then each is refused, while the same instant written with +08:00 passes
    assert refused == [401, 401, 401]
    right = beijing.strftime("%Y-%m-%dT%H:%M:%S+08:00")
    assert post(port, disconnect("session-right@callenabler.test"), signed(right)) == 200
    assert sqlite_rows(db)[:2] == (["session-right@callenabler.test"], 0)
