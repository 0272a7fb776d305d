"""End to end: `consumer run` reconciles calls owed a final record against the local POP peer.

Pushes arrive over HTTP as in production; the reconciler runs in the daemon's listener with
deadlines of seconds, and asks the signature-checking peer through the real Aliyun SDKs.
"""

from __future__ import annotations

import http.client
import json
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from consumer.reconcile.rules import SHANGHAI
from consumer.testing.fake_alicom import DESCRIBE_JOB, QUERY_CALL_DETAIL, FakeAlicomServer
from tests.reconcile.peers import AK, INSTANCE, JOB, SK, VOICE_NOTICE
from tests.runtime.helpers import (
    POSTGRES,
    Daemon,
    free_port,
    get,
    postgres_schema,
    started_daemons,
    wait_until,
)

pytestmark = pytest.mark.timeout(180)

DEADLINES = "{aliyun_vms: 2s, aliyun_outbound_bot: 2s, huawei_voice: 2s, huawei_privacy: 2s,"
DEADLINES += " moor7: 2s}"


@pytest.fixture
def peer() -> Iterator[FakeAlicomServer]:
    with FakeAlicomServer(accounts={AK: SK}) as server:
        yield server


@pytest.fixture
def start() -> Iterator[Callable[[Path, Path], Daemon]]:
    yield from started_daemons()


def config(path: Path, url: str, port: int, peer: FakeAlicomServer, give_up: str) -> Path:
    path.write_text(
        f"""
log: {{level: info, format: json}}
sink: {{url: "{url}"}}
http: {{listen: "127.0.0.1:{port}"}}
queues:
  - {{name: vms-calls, source: http, format: aliyun.voice_call_report, http: {{path: /vms/calls}}}}
  - {{name: vms-cdr, source: http, format: aliyun.voice_report, http: {{path: /vms/cdr}}}}
  - {{name: bot, source: http, format: aliyun.outbound_bot, http: {{path: /bot}}}}
reconcile:
  every: 500ms
  give_up_after: {give_up}
  deadlines: {DEADLINES}
  aliyun_vms:
    access_key_id: {AK}
    access_key_secret: {SK}
    endpoint: {peer.endpoint}
    prod_ids: [{VOICE_NOTICE}]
  aliyun_outbound_bot:
    access_key_id: {AK}
    access_key_secret: {SK}
    endpoint: {peer.endpoint}
"""
    )
    return path


