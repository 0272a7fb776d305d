"""Wall time and peak RSS of `consumer check` rejecting each pathological configuration.

    python -m bench.bench_config_limits [--rounds 5]

The configurations are those of tests/hostile/test_config_limits.py (a merge-key bomb, billion
laughs, 55 MB of queues, deep nesting, a 50 MB scalar, too many queues or queue files, a large
conf.d, a secret read from /dev/zero). The reference is the strongest plain case: `consumer
check` on the shipped config/local.yaml, a valid file, which costs what starting the command
costs; `load_config` is the loading alone, timed in this process. Rounds are interleaved (every
configuration once per round), so a busy machine weighs on all of them alike. Target: each
rejected in under 2 s and under 200 MB; the exit status is 1 when a median misses it. Last, the
CPU cost of one duration value ending in 10k and in 100k spaces and a stray letter (once
quadratic): linear means about 10 times as much for 10 times the spaces.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from consumer.config.fields import parse_duration
from consumer.config.load import load_config
from consumer.errors import ConfigError
from tests.hostile.config_bombs import BOMBS

TARGET_SECONDS = 2.0
TARGET_MB = 200.0
REFERENCE = Path(__file__).resolve().parent.parent / "config" / "local.yaml"


# Runs the command and prints its wall seconds and peak RSS. A process forked from this one
# would report this one's RSS as its own peak (Linux keeps the maximum across fork and exec);
# a child of this small launcher starts from the launcher's few megabytes instead.
_LAUNCHER = """
import resource, subprocess, sys, time
started = time.perf_counter()
status = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
wall = time.perf_counter() - started
print(wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, status)
"""


def run_check(path: Path) -> tuple[float, float, int]:
    """Wall seconds, peak RSS in MB and exit status of one `consumer check -c PATH`."""
    command = [sys.executable, "-m", "consumer", "check", "-c", str(path)]
    done = subprocess.run(
        [sys.executable, "-S", "-c", _LAUNCHER, *command],
        capture_output=True,
        text=True,
        check=False,
    )
    wall, peak_kib, status = done.stdout.split()
    return float(wall), int(peak_kib) / 1024, int(status)


def run_load(path: Path) -> float:
    """Seconds of `load_config` alone, in this process: the rejection without the start-up."""
    started = time.perf_counter()
    with contextlib.suppress(ConfigError):
        load_config(path)
    return time.perf_counter() - started


def duration_ms(spaces: int, rounds: int) -> float:
    """Median CPU ms of parsing `1`, `spaces` spaces and an `x` (refused) as a duration."""
    text = "1" + " " * spaces + "x"
    costs = []
    for _ in range(rounds):
        started = time.process_time()
        with contextlib.suppress(ValueError):
            parse_duration(text)
        costs.append((time.process_time() - started) * 1000)
    return statistics.median(costs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-config-") as scratch:
        cases: dict[str, Path] = {"reference (valid local.yaml)": REFERENCE}
        for name, make in BOMBS.items():
            directory = Path(scratch) / name
            directory.mkdir()
            cases[name], _ = make(directory)
        walls: dict[str, list[float]] = {name: [] for name in cases}
        peaks: dict[str, list[float]] = {name: [] for name in cases}
        statuses: dict[str, set[int]] = {name: set() for name in cases}
        loads: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, path in cases.items():
                wall, peak, status = run_check(path)
                walls[name].append(wall)
                peaks[name].append(peak)
                statuses[name].add(status)
                loads[name].append(run_load(path))
    print(
        f"consumer check, {args.rounds} interleaved rounds, {os.cpu_count()} CPUs; "
        f"target: rejected in < {TARGET_SECONDS:g} s and < {TARGET_MB:g} MB"
    )
    print(
        f"{'configuration':<30}{'wall median':>12}{'min-max':>16}{'over reference':>16}"
        f"{'load_config':>13}{'peak RSS MB':>13}  exit  ok"
    )
    missed = 0
    baseline = statistics.median(next(iter(walls.values())))
    for name in cases:
        median = statistics.median(walls[name])
        peak = max(peaks[name])
        exits = ",".join(str(s) for s in sorted(statuses[name]))
        reference = name.startswith("reference")
        ok = median < TARGET_SECONDS and peak < TARGET_MB and (reference or exits == "1")
        missed += not ok
        spread = f"{min(walls[name]):.2f}-{max(walls[name]):.2f} s"
        print(
            f"{name:<30}{median:>10.2f} s{spread:>16}{median - baseline:>+14.2f} s"
            f"{statistics.median(loads[name]) * 1000:>10.0f} ms"
            f"{peak:>13.1f}  {exits:>4}  "
            f"{'yes' if ok else 'NO'}"
        )
    small, large = duration_ms(10_000, args.rounds), duration_ms(100_000, args.rounds)
    print(
        f"a duration with trailing spaces, CPU median: 10k spaces {small:.2f} ms, "
        f"100k spaces {large:.2f} ms ({large / small:.1f}x for 10x)"
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
