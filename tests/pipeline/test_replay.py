"""`consumer dead-letters list|replay`: quarantined messages pushed through again."""

from __future__ import annotations

import base64
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from consumer.cli import main
from consumer.cli.dead_letters import format_table
from consumer.config.load import load_config
from consumer.config.model import Config
from consumer.pipeline.replay import replay
from consumer.sinks import open_sink
from consumer.sinks.base import DeadLetter, Sink
from tests.conformance import bodies
from tests.conformance.sink_double import FaultySink, SinkDouble

SEEN = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)


def write_config(tmp_path: Path, queue: str = "vms") -> Path:
    path = tmp_path / "consumer.yaml"
    path.write_text(
        f"""
sink:
  url: sqlite:///{tmp_path}/events.db
queues:
  - name: {queue}
    source: http
    format: aliyun.voice_report
    http: {{path: /push/vms}}
    retry: {{attempts: 2, initial: 1ms, max: 1ms, total: 1s}}
""",
        encoding="utf-8",
    )
    return path


def letter(message_id: str, payload: bytes, reason: str = "normalizer_error") -> DeadLetter:
    return DeadLetter(
        "vms", message_id, reason, "aliyun.voice_report: KeyError: 'x'", payload, 3, SEEN
    )


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path)


@pytest.fixture
def sink(config_path: Path) -> Sink:
    sink = open_sink(load_config(config_path).sink)
    sink.migrate()
    return sink


def quarantine(sink: Sink, *letters: DeadLetter) -> dict[str, int]:
    sink.store([], letters)
    return {row.message_id: row.id for row in sink.dead_letters()}


def event_rows(tmp_path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(tmp_path / "events.db") as db:
        return list(db.execute("SELECT call_id, queue, message_id FROM call_events"))


def test_replay_stores_what_now_parses_and_keeps_what_still_fails(
    tmp_path: Path, config_path: Path, sink: Sink, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a receipt quarantined by a (since fixed) format bug, and a body that is not JSON
    ids = quarantine(
        sink, letter("m-good", bodies.voice_report(1)), letter("m-bad", bodies.NOT_JSON)
    )
    # When every dead letter is replayed
    status = main(["dead-letters", "replay", "-c", str(config_path)])
    out = capsys.readouterr().out
    # Then the receipt is stored under its queue and message id, and its letter removed
    assert status == 0
    assert event_rows(tmp_path) == [(bodies.call_id(1), "vms", "m-good")]
    (kept,) = sink.dead_letters()
    # And the bad body stays, with the new reason and error and one more attempt
    assert kept.id == ids["m-bad"]
    assert kept.reason == "not_json"
    assert "Expecting value" in kept.error
    assert kept.attempts == 4
    assert kept.payload == bodies.NOT_JSON
    assert f"#{ids['m-good']} vms m-good: stored (1 events), removed" in out
    assert f"#{ids['m-bad']} vms m-bad: still fails, kept: " in out
    assert "replayed 2: 1 stored, 1 still failing, 0 kept for later" in out


def test_replay_by_id_touches_only_those(
    tmp_path: Path, config_path: Path, sink: Sink, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = quarantine(
        sink, letter("m-1", bodies.voice_report(1)), letter("m-2", bodies.voice_report(2))
    )
    status = main(["dead-letters", "replay", "-c", str(config_path), "--id", str(ids["m-2"])])
    assert status == 0
    assert [row[2] for row in event_rows(tmp_path)] == ["m-2"]
    assert [row.message_id for row in sink.dead_letters()] == ["m-1"]


def test_an_unknown_id_is_named_and_fails(
    config_path: Path, sink: Sink, capsys: pytest.CaptureFixture[str]
) -> None:
    quarantine(sink, letter("m-1", bodies.voice_report(1)))
    status = main(["dead-letters", "replay", "-c", str(config_path), "--id", "999"])
    assert status == 1
    assert "#999: no dead letter with this id" in capsys.readouterr().err
    assert len(sink.dead_letters()) == 1


def test_a_letter_of_a_queue_no_longer_configured_is_kept(
    tmp_path: Path, sink: Sink, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a letter of queue "vms" and a configuration that only has "other"
    quarantine(sink, letter("m-1", bodies.voice_report(1)))
    other = write_config(tmp_path, queue="other")
    # When it is replayed
    status = main(["dead-letters", "replay", "-c", str(other)])
    # Then it is kept, saying why, and the command fails
    assert status == 1
    assert "queue 'vms' is not in the configuration" in capsys.readouterr().out
    assert len(sink.dead_letters()) == 1


def test_a_database_outage_keeps_every_letter_unchanged(config_path: Path) -> None:
    # Given quarantined letters and a database that is down
    config: Config = load_config(config_path)
    double = SinkDouble()
    double.store([], [letter("m-1", bodies.voice_report(1))])
    faulty = FaultySink(double, outage=True)
    # When they are replayed
    report = replay(config, faulty)
    # Then nothing was stored or removed, and the report says so
    assert not report.ok
    assert [why for _, why in report.kept] == ["TransientError: database is down (injected outage)"]
    (row,) = double.dead_letters()
    assert (row.reason, row.attempts) == ("normalizer_error", 3)
    assert double.events == {}


def test_list_shows_one_line_per_letter(
    config_path: Path, sink: Sink, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = quarantine(sink, letter("m-bad", bodies.NOT_UTF8, reason="not_utf8"))
    assert main(["dead-letters", "list", "-c", str(config_path)]) == 0
    header, line = capsys.readouterr().out.splitlines()
    assert header.split() == [
        "ID", "QUEUE", "REASON", "ATTEMPTS", "LAST_SEEN", "BYTES", "MESSAGE_ID", "ERROR"
    ]  # fmt: skip
    assert line.split()[:7] == [
        str(ids["m-bad"]), "vms", "not_utf8", "3", "2024-05-01T02:00:00Z",
        str(len(bodies.NOT_UTF8)), "m-bad",
    ]  # fmt: skip


def test_list_json_carries_the_raw_payload(
    config_path: Path, sink: Sink, capsys: pytest.CaptureFixture[str]
) -> None:
    quarantine(
        sink,
        letter("m-text", bodies.NOT_JSON, reason="not_json"),
        letter("m-bytes", bodies.NOT_UTF8, reason="not_utf8"),
    )
    assert main(["dead-letters", "list", "-c", str(config_path), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_id = {row["message_id"]: row for row in rows}
    assert base64.b64decode(by_id["m-bytes"]["payload_base64"]) == bodies.NOT_UTF8
    assert "payload_text" not in by_id["m-bytes"]
    assert by_id["m-text"]["payload_text"] == bodies.NOT_JSON.decode()
    assert by_id["m-text"]["first_seen"] == "2024-05-01T02:00:00Z"


def test_list_of_nothing_says_so(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dead-letters", "list", "-c", str(config_path)]) == 0
    assert capsys.readouterr().out.strip() == "no dead letters"
    assert format_table([]) == "no dead letters"


def test_a_bad_configuration_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["dead-letters", "list", "-c", str(missing)]) == 1
    assert f"{missing}: no such file or directory" in capsys.readouterr().err
