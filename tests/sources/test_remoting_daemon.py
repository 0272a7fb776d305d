"""`consumer run` on a Remoting queue, killed with SIGKILL mid-run and started again: the real
daemon (supervisor and worker processes), the real binding and library, the fake broker."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from consumer.testing.fake_remoting import FakeRemoting
from tests.conformance import bodies
from tests.runtime.helpers import free_port, wait_until
from tests.sources.remoting_env import librocketmq

TOPIC = "VOICE_REPORT_TOPIC"
GROUP = "GID_daemon"
QUEUE = "voice-4x"
CALLS = 400


def read(db: Path, query: str) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        return conn.execute(query).fetchall()


def stored(db: Path) -> int:
    try:
        return int(str(read(db, "SELECT count(*) FROM call_events")[0][0]))
    except sqlite3.OperationalError:  # not created or migrated yet
        return 0


def write_config(
    tmp_path: Path, fake: FakeRemoting, queue: str = "", rocketmq: str = ""
) -> tuple[Path, Path]:
    """The database and a configuration of one queue on `fake`, with `queue` and `rocketmq`
    (YAML lines) added to the queue and its rocketmq section."""
    db = tmp_path / "events.db"
    config = tmp_path / "consumer.yaml"
    config.write_text(
        f"""sink: {{url: "sqlite:///{db}"}}
http: {{listen: "127.0.0.1:${{HTTP_PORT}}"}}
queues:
  - name: {QUEUE}
    source: rocketmq
    format: {bodies.FORMAT}
{queue}    rocketmq:
      protocol: remoting
      endpoints: {fake.namesrv}
      topic: {TOPIC}
      group: {GROUP}
{rocketmq}"""
    )
    return db, config


def start(config: Path, home: Path) -> subprocess.Popen[bytes]:
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "HOME": str(home),
        "STATE_DIRECTORY": str(home / "state"),
        "PYTHONPATH": str(root),
        # The listener on a port of its own (the configs read ${HTTP_PORT}): on the default
        # 8080 it races every other listener on the machine (the other test here, under
        # pytest -n), and a listener that cannot bind stops the daemon with 78 (EXIT_CONFIG).
        "HTTP_PORT": str(free_port()),
    }
    log = (home / "daemon.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "consumer", "run", "-c", str(config)],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_a_daemon_killed_mid_run_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    librocketmq()
    with FakeRemoting(TOPIC, max_pull_count=8, long_poll_cap=0.5, retry_delay=0.5) as fake:
        # Given 400 receipts, a few of them re-sent, and two poison bodies on a 4.x topic
        for n in range(CALLS):
            fake.publish(bodies.voice_report(n), tags="VoiceReport")
        for n in range(0, CALLS, 40):
            fake.publish(bodies.voice_report(n), tags="VoiceReport")
        fake.publish(bodies.NOT_JSON, tags="VoiceReport")
        fake.publish(bodies.NOT_UTF8, tags="VoiceReport")
        db, config = write_config(
            tmp_path,
            fake,
            queue="""    max_deliveries: 5
    retry: {attempts: 5, initial: 10ms, max: 100ms, total: 5s}
""",
            rocketmq="""      tag: VoiceReport
      batch_size: 16
""",
        )
        first = start(config, tmp_path)
        try:
            wait_until(lambda: stored(db) >= CALLS // 3, 90, "a third of the receipts stored")
            # When the daemon is killed with SIGKILL in the middle of the run
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(10)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(first.pid, signal.SIGKILL)
        at_kill = stored(db)
        # Then a new daemon finishes the topic
        second = start(config, tmp_path)
        try:
            wait_until(lambda: fake.drained(GROUP), 120, "the group to commit past every message")
            os.killpg(second.pid, signal.SIGTERM)
            assert second.wait(30) == 0
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(second.pid, signal.SIGKILL)
    assert CALLS // 3 <= at_kill < CALLS
    # And every receipt is stored exactly once, and the poison is in dead_letters byte for byte
    (events, distinct) = read(db, "SELECT count(*), count(DISTINCT event_id) FROM call_events")[0]
    assert events == distinct == CALLS
    letters = read(db, "SELECT payload, reason, queue FROM dead_letters")
    assert sorted(bytes(row[0]) for row in letters) == sorted([bodies.NOT_JSON, bodies.NOT_UTF8])  # type: ignore[call-overload]
    assert {row[2] for row in letters} == {QUEUE}
    # And nothing went to the broker's own dead letter queue
    assert fake.dead_lettered(GROUP) == []


def test_a_daemon_with_refused_credentials_exits_78(tmp_path: Path) -> None:
    librocketmq()
    with FakeRemoting(TOPIC, long_poll_cap=0.5, credentials={"LTAIak": "s3cret"}) as fake:
        # Given a broker with ACL and a daemon configured with a wrong secret key
        fake.publish(bodies.voice_report(1), tags="VoiceReport")
        db, config = write_config(
            tmp_path, fake, rocketmq="      credentials: {username: LTAIak, password: wrong}\n"
        )
        # When it runs
        daemon = start(config, tmp_path)
        try:
            code = daemon.wait(60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(daemon.pid, signal.SIGKILL)
    # Then it stops with the configuration exit status, naming the credentials in its log
    assert code == 78
    log = (tmp_path / "daemon.log").read_text()
    assert "queues.voice-4x.rocketmq.credentials" in log
    assert "Check signature failed for accessKey=LTAIak" in log
    assert stored(db) == 0
