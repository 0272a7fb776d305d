"""`consumer run` as a real subprocess: load, SIGTERM in the middle, SIGKILL of a worker, and a
scrape of /metrics. Nothing may be lost (every acknowledged message has its row) and nothing
counted twice (one row per distinct message, however often it was delivered)."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conformance.bodies import FORMAT, call_id, voice_report
from tests.runtime import helpers
from tests.runtime.helpers import Start, free_port, get, started_daemons, wait_until

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def start() -> Iterator[Start]:
    """Starts daemons; any still running when the test ends (it failed) is killed."""
    yield from started_daemons(wait_ready=False)


def write_config(tmp_path: Path, port: int, queues: str) -> Path:
    path = tmp_path / "consumer.yaml"
    path.write_text(
        f"""
log: {{level: info, format: json}}
sink: {{url: "sqlite:///{tmp_path}/events.db"}}
http: {{listen: "127.0.0.1:{port}"}}
queues:
{queues}
"""
    )
    return path


def stored_call_ids(tmp_path: Path) -> list[str]:
    with sqlite3.connect(tmp_path / "events.db") as db:
        return [row[0] for row in db.execute("SELECT call_id FROM call_events")]


def push(port: int, n: int) -> int:
    """POST receipt n; the status, or 0 when the connection failed (the sender retries later)."""
    try:
        return helpers.push(port, n, timeout=10)
    except OSError:
        return 0


def scrape(port: int) -> dict[tuple[str, str], float]:
    """/metrics as {(sample name, queue): value}, summed over other labels."""
    status, text = get(port, "/metrics", timeout=10)
    assert status == 200
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, sample.labels.get("queue", ""))
            if "le" not in sample.labels:
                found[key] = found.get(key, 0.0) + sample.value
    return found


# -- HTTP push -------------------------------------------------------------------------------

PUSH_QUEUE = f"""  - name: vms
    source: http
    format: {FORMAT}
    http: {{path: /push/vms}}