def post(port: int, path: str, body: dict[str, Any]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        payload = json.dumps(body, ensure_ascii=False).encode()
        conn.request("POST", path, body=payload, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status
    finally:
        conn.close()


def wall(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


def ringing(call_id: str, at: datetime) -> dict[str, Any]:
    """VoiceCallReport: the callee's phone rings (an intermediate event)."""
    return {"status_code": "200201", "status_time": wall(at), "call_id": call_id}


def detail(call_id: str, at: datetime) -> dict[str, Any]:
    """What QueryCallDetailByCallId knows of a call that rang at `at`: busy, no talk time."""
    return {
        "callId": call_id,
        "caller": "0571000****",
        "callee": "1380000****",
        "gmtCreate": wall(at),
        "bRingTime": wall(at),
        "startDate": wall(at),
        "endDate": wall(at + timedelta(seconds=5)),
        "duration": 0,
        "state": "200002",
        "stateDesc": "用户忙",
    }


def states(path: Path) -> dict[str, tuple[str, str | None, int | None, str | None]]:
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT call_id, state, outcome, duration_seconds, ended_at FROM calls"
        ).fetchall()
    return {row[0]: (row[1], row[2], row[3], row[4]) for row in rows}


def last_pass(path: Path) -> float:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT last_pass_at FROM reconcile_state").fetchall()
    return float(rows[0][0]) if rows else 0.0


def metric_lines(port: int, prefix: str) -> set[str]:
    status, text = get(port, "/metrics", timeout=10)
    assert status == 200
    return {line for line in text.splitlines() if line.startswith(prefix)}


def test_the_daemon_fetches_what_is_owed_and_gives_up_on_the_unknown(
    tmp_path: Path, peer: FakeAlicomServer, start: Callable[[Path, Path], Daemon]
) -> None:
    db = tmp_path / "events.db"
    port = free_port()
    path = config(tmp_path / "consumer.yaml", f"sqlite:///{db}", port, peer, give_up="10s")
    daemon = start(path, tmp_path)
    now = datetime.now(UTC).replace(microsecond=0)
    # Given the provider knows the record of one VMS call and the task of one bot call
    peer.add_call_detail("vms-owed", VOICE_NOTICE, detail("vms-owed", now))
    peer.add_job(
        INSTANCE,
        {
            "JobId": JOB,
            "Status": "Succeeded",
            "Tasks": [
                {
                    "TaskId": "task-1",
                    "CallId": "bot-owed",
                    "Status": "NoAnswer",
                    "ActualTime": int(now.timestamp() * 1000),
                    "EndTime": int(now.timestamp() * 1000) + 20_000,
                    "CalledNumber": "1380000****",
                    "Duration": 0,
                }
            ],
        },
    )
    # When a VMS call rings but its VoiceReport never comes, another the provider never knows
    # rings, a third has its VoiceReport pushed, and a bot call is dialled without its end
    post(port, "/vms/calls", ringing("vms-owed", now))
    post(port, "/vms/calls", ringing("vms-ghost", now))
    post(port, "/vms/calls", ringing("vms-pushed", now))
    post(
        port,
        "/vms/cdr",
        {
            "call_id": "vms-pushed",
            "ring_time": wall(now),
            "end_time": wall(now + timedelta(seconds=3)),
            "status_code": "200003",
            "duration": "0",
        },
    )
    dialing_ms = int(now.timestamp() * 1000)
    post(
        port,
        "/bot",
        {
            "eventType": "Dialing",
            "eventTime": dialing_ms,
            "instanceId": INSTANCE,
            "id": JOB,
            "status": "Executing",
            "tasks": [{"id": "task-1", "callId": "bot-owed", "actualTime": dialing_ms}],
        },
    )
    # Then after their deadline the owed calls are fetched: final with the provider's outcome,
    # times (Asia/Shanghai to UTC) and duration
    try:
        wait_until(
            lambda: (
                states(db).get("vms-owed", ("",))[0] == "final"
                and states(db).get("bot-owed", ("",))[0] == "final"
            ),
            60,
            "the owed calls to become final",
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; {states(db)}; log:\n{daemon.log_text()}") from None
    found = states(db)
    ended = (now + timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S")
    assert found["vms-owed"][:3] == ("final", "busy", 0)
    assert str(found["vms-owed"][3]).startswith(ended)
    assert found["bot-owed"][:3] == ("final", "no_answer", 0)
    # And the unknown call is lost after give_up_after, then no longer asked for
    wait_until(lambda: states(db)["vms-ghost"][0] == "lost", 60, "the unknown call to be lost")
    asked = len([r for r in peer.actions(QUERY_CALL_DETAIL) if r.params["CallId"] == "vms-ghost"])
    assert asked >= 1
    seen = last_pass(db)
    wait_until(lambda: last_pass(db) > seen + 1.0, 30, "two more reconciler passes")
    calls = [r.params["CallId"] for r in peer.actions(QUERY_CALL_DETAIL)]
    assert calls.count("vms-ghost") == asked
    # And the call whose record was pushed was never asked for; each owed call once
    assert "vms-pushed" not in calls
    assert calls.count("vms-owed") == 1
    assert len(peer.actions(DESCRIBE_JOB)) == 1
    assert states(db)["vms-pushed"][:2] == ("final", "no_answer")
    # And /metrics has the reconciler's series, gauges for every provider
    gauges = metric_lines(port, "consumer_calls_open{")
    for provider in ("aliyun_vms", "aliyun_outbound_bot", "huawei_voice", "huawei_privacy"):
        assert f'consumer_calls_open{{provider="{provider}"}} 0.0' in gauges
    assert 'consumer_calls_overdue{provider="moor7"} 0.0' in metric_lines(port, "consumer_calls_")
    queries = metric_lines(port, "consumer_reconcile_queries_total")
    assert 'consumer_reconcile_queries_total{provider="aliyun_vms",result="found"} 1.0' in queries
    assert (
        'consumer_reconcile_queries_total{provider="aliyun_outbound_bot",result="found"} 1.0'
        in queries
    )
    lost = metric_lines(port, "consumer_calls_lost_total")
    assert lost == {'consumer_calls_lost_total{provider="aliyun_vms"} 1.0'} | {
        f'consumer_calls_lost_total{{provider="{provider}"}} 0.0'
        for provider in ("aliyun_outbound_bot", "huawei_voice", "huawei_privacy", "moor7")
    }
    assert daemon.stop() == 0


@pytest.fixture
def schema() -> Iterator[str]:
    yield from postgres_schema(f"reconcile_{os.getpid()}_{uuid.uuid4().hex[:6]}")


@pytest.mark.postgres
def test_two_daemons_on_one_postgresql_never_ask_for_a_call_at_once(
    tmp_path: Path, peer: FakeAlicomServer, schema: str, start: Callable[[Path, Path], Daemon]
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    url = f"{POSTGRES}?options=-csearch_path%3D{schema}"
    calls = [f"vms-{n}" for n in range(8)]
    # Given a peer that answers slowly (an overlap would show), with every call's record
    for call_id in calls:
        peer.add_call_detail(call_id, VOICE_NOTICE, detail(call_id, now))
    peer.set_query_delay(0.2)
    # And two daemons, as on two hosts, on one PostgreSQL database
    ports = [free_port(), free_port()]
    for index, port in enumerate(ports):
        workdir = tmp_path / f"host{index}"
        workdir.mkdir()
        start(config(workdir / "consumer.yaml", url, port, peer, give_up="1h"), workdir)
    # When overdue calls arrive through both
    for index, call_id in enumerate(calls):
        post(ports[index % 2], "/vms/calls", ringing(call_id, now))

    def final() -> int:
        with psycopg.connect(url, connect_timeout=5) as conn:
            return int(
                conn.execute("SELECT count(*) FROM calls WHERE state = 'final'").fetchone()[0]
            )

    wait_until(lambda: final() == len(calls), 90, "every call to become final")
    # Then each call was asked for exactly once, and never while another asked for it
    asked = [r.params["CallId"] for r in peer.actions(QUERY_CALL_DETAIL)]
    assert sorted(asked) == sorted(calls)
    assert peer.overlaps == []
