"""`consumer recordings list|retry` and `consumer check` of the `recordings:` section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consumer.cli import main
from consumer.sinks.recordings import RecordingTable
from consumer.sinks.sqlite import SqliteSink
from tests.archive.conftest import ready, store_events

CONFIG = """\
sink:
  url: sqlite:///{db}
queues:
  - name: push
    source: http
    format: huawei.privacy_number
    http: {{path: /push, auth: {{mode: none}}}}
recordings:
  store: file:///var/lib/consumer/recordings
  s3: null
  allow_hosts: ["*.aliyuncs.com", "127.0.0.1"]
  huawei_privacy:
    app_key: the-app-key
    app_secret: the-app-secret-value
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "consumer.yaml"
    path.write_text(CONFIG.format(db=tmp_path / "events.db"))
    return path


@pytest.fixture
def table(tmp_path: Path) -> RecordingTable:
    sink = SqliteSink(tmp_path / "events.db")
    sink.migrate()
    store_events(
        sink,
        [ready(f"c{i}", f"https://r.example.aliyuncs.com/{i}.mp3?Sig=s") for i in (1, 2, 3)],
    )
    table = RecordingTable(sink)
    claimed = {row.call_id: row for row in table.claim("test", now=1.0, lease=10.0, limit=3)}
    table.ended("test", claimed["c1"].id, "expired", "HTTP 404", 404)
    refusal = "host 'x' is not in recordings.allow_hosts"
    table.ended("test", claimed["c2"].id, "refused", refusal, None)
    table.release("test", [row.id for row in table.rows("pending")])
    return table


def test_check_shows_the_section_with_its_secret_masked(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the configuration is checked
    assert main(["check", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    # Then the section is printed, the secret masked
    assert "the-app-secret-value" not in out
    assert "app_secret: '***'" in out
    assert "max_bytes: 209715200" in out


def test_list_shows_every_row_or_one_status(
    config: Path, table: RecordingTable, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the rows are listed as a table
    assert main(["recordings", "list", "-c", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    # Then a header and one line per row, the link without its query
    assert lines[0].split()[:4] == ["ID", "PROVIDER", "CALL_ID", "STATUS"]
    assert len(lines) == 4
    assert not [line for line in lines if "Sig=" in line]
    # When only the expired ones are listed as JSON
    assert main(["recordings", "list", "-c", str(config), "--status", "expired", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # Then there is the one, with its reason
    assert [(r["call_id"], r["status"], r["last_error"]) for r in rows] == [
        ("c1", "expired", "HTTP 404")
    ]


def test_retry_puts_the_named_rows_back_and_names_unknown_ids(
    config: Path, table: RecordingTable, capsys: pytest.CaptureFixture[str]
) -> None:
    by_call = {row.call_id: row for row in table.rows()}
    expired, pending = by_call["c1"], by_call["c3"]
    # When a final row, a pending one and an unknown id are retried
    ids = ["--id", str(expired.id), "--id", str(pending.id), "--id", "99"]
    code = main(["recordings", "retry", "-c", str(config), *ids])
    captured = capsys.readouterr()
    # Then the final one is back in line, the pending one untouched, the unknown one named
    assert code == 1
    assert f"#{expired.id}: back in line" in captured.out
    assert f"#{pending.id}: not retried, it is pending" in captured.out
    assert "#99: no recording with this id" in captured.err
    assert {r.call_id: r.status for r in table.rows()} == {
        "c1": "pending",
        "c2": "refused",
        "c3": "pending",
    }
    # When everything is retried, Then the refused one follows
    assert main(["recordings", "retry", "-c", str(config)]) == 0
    assert {r.status for r in table.rows()} == {"pending"}


def test_a_bad_configuration_is_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a recordings section with a bad store
    path = tmp_path / "bad.yaml"
    path.write_text(CONFIG.format(db=tmp_path / "e.db").replace("file:///var", "ftp://var"))
    # When listed, Then exit 1 naming the key path
    assert main(["recordings", "list", "-c", str(path)]) == 1
    assert "recordings.store" in capsys.readouterr().err
