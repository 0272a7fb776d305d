"""Following librocketmq's log file: from its end at the start, through rotation and truncation.

No librocketmq needed: the tailer reads a plain file written here in the client's line format.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from consumer.sources.remoting_log import LogTailer


def line(text: str, level: str = "error") -> bytes:
    return f"[2026-Dec-03 12:00:00.000000]({level}):{text}\n".encode()


def follow(path: Path, change: Callable[[], object]) -> list[tuple[str, str]]:
    """The lines the tailer hands on when `path` changes after it started following it."""
    seen: list[tuple[str, str]] = []
    tailer = LogTailer(path, lambda level, text: seen.append((level, text)))
    change()
    tailer.start()
    tailer.stop()  # its last read takes what the change wrote
    return seen


def test_lines_written_before_the_start_are_not_handed_on(tmp_path: Path) -> None:
    # Given a log file with lines of an earlier run, the last one still being written
    path = tmp_path / "rocketmq_client.log"
    path.write_bytes(line("old AclException") + b"[2026-Dec-03 12:00:00.0](error):half")

    # When the tailer starts there and the line is finished, then a new one written
    def append() -> None:
        with path.open("ab") as handle:
            handle.write(b" done\n" + line("new", "warning"))

    # Then only the new line is handed on
    assert follow(path, append) == [("warning", "new")]


@pytest.mark.parametrize("how", ["rotated", "truncated"])
def test_a_replaced_file_is_read_from_its_start_even_when_longer(tmp_path: Path, how: str) -> None:
    # Given a log file the tailer follows from its end
    path = tmp_path / "rocketmq_client.log"
    path.write_bytes(line("old"))
    fresh = [line(f"fresh {n}") for n in range(5)]

    # When it is rotated (a new file under its name) or truncated, and then written past the
    # old end before the tailer reads again
    def replace() -> None:
        if how == "rotated":
            os.replace(path, tmp_path / "rocketmq_client.log.1")
            path.write_bytes(b"".join(fresh))
        else:
            with path.open("r+b") as handle:
                handle.truncate(0)
                handle.write(b"".join(fresh))

    seen = follow(path, replace)
    # Then every line of the new content is handed on, the first ones included
    assert seen == [("error", f"fresh {n}") for n in range(5)]


def test_a_file_created_after_the_start_is_read_whole(tmp_path: Path) -> None:
    # Given no log file yet (the client's logger is created by the first start)
    path = tmp_path / "rocketmq_client.log"
    # When the client creates it
    seen = follow(path, lambda: path.write_bytes(line("first") + line("second", "info")))
    # Then all its lines are handed on
    assert seen == [("error", "first"), ("info", "second")]
