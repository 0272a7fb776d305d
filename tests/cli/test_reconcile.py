"""`consumer calls overdue` and `consumer reconcile`, run as the command line runs them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from consumer.cli import main
from consumer.sinks.reconcile import CallStates
from consumer.sinks.sqlite import SqliteSink
from consumer.testing.fake_alicom import QUERY_CALL_DETAIL, FakeAlicomServer
from tests.reconcile.peers import AK, SK, VOICE_NOTICE, call_detail
from tests.reconcile.test_runner import intermediate, push
from tests.sinks.helpers import call_row


@pytest.fixture
def peer() -> Iterator[FakeAlicomServer]:
    with FakeAlicomServer(accounts={AK: SK}) as server:
        yield server


@pytest.fixture
def setup(tmp_path: Path, peer: FakeAlicomServer) -> Iterator[tuple[Path, SqliteSink]]:
    """A configuration on a SQLite file holding an overdue VMS call and an open Huawei call."""
    db = tmp_path / "events.db"
    config = tmp_path / "consumer.yaml"
    config.write_text(
        f"""\
sink: {{url: "sqlite:///{db}"}}
queues:
  - {{name: h, source: http, format: huawei.voice_call, http: {{path: /h}}}}
reconcile:
  aliyun_vms:
    access_key_id: {AK}
    access_key_secret: {SK}
    endpoint: {peer.endpoint}
    prod_ids: [{VOICE_NOTICE}]
""",
        encoding="utf-8",
    )
    sink = SqliteSink(db)
    sink.migrate()
    push(sink, intermediate("aliyun_vms", "vms-1"), intermediate("huawei_voice", "h-1"))
    CallStates(sink).mark_overdue("aliyun_vms", datetime.now(UTC))
    yield config, sink
    sink.close()


def test_calls_overdue_lists_the_calls_past_their_deadline(
    setup: tuple[Path, SqliteSink], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = setup
    # When listed as JSON, Then both calls appear: one marked overdue, one open past 7h
    assert main(["calls", "overdue", "-c", str(config), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["provider"], r["call_id"], r["state"]) for r in rows] == [
        ("aliyun_vms", "vms-1", "overdue"),
        ("huawei_voice", "h-1", "open"),
    ]
    assert rows[0]["last_event_at"] == "2024-05-01T02:00:03Z"
    # When listed as a table, Then it has a header, the calls and a count
    assert main(["calls", "overdue", "-c", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "PROVIDER",
        "CALL_ID",
        "STATE",
        "LAST_EVENT",
        "LAST_EVENT_AT",
        "SILENT",
    ]
    assert lines[1].split()[:3] == ["aliyun_vms", "vms-1", "overdue"]
    assert lines[-1] == "2 calls owed a final record"


def test_reconcile_dry_run_prints_and_stores_nothing(
    setup: tuple[Path, SqliteSink], peer: FakeAlicomServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config, sink = setup
    peer.add_call_detail("vms-1", VOICE_NOTICE, call_detail("vms-1"))
    # When reconciled with --dry-run
    assert main(["reconcile", "-c", str(config), "--dry-run"]) == 0
    out = capsys.readouterr().out
    # Then the record it would store is printed, and the call is unchanged
    assert out.startswith("aliyun_vms vms-1: would store {")
    assert json.loads(out.split("would store ", 1)[1])["extras"]["source"] == "reconcile"
    assert CallStates(sink).state("aliyun_vms", "vms-1") == "overdue"
    assert len(peer.actions(QUERY_CALL_DETAIL)) == 1


def test_reconcile_stores_what_the_api_returns(
    setup: tuple[Path, SqliteSink], peer: FakeAlicomServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config, sink = setup
    peer.add_call_detail("vms-1", VOICE_NOTICE, call_detail("vms-1"))
    # When the named calls are reconciled
    status = main(["reconcile", "-c", str(config), "--call", "vms-1", "--call", "h-1"])
    # Then the VMS call is final, the Huawei one is not asked (no API)
    assert status == 0
    out = capsys.readouterr().out
    assert "aliyun_vms vms-1: stored the final record (answered)" in out
    assert "huawei_voice h-1: no query API configured for huawei_voice, not asked" in out
    assert CallStates(sink).state("aliyun_vms", "vms-1") == "final"
    row = call_row(sink, "aliyun_vms", "vms-1")
    assert row is not None
    assert row["duration_seconds"] == 30


def test_reconcile_fails_with_the_reason(
    setup: tuple[Path, SqliteSink], peer: FakeAlicomServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = setup
    peer.answer_next(403, "Forbidden.RAM", "not authorized")
    # When the API refuses, Then the command fails with the reason; an unknown id is named too
    assert main(["reconcile", "-c", str(config), "--call", "vms-1", "--call", "nope"]) == 1
    err = capsys.readouterr().err
    assert "nope: no such call" in err
    assert "aliyun_vms vms-1: query failed (auth_error): Forbidden.RAM" in err
