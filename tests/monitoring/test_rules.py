"""The alerting rules in monitoring/prometheus, checked and unit-tested by Debian's promtool.

`rules.test.yml` holds, for every alert, one case where it fires and one where it does not;
this test also makes sure no alert is left without both.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

PROMETHEUS = Path(__file__).parents[2] / "monitoring" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: run scripts/test-prereqs.sh (Debian package prometheus)"
    return subprocess.run(
        [tool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_rules_are_valid() -> None:
    checked = promtool("check", "rules", "rules.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_the_example_configuration_loads_the_rules() -> None:
    checked = promtool("check", "config", "prometheus.example.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "rules.yml" in checked.stdout  # the rule file was found and checked too


def test_every_alert_fires_and_stays_quiet_in_its_unit_tests() -> None:
    # Given the alerts of rules.yml and the cases of rules.test.yml
    rules = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    cases = yaml.safe_load((PROMETHEUS / "rules.test.yml").read_text())["tests"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in cases:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    # Then each alert has a firing and a quiet case
    assert firing == alerts
    assert quiet == alerts
    # And promtool passes them all
    tested = promtool("test", "rules", "rules.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
