"""The README's log documentation against real daemon output.

A real daemon (`consumer run`) serves an MNS queue (behind a TCP proxy the test cuts) and an
HTTP push queue. The test stores messages, pushes a poison body, locks the SQLite file for a
moment, cuts the broker, kills a worker and stops the daemon; then it checks, on the daemon's
own stderr:

- every event of the README's table (section "Events to alert on") was logged, at the
  documented level, with every documented key (the few the scenario cannot cause are listed
  in `NOT_PROVOKED`, and must at least be logged somewhere in consumer/);
- every example line of the README's "Logging" section has a real counterpart: the same
  keys, and the same level, logger, event, queue and worker;
- every line of a worker process names its worker, every pipeline line its queue, and the
  lines about one message its message_id.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.bodies import FORMAT, NOT_JSON, voice_report
from tests.runtime.helpers import Daemon, free_port, wait_until

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"
MNS_QUEUE = "Alicom-Queue-1234567890-VoiceReport"
PULL, PUSH = "vms-voice-report", "vms-push"

NOT_PROVOKED = {
    "queue keeps crashing: stopping": "needs a queue that crashes five times",
    "worker wedged: killing it": "needs a worker silent for a minute",
    "sink refused a message: quarantining it": "needs a value the database refuses",
    "database unavailable at start-up: retrying": "needs the database down at start-up",
    "drain deadline passed with work unfinished: it will be redelivered": "needs a stuck drain",
    "ack failed; committed messages will be redelivered and deduplicated": "needs a lost ack",
    "push refused: credentials": "needs a push queue with auth",
    "push answered 503: overloaded": "needs a flood of pushes",
    "sink unavailable: messages left for redelivery": "needs an outage past retry.total",
}
VOLATILE = {"timestamp", "message_id", "event_id", "call_id", "kind", "pid", "url", "error"}


@dataclass(frozen=True)
class Documented:
    event: str
    level: str
    logger: str
    keys: tuple[str, ...]


def documented_events() -> list[Documented]:
    """The rows of the README's table: | `event` | level | logger | `key`, `key` | meaning |."""
    text = README.read_text()
    section = text.split("### Events to alert on", 1)[1].split("\n#", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0].startswith("`"):
            keys = tuple(re.findall(r"`([a-z_]+)`", cells[3]))
            rows.append(Documented(cells[0].strip("`"), cells[1], cells[2], keys))
    return rows


def example_lines() -> list[dict[str, Any]]:
    """The JSON lines of the README's "Logging" section's examples."""
    section = README.read_text().split("## Logging", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```json\n(.*?)```", section, re.S)
    return [json.loads(line) for block in blocks for line in block.splitlines() if line.strip()]


def post(port: int, body: bytes) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/push/vms",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


@pytest.fixture(scope="session")  # once per process (xdist worker), whatever the test order
def daemon_logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[dict[str, Any]]]:
    from consumer.testing.fake_mns import FakeMnsServer
    from consumer.testing.tcp_proxy import TcpProxy

    tmp_path = tmp_path_factory.mktemp("log-events")
    with FakeMnsServer() as mns:
        mns.create_queue(MNS_QUEUE, visibility_timeout=5)
        mns.add_credentials("AK", "SK")
        proxy = TcpProxy("127.0.0.1", int(mns.endpoint.rsplit(":", 1)[1]))
        port = free_port()
        database = tmp_path / "events.db"
        config = tmp_path / "consumer.yaml"
        config.write_text(
            f"""
log: {{level: info, format: json}}
sink: {{url: "sqlite:///{database}?timeout=0.2"}}
http: {{listen: "127.0.0.1:{port}"}}
queues:
  - name: {PULL}
    source: mns
    format: {FORMAT}
    mns:
      endpoint: http://127.0.0.1:{proxy.port}
      queue: {MNS_QUEUE}
      auth: {{mode: access_key, access_key_id: AK, access_key_secret: SK}}
      wait_seconds: 1
    retry: {{initial: 0.2s, max: 1s, attempts: 50, total: 30s}}
  - name: {PUSH}
    source: http
    format: {FORMAT}
    http: {{path: /push/vms}}
"""
        )
        daemon = Daemon(config, tmp_path)
        try:
            daemon.wait_ready()

            def events(name: str) -> int:
                return sum(line.get("event") == name for line in daemon.logs())

            # stored messages on both queues, and a poison push
            for n in range(3):
                mns.put_message(MNS_QUEUE, voice_report(n))
            assert post(port, voice_report(10)) == 200
            assert post(port, NOT_JSON) == 200
            wait_until(lambda: mns.stats(MNS_QUEUE).total == 0, 30, "the MNS queue to empty")
            # the database locked for a moment: the commit is retried
            with sqlite3.connect(database, isolation_level=None) as lock:
                lock.execute("BEGIN EXCLUSIVE")
                mns.put_message(MNS_QUEUE, voice_report(20))
                wait_until(lambda: events("sink unavailable: retrying") > 0, 30, "a retry")
                lock.execute("ROLLBACK")
            wait_until(lambda: mns.stats(MNS_QUEUE).total == 0, 30, "the retried commit")
            # the broker unreachable for a moment
            proxy.cut()
            wait_until(lambda: events("source unavailable") > 0, 30, "a failed receive")
            proxy.restore()
            # a worker killed: the supervisor restarts it
            os.kill(daemon.worker_pids(f"{PULL}#0")[-1], signal.SIGKILL)
            wait_until(lambda: len(daemon.worker_pids(f"{PULL}#0")) == 2, 30, "the restart")
            wait_until(lambda: events("pull worker running") == 2, 30, "the restarted worker")
            assert daemon.stop(signal.SIGTERM) == 0, daemon.log_text()
            yield daemon.logs()
        finally:
            daemon.stop(signal.SIGKILL)
            proxy.close()


