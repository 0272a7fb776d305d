"""The systemd unit: `systemd-analyze verify` accepts it and its exposure is at most 2.0.

`systemd-analyze` comes with Debian's `systemd` package
(`apt-get install -y --no-install-recommends systemd`); these tests fail, not skip, without it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "consumer.service"
INSTALLED = "/opt/consumer/bin/consumer"


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing: apt-get install systemd"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60, check=False)


def test_unit_verifies(tmp_path: Path) -> None:
    # Given the unit, its ExecStart pointed at this checkout's console script (verify checks
    # that the binary exists; the unit expects the package installed in /opt/consumer)
    text = UNIT.read_text()
    assert f"ExecStart={INSTALLED} run -c ${{CONFIG}}" in text
    console_script = Path(sys.executable).parent / "consumer"
    unit = tmp_path / "consumer.service"
    unit.write_text(text.replace(INSTALLED, str(console_script)))
    # When systemd-analyze verifies it
    result = analyze("verify", str(unit))
    # Then it finds nothing to complain about
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_unit_exposure_is_at_most_two() -> None:
    result = analyze("security", "--offline=yes", "--no-pager", str(UNIT))
    match = re.search(r"Overall exposure level for consumer\.service: ([0-9.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    score = float(match.group(1))
    print(f"systemd-analyze security exposure of consumer.service: {score}")
    assert score <= 2.0


def test_unit_keeps_the_drain_deadline_below_the_stop_timeout() -> None:
    text = UNIT.read_text()
    stop = int(re.search(r"^TimeoutStopSec=(\d+)$", text, re.M).group(1))  # type: ignore[union-attr]
    example = (UNIT.parent / "consumer.env.example").read_text()
    drain = int(re.search(r"^CONSUMER_DRAIN_TIMEOUT=(\d+)$", example, re.M).group(1))  # type: ignore[union-attr]
    assert drain == 20
    assert stop > drain + 5
    for line in ("Type=notify", "DynamicUser=yes", "StateDirectory=consumer", "KillMode=mixed"):
        assert line in text.splitlines()
    assert "MemoryDenyWriteExecute" not in text.replace("No MemoryDenyWriteExecute", "")
