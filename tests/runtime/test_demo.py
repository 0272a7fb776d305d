"""`consumer demo`: the daemon on the bundled emulators and the packaged sample messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from consumer.formats import FORMAT_NAMES
from consumer.runtime.demo import COLUMNS, load_samples, render_table

PROVIDERS = ("aliyun_vms", "aliyun_outbound_bot", "huawei_voice", "huawei_privacy", "moor7")


def test_the_samples_ship_inside_the_package_for_every_format() -> None:
    # When the demo lists its samples (importlib.resources, as an installed wheel would)
    samples = load_samples()
    # Then every format has some, each non-empty, and tests/formats reads the same files
    assert {sample.format for sample in samples} == set(FORMAT_NAMES)
    assert all(sample.body for sample in samples)
    tests_copy = Path(__file__).parents[1] / "formats" / "samples"
    assert tests_copy.resolve() == (Path(__file__).parents[2] / "consumer/testing/samples")


@pytest.mark.timeout(120)
def test_demo_stores_every_provider_and_prints_the_calls(tmp_path: Path) -> None:
    # Given a clean environment (HOME elsewhere: nothing may be written there)
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    # When `consumer demo` runs
    done = subprocess.run(
        [sys.executable, "-m", "consumer", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    # Then it exits 0 after a clean stop of the daemon
    assert done.returncode == 0, done.stderr
    assert "daemon stopped cleanly" in done.stderr
    lines = done.stdout.splitlines()
    # And the calls table has a header and rows of every provider
    assert lines[0].startswith("calls (")
    assert lines[1].split()[:3] == ["provider", "call_id", "outcome"]
    table = lines[3 : lines.index("")]
    assert {row.split()[0] for row in table} == set(PROVIDERS)
    assert int(lines[0].split("(")[1].split()[0]) == len(table)
    # And the pipeline's counts: events from every provider, the one invalid sample quarantined
    events = next(line for line in lines if line.startswith("call_events:"))
    assert all(provider in events for provider in PROVIDERS)
    assert "dead_letters: 1 (moor7-event: not_json x1)" in lines
    # And the HOME it was given holds nothing the demo left behind
    assert list(tmp_path.iterdir()) == []


def test_render_table_cuts_long_values_and_shows_times_without_zone() -> None:
    # Given one row with a long call id, a UTC time and missing values
    row: list[object] = [None] * len(COLUMNS)
    row[0] = "huawei_voice"
    row[1] = "1201_612_4294967295_20190124030424@callenabler245.huaweicaas.com"
    row[5] = "2019-01-24T03:04:24Z"
    # When it is rendered
    lines = render_table([row]).splitlines()
    # Then the id is cut to its column, the time is readable and missing values show as -
    cells = lines[2].split()
    assert cells[1] == "1201_612_4294967295_2019012…"
    assert "2019-01-24 03:04:24" in lines[2]
    assert cells[2] == "-"
    assert len(lines[1].split()) == len(COLUMNS)
