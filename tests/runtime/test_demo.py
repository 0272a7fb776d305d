"""`consumer demo`: the daemon on the bundled emulators and the packaged sample messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from consumer.formats import FORMAT_NAMES
from consumer.runtime.demo_report import COLUMNS, render_table
from consumer.runtime.demo_setup import load_samples

CALLS = {
    "aliyun_vms": "116012854210^102675412401",
    "aliyun_outbound_bot": "c8d9e0f1-2a3b-4c5d-8e9f-0a1b2c3d4e5f",
    "huawei_voice": "1201_800_4294967295_20261120020500@callenabler245.huaweicaas.com",
    "huawei_privacy": "1200_1900_4294967295_20261120031000@callenabler246.huaweicaas.com",
    "moor7": "512345678901234567",
}
"""The one call per provider the demo samples tell."""


def test_the_samples_ship_inside_the_package_for_every_format_unmasked() -> None:
    # When the demo lists its samples (importlib.resources, as an installed wheel would)
    samples = load_samples()
    # Then every format has some, each non-empty, none with a masked id or number
    assert {sample.format for sample in samples} == set(FORMAT_NAMES)
    assert all(sample.body for sample in samples)
    masked = [sample.name for sample in samples if b"***" in sample.body]
    assert masked == []
    # And the demo's samples are its own: the format tests read the documents' examples
    tests_copy = Path(__file__).parents[1] / "formats" / "samples"
    assert tests_copy.resolve() == (Path(__file__).parents[2] / "consumer/testing/samples")
    assert not {sample.name for sample in samples} & {p.name for p in tests_copy.iterdir()}


@pytest.mark.timeout(120)
def test_demo_stores_every_provider_and_prints_one_row_per_call(tmp_path: Path) -> None:
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
    # And the calls table has one row per call: each provider's call, its whole id unmasked,
    # merged from several events
    assert lines[0] == f"calls ({len(CALLS)} rows)"
    header = lines[1].split()
    assert header[0] == "provider"
    assert header[-1] == "call_id"
    table = [row.split() for row in lines[3 : lines.index("")]]
    assert {row[0]: row[-1] for row in table} == CALLS
    events = 7  # provider, outcome, caller, callee, started (a date and a time), talk s, events
    assert header[events + 1] == "events"  # the header has two words more before it
    assert all(int(row[events]) >= 4 for row in table), table
    assert all(row[1] == "answered" for row in table), table
    # And the pipeline's counts: events from every provider, the one invalid sample quarantined
    counts = next(line for line in lines if line.startswith("call_events:"))
    assert all(provider in counts for provider in CALLS)
    assert "dead_letters: 1 (moor7-event: not_json x1)" in lines
    # And a legend says what was shown
    assert "One row per call" in done.stdout
    assert lines[-1].endswith("kept in dead_letters with its raw bytes.")
    # And the HOME it was given holds nothing the demo left behind
    assert list(tmp_path.iterdir()) == []


def test_render_table_shows_ids_whole_and_times_without_zone() -> None:
    # Given one row with a long call id, a UTC time and missing values
    row: list[object] = [None] * len(COLUMNS)
    row[0] = "huawei_voice"
    row[4] = "2019-01-24T03:04:24Z"
    row[-1] = "1201_612_4294967295_20190124030424@callenabler245.huaweicaas.com"
    # When it is rendered
    lines = render_table([row]).splitlines()
    # Then the id is whole, the time is readable and missing values show as -
    cells = lines[2].split()
    assert cells[-1] == "1201_612_4294967295_20190124030424@callenabler245.huaweicaas.com"
    assert "2019-01-24 03:04:24" in lines[2]
    assert cells[1] == "-"
    assert len(lines[1].split()) == len(COLUMNS)