"""


def test_sigterm_during_push_load_loses_and_duplicates_nothing(
    tmp_path: Path, start: Start
) -> None:
    # Given the daemon serving one push queue, and 300 distinct receipts to deliver
    port = free_port()
    config = write_config(tmp_path, port, PUSH_QUEUE)
    total = 300
    daemon = start(config, tmp_path)
    daemon.wait_ready()
    answers: dict[int, int] = {}
    lock = threading.Lock()

    def send(n: int) -> None:
        status = push(port, n)
        with lock:
            answers[n] = status

    # When eight senders push them and SIGTERM arrives once 80 were answered 200
    with ThreadPoolExecutor(8) as pool:
        for n in range(total):
            pool.submit(send, n)
        wait_until(
            lambda: sum(1 for s in list(answers.values()) if s == 200) >= 80, 60, "80 answers"
        )
        code = daemon.stop(signal.SIGTERM)
    # Then the daemon drained and exited 0, before every receipt got through, and told
    # systemd (through the NOTIFY_SOCKET the test bound) when it was ready and when it stopped
    assert code == 0, daemon.log_text()
    lines = daemon.notify.lines()
    assert lines.index("READY=1") < lines.index("STOPPING=1")
    assert "STATUS=ready: 1 worker connected" in lines
    accepted = {n for n, status in answers.items() if status == 200}
    assert len(accepted) < total
    # And every receipt answered 200 is stored
    stored = set(stored_call_ids(tmp_path))
    assert {call_id(n) for n in accepted} <= stored

    # When the daemon comes back and the senders retry what was not answered 200, and one of
    # them re-sends ten receipts that were (a provider retry after a lost answer)
    daemon = start(config, tmp_path)
    daemon.wait_ready()
    retried = [n for n in range(total) if n not in accepted] + sorted(accepted)[:10]
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda n: push(port, n), retried))
    metrics = scrape(port)
    assert daemon.stop(signal.SIGTERM) == 0, daemon.log_text()
    # Then every retry is answered 200, and each receipt is stored exactly once
    assert set(statuses) == {200}
    ids = stored_call_ids(tmp_path)
    assert len(ids) == total
    assert set(ids) == {call_id(n) for n in range(total)}
    # And this run's /metrics counted every push it acknowledged
    assert metrics[("consumer_messages_acked_total", "vms")] == len(retried)
    assert metrics[("consumer_messages_received_total", "vms")] == len(retried)
    assert metrics[("consumer_source_up", "vms")] == 1


def test_endpoints_forwarding_sighup_and_an_orphaned_worker(tmp_path: Path, start: Start) -> None:
    # Given the daemon with one push queue and a jsonl forwarder
    port = free_port()
    config = write_config(tmp_path, port, PUSH_QUEUE)
    jsonl = tmp_path / "events.jsonl"
    text = config.read_text().replace(
        "sink: {", f'sink: {{forward: [{{jsonl: {{path: "{jsonl}"}}}}], '
    )
    config.write_text(text)
    daemon = start(config, tmp_path)
    try:
        daemon.wait_ready()
        # When one receipt is pushed
        assert push(port, 1) == 200
        # Then health, readiness and metrics answer, and the event is forwarded
        assert get(port, "/healthz", timeout=10) == (200, "ok\n")
        assert get(port, "/readyz", timeout=10) == (200, "ready\n")
        metrics = scrape(port)
        assert metrics[("consumer_events_written_total", "vms")] == 1
        assert metrics[("consumer_inflight_messages", "vms")] == 0
        assert metrics[("consumer_message_latency_seconds_count", "vms")] == 1
        assert metrics[("consumer_push_requests_total", "vms")] == 1
        wait_until(lambda: jsonl.exists() and jsonl.read_text().count("\n") == 1, 10, "forward")
        # When SIGHUP arrives, every process re-applies its logging and keeps serving
        daemon.process.send_signal(signal.SIGHUP)
        wait_until(
            lambda: sum("SIGHUP" in line.get("event", "") for line in daemon.logs()) == 2,
            10,
            "SIGHUP handled by the supervisor and the listener",
        )
        assert push(port, 2) == 200
        # When the supervisor itself is killed, the worker it leaves behind drains and exits
        listener = daemon.worker_pids("listener")[-1]
    finally:
        code = daemon.stop(signal.SIGKILL)
    assert code == -signal.SIGKILL
    wait_until(lambda: not alive(listener), 15, "the orphaned listener to exit")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


# -- MNS pull workers ------------------------------------------------------------------------

MNS_QUEUE_NAME = "Alicom-Queue-123-VoiceReport"


def test_sigterm_during_mns_load_loses_and_duplicates_nothing(tmp_path: Path, start: Start) -> None:
    from consumer.testing.fake_mns import FakeMnsServer

    with FakeMnsServer(seed=5) as mns:
        # Given 1000 receipts on an MNS queue and the daemon with two workers on it
        mns.create_queue(MNS_QUEUE_NAME, visibility_timeout=4)
        mns.add_credentials("AK", "SK")
        total = 1000
        for n in range(total):
            mns.put_message(MNS_QUEUE_NAME, voice_report(n))
        queue = f"""  - name: vms
    source: mns
    format: {FORMAT}
    workers: 2
    mns:
      endpoint: {mns.endpoint}
      queue: {MNS_QUEUE_NAME}
      auth: {{mode: access_key, access_key_id: AK, access_key_secret: SK}}
      batch_size: 2
      wait_seconds: 1