def test_every_documented_event_is_logged_with_its_keys(
    daemon_logs: list[dict[str, Any]],
) -> None:
    documented = documented_events()
    assert len(documented) >= 10
    assert set(NOT_PROVOKED) <= {row.event for row in documented}
    source = "\n".join(path.read_text() for path in (ROOT / "consumer").rglob("*.py"))
    for row in documented:
        lines = [
            line
            for line in daemon_logs
            if line.get("event") == row.event and line.get("logger") == row.logger
        ]
        if row.event in NOT_PROVOKED:
            assert f'"{row.event}"' in source, f"{row.event!r} is logged nowhere"
            assert not lines or all(line["level"] == row.level for line in lines)
            continue
        assert lines, f"the daemon never logged {row.event!r}"
        for line in lines:
            assert line["level"] == row.level, line
            missing = set(row.keys) - set(line)
            assert not missing, f"{row.event!r} lacks {sorted(missing)}: {line}"


def test_the_readme_examples_are_real_lines(daemon_logs: list[dict[str, Any]]) -> None:
    examples = example_lines()
    assert len(examples) >= 3
    for example in examples:
        stable = {key: value for key, value in example.items() if key not in VOLATILE}
        matches = [
            line
            for line in daemon_logs
            if set(line) == set(example)
            and all(
                line.get(key) == value
                for key, value in stable.items()
                if key in ("level", "logger", "event", "queue", "worker", "provider")
            )
        ]
        assert matches, f"no real line like the README's {example}"


def test_worker_lines_name_their_worker_queue_and_message(
    daemon_logs: list[dict[str, Any]],
) -> None:
    # The supervisor's lines about a worker name it too, but come from the main process.
    about_a_worker = {
        "worker started",
        "worker died: restarting",
        "queue keeps crashing: stopping",
        "worker wedged: killing it",
        "worker refused its configuration: stopping",
        "worker ended badly while stopping",
    }
    supervisor = {"consumer.runtime"}
    for line in daemon_logs:
        if line.get("logger") in supervisor and line.get("event") in about_a_worker:
            continue
        if line.get("logger") == "consumer.pipeline":
            assert "worker" in line, line
            assert "queue" in line, line
        if line.get("worker", "").startswith(PULL):
            assert line.get("queue") == PULL, line
        if line.get("event") in ("message stored", "message quarantined in dead_letters"):
            assert "message_id" in line, line
        if "worker" not in line:
            assert line.get("logger") in supervisor, f"a worker line without its worker: {line}"
