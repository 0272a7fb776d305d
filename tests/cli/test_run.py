"""`consumer run`'s start-up failures: each exits non-zero with a message naming what is wrong.

(The runs that start are in test_run.py, as real subprocesses.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from consumer.cli import main

QUEUE = """queues:
  - name: vms
    source: http
    format: aliyun.voice_report
    http: {path: /push/vms}
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "consumer.yaml"
    path.write_text(text)
    return str(path)


def test_run_is_a_registered_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--queue NAME" in out
    assert "--drain-timeout SECONDS" in out


def test_an_invalid_configuration_exits_78_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a queue with an unknown key
    path = write(tmp_path, QUEUE + "    colour: blue\n")
    # When the daemon is started on it
    code = main(["run", "-c", path])
    # Then it refuses with EX_CONFIG (the unit's RestartPreventExitStatus) and names the key
    assert code == 78
    assert "queues[0].colour" in capsys.readouterr().err


def test_an_unknown_queue_name_exits_78(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, QUEUE)
    assert main(["run", "-c", path, "--queue", "vms", "--queue", "nope"]) == 78
    assert "--queue nope: no such queue" in capsys.readouterr().err


def test_an_unusable_database_exits_78_before_any_worker_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sink = f'sink: {{url: "sqlite:///{tmp_path}/missing/events.db"}}\n'
    code = main(["run", "-c", write(tmp_path, sink + QUEUE)])
    assert code == 78
    err = capsys.readouterr().err
    assert "sink.url" in err
    assert "worker started" not in err


def test_drain_timeout_must_be_a_positive_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, QUEUE)
    assert main(["run", "-c", path, "--drain-timeout", "0"]) == 2
    assert "must be more than 0" in capsys.readouterr().err
    monkeypatch.setenv("CONSUMER_DRAIN_TIMEOUT", "soon")
    assert main(["run", "-c", path]) == 78
    assert "CONSUMER_DRAIN_TIMEOUT: not a number of seconds: 'soon'" in capsys.readouterr().err