"""
        port = free_port()
        config = write_config(tmp_path, port, queue)

        def left() -> int:
            stats = mns.stats(MNS_QUEUE_NAME)
            return int(stats.visible + stats.in_flight + stats.delayed)

        daemon = start(config, tmp_path)
        daemon.wait_ready()
        # When SIGTERM arrives once 50 were deleted
        wait_until(lambda: left() <= total - 50, 60, "50 deletions")
        assert daemon.stop(signal.SIGTERM) == 0, daemon.log_text()
        # Then what was deleted is stored, and some is left for the next run
        remaining = left()
        assert remaining > 0
        assert len(stored_call_ids(tmp_path)) >= total - remaining
        # When the daemon runs again until the queue is empty
        daemon = start(config, tmp_path)
        daemon.wait_ready()
        wait_until(lambda: left() == 0, 60, "an empty queue")
        # (Ctrl-C on a terminal: SIGINT drains like SIGTERM)
        assert daemon.stop(signal.SIGINT) == 0, daemon.log_text()
    # Then each receipt is stored exactly once
    ids = stored_call_ids(tmp_path)
    assert len(ids) == total
    assert set(ids) == {call_id(n) for n in range(total)}


# -- RocketMQ pull workers -------------------------------------------------------------------

TOPIC = "CALLS"
GROUP = "GID_consumer"


@pytest.fixture
def rocketmq(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("HOME", str(tmp_path))  # the client's import writes $HOME/logs
    from consumer.testing.fake_rocketmq import FakeRocketMQ, ProxyLimits

    with FakeRocketMQ(limits=ProxyLimits.relaxed(), max_workers=64) as fake:
        yield fake


def rocketmq_queue(fake: Any) -> str:
    return f"""  - name: bot
    source: rocketmq
    format: {FORMAT}
    workers: 2
    rocketmq:
      endpoints: "{fake.endpoint}"
      topic: {TOPIC}
      group: {GROUP}
      batch_size: 4
      invisible_duration: 3s
"""


def test_sigterm_and_a_killed_worker_lose_and_duplicate_nothing(
    tmp_path: Path, rocketmq: Any, start: Start
) -> None:
    # Given 600 distinct receipts on a topic and the daemon with two pull workers on it
    total = 600
    for n in range(total):
        rocketmq.publish(TOPIC, voice_report(n))
    port = free_port()
    config = write_config(tmp_path, port, rocketmq_queue(rocketmq))
    daemon = start(config, tmp_path)
    daemon.wait_ready()
    stats = SimpleNamespace(now=lambda: rocketmq.stats(TOPIC, GROUP))

    # When SIGTERM arrives in the middle of the load
    wait_until(lambda: stats.now().acked >= 100, 60, "100 acks")
    code = daemon.stop(signal.SIGTERM)
    # Then the workers drained and the daemon exited 0 with messages still on the topic
    assert code == 0, daemon.log_text()
    acked_first = stats.now().acked
    assert acked_first < total
    # And every acknowledged message was committed first
    assert len(stored_call_ids(tmp_path)) >= acked_first

    # When the daemon restarts and one worker is SIGKILLed in the middle of the rest
    daemon = start(config, tmp_path)
    daemon.wait_ready()
    wait_until(lambda: stats.now().acked >= acked_first + 100, 60, "100 more acks")
    before = scrape(port)[("consumer_messages_acked_total", "bot")]
    victim = daemon.worker_pids("bot#0")[-1]
    os.kill(victim, signal.SIGKILL)
    # Then the supervisor restarts it, and every message is acknowledged in the end
    wait_until(lambda: len(daemon.worker_pids("bot#0")) == 2, 30, "bot#0 restarted")
    wait_until(lambda: stats.now().acked == total, 90, f"all {total} acked")
    after = scrape(port)
    assert daemon.stop(signal.SIGTERM) == 0, daemon.log_text()
    died = [line for line in daemon.logs() if line.get("event") == "worker died: restarting"]
    assert [(line["worker"], line["exit_code"]) for line in died] == [
        ("bot#0", "killed by SIGKILL")
    ]
    # And each receipt is stored exactly once
    ids = stored_call_ids(tmp_path)
    assert len(ids) == total
    assert set(ids) == {call_id(n) for n in range(total)}
    # And the killed worker's counts survive it in /metrics (counters never go back), and
    # every message this run acknowledged was counted as received
    assert after[("consumer_messages_acked_total", "bot")] >= before
    assert after[("consumer_messages_received_total", "bot")] >= total - acked_first
    assert after[("consumer_source_up", "bot")] == 1


def test_a_queue_its_broker_refuses_stops_the_daemon_with_78(
    tmp_path: Path, rocketmq: Any, start: Start
) -> None:
    # Given a broker that answers every receive with ILLEGAL_TOPIC (the request is wrong)
    rocketmq.fail("ReceiveMessage", 40002, "topic name is illegal")
    config = write_config(tmp_path, free_port(), rocketmq_queue(rocketmq))
    # When the daemon starts on it
    daemon = start(config, tmp_path)
    code = daemon.process.wait(60)
    # Then it stops with EX_CONFIG (systemd does not restart it), naming the key, never ready
    assert code == 78, daemon.log_text()
    refused = [
        line for line in daemon.logs() if line.get("event") == "the source refused the settings"
    ]
    assert refused[0]["location"] == "queues.bot.rocketmq.topic"
    assert "READY=1" not in daemon.notify.lines()


# -- every kind of source at once ------------------------------------------------------------


def test_sigterm_with_mns_rocketmq_and_pushes_at_once_loses_and_duplicates_nothing(
    tmp_path: Path, rocketmq: Any, start: Start
) -> None:
    from consumer.testing.fake_mns import FakeMnsServer

    mns_ids, bot_ids, push_ids = range(0, 400), range(1000, 1400), range(2000, 2200)
    with FakeMnsServer(seed=7) as mns:
        # Given receipts waiting on an MNS queue and a RocketMQ topic, receipts to push, and
        # the daemon with a worker on each pull queue and the listener for the push queue
        mns.create_queue(MNS_QUEUE_NAME, visibility_timeout=4)
        mns.add_credentials("AK", "SK")
        for n in mns_ids:
            mns.put_message(MNS_QUEUE_NAME, voice_report(n))
        for n in bot_ids:
            rocketmq.publish(TOPIC, voice_report(n))
        queues = (
            f"""  - name: vms-mns
    source: mns
    format: {FORMAT}
    mns:
      endpoint: {mns.endpoint}
      queue: {MNS_QUEUE_NAME}
      auth: {{mode: access_key, access_key_id: AK, access_key_secret: SK}}
      batch_size: 2
      wait_seconds: 1
