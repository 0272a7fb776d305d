"""One config-error printer and one exit-status policy for every command that reads a config."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from consumer.cli import main
from consumer.cli.common import positive_id

BAD = """queues:
  - name: vms
    source: http
    format: aliyun.voice_report
    http: {path: /push/vms}
    colour: blue
"""


@pytest.mark.parametrize(
    ("command", "status"),
    [
        (["check"], 1),
        (["recordings", "list"], 1),
        (["recordings", "retry"], 1),
        (["calls", "overdue"], 1),
        (["reconcile"], 1),
        (["dead-letters", "list"], 1),
        (["run"], 78),  # EX_CONFIG: systemd's RestartPreventExitStatus
    ],
)
def test_every_command_reports_a_config_error_the_same_way(
    command: list[str], status: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a configuration with an unknown key
    path = tmp_path / "consumer.yaml"
    path.write_text(BAD)
    # When a command reads it
    code = main([*command, "-c", str(path)])
    # Then it exits with the policy's status and prints `<file>: <key path>: <problem>` once
    assert code == status
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{path}: queues[0].colour: unknown key")
    assert len(err) == 1


def test_ids_are_positive_whole_numbers() -> None:
    parse = positive_id("recording")
    assert parse("7") == 7
    with pytest.raises(argparse.ArgumentTypeError, match="recording ids start at 1"):
        parse("0")
    with pytest.raises(argparse.ArgumentTypeError, match=r"not a recording id \(a number\)"):
        parse("seven")
