"""Pathological configurations: `consumer check` rejects each with the limit it trips.

Each runs the real command in a subprocess, as an operator would (a hang or a crash would show
as a timeout or a traceback there). How fast and how small each rejection is, is for
bench/bench_config_limits.py to measure; here only what is said.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from consumer.config.limits import (
    MAX_DEPTH,
    MAX_NODES,
    MAX_QUEUES,
    LimitExceeded,
    _CLoader,
    _Loader,
    _run,
    compose,
)
from consumer.config.load import load_config
from tests.hostile.config_bombs import BOMBS, HEADER, merge_bomb, queue_yaml


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer", "check", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=300,  # a safety net against the hangs under test, not a speed assertion
        check=False,
    )


@pytest.mark.parametrize("make", BOMBS.values(), ids=BOMBS.keys())
def test_consumer_check_rejects_each_pathological_config_naming_the_limit(
    tmp_path: Path, make: Callable[[Path], tuple[Path, str]]
) -> None:
    # Given a pathological configuration
    path, limit = make(tmp_path)
    # When `consumer check` reads it
    done = check(path)
    # Then it fails with one clear line that names the file (or directory) and the limit
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    lines = done.stderr.splitlines()
    assert len(lines) == 1, lines[:5]
    assert lines[0].startswith(str(path)), lines[0]
    assert limit in lines[0], lines[0]
    assert done.stdout == ""


def test_a_config_at_the_queue_limit_is_valid(tmp_path: Path) -> None:
    # Given exactly as many queues as allowed
    path = tmp_path / "at-the-limit.yaml"
    path.write_text(
        HEADER + "queues:\n" + "".join(queue_yaml(n) for n in range(MAX_QUEUES)), encoding="utf-8"
    )
    # When it is loaded, Then every queue is there
    assert len(load_config(path).queues) == MAX_QUEUES


def test_aliases_count_as_what_they_stand_for(tmp_path: Path) -> None:
    # Given a document of three nodes under an anchor and two aliases to it
    text = "a: &x [1, 2]\nb: *x\nc: *x\n"
    # When it is composed, Then the count is that of the expanded document:
    # root, 3 keys, and three lists of three nodes each
    node, count = compose(text)
    assert node is not None
    assert count == 1 + 3 + 3 * 3


def test_a_recursive_merge_is_stopped_while_building(tmp_path: Path) -> None:
    # Given a mapping that merges itself, several times over
    path = tmp_path / "recursive-merge.yaml"
    path.write_text(HEADER + "a: &a {<<: [*a, *a, *a]}\nqueues: []\n", encoding="utf-8")
    # When `consumer check` reads it, Then it says so instead of recursing for ever
    done = check(path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "nested too deeply or too large (a recursive alias?)" in done.stderr


@pytest.mark.parametrize("loader", [_CLoader, _Loader], ids=["libyaml", "pure-python"])
def test_both_parsers_hold_the_same_limits(
    tmp_path: Path, loader: Callable[[str, int, int], Any]
) -> None:
    # Given the composer on libyaml's parser and on PyYAML's own
    assert loader is not None, "PyYAML without libyaml: reinstall the wheel"
    bomb = merge_bomb(tmp_path)[0].read_text(encoding="utf-8")
    deep = "x: " + "[" * 100 + "]" * 100 + "\n"
    # When each composes an ordinary document, a merge bomb and 100 nested lists
    # Then they count the same, and stop at the same limits
    assert _run(loader("a: &x [1, 2]\nb: *x\n", MAX_NODES, MAX_DEPTH))[1] == 1 + 2 + 2 * 3
    with pytest.raises(LimitExceeded, match="the node limit"):
        _run(loader(bomb, MAX_NODES, MAX_DEPTH))
    with pytest.raises(LimitExceeded, match="the depth limit"):
        _run(loader(deep, MAX_NODES, MAX_DEPTH))