"""
            + rocketmq_queue(rocketmq)
            + PUSH_QUEUE
        )
        port = free_port()
        config = write_config(tmp_path, port, queues)

        def mns_left() -> int:
            stats = mns.stats(MNS_QUEUE_NAME)
            return int(stats.visible + stats.in_flight + stats.delayed)

        answers: dict[int, int] = {}
        lock = threading.Lock()

        def send(n: int) -> None:
            status = push(port, n)
            with lock:
                answers[n] = status

        def accepted() -> set[int]:
            with lock:
                return {n for n, status in answers.items() if status == 200}

        daemon = start(config, tmp_path)
        daemon.wait_ready()
        # When SIGTERM arrives while all three are under load
        with ThreadPoolExecutor(4) as pool:
            for n in push_ids:
                pool.submit(send, n)
            wait_until(
                lambda: (
                    mns_left() <= len(mns_ids) - 30
                    and rocketmq.stats(TOPIC, GROUP).acked >= 30
                    and len(accepted()) >= 30
                ),
                60,
                "every source under way",
            )
            code = daemon.stop(signal.SIGTERM)
        # Then the daemon drained and exited 0, and everything acknowledged is stored
        assert code == 0, daemon.log_text()
        stored = set(stored_call_ids(tmp_path))
        assert {call_id(n) for n in accepted()} <= stored
        assert len(stored & {call_id(n) for n in mns_ids}) >= len(mns_ids) - mns_left()
        assert len(stored & {call_id(n) for n in bot_ids}) >= rocketmq.stats(TOPIC, GROUP).acked

        # When it runs again, the senders retry what was not answered 200, and it drains
        daemon = start(config, tmp_path)
        daemon.wait_ready()
        retried = [n for n in push_ids if n not in accepted()]
        with ThreadPoolExecutor(4) as pool:
            assert set(pool.map(lambda n: push(port, n), retried)) <= {200}
        wait_until(
            lambda: mns_left() == 0 and rocketmq.stats(TOPIC, GROUP).acked == len(bot_ids),
            90,
            "both pull queues drained",
        )
        assert daemon.stop(signal.SIGTERM) == 0, daemon.log_text()
    # Then every receipt of every source is stored exactly once
    ids = stored_call_ids(tmp_path)
    expected = {call_id(n) for n in (*mns_ids, *bot_ids, *push_ids)}
    assert len(ids) == len(expected)
    assert set(ids) == expected
