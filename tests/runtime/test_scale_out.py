"""Scaling out: two daemons, as on two hosts, on the same queues and the same PostgreSQL database.

The queues are the distributed engine (a message is delivered to one consumer at a time, and
comes back only when it was not acknowledged), PostgreSQL the shared store: neither daemon knows
of the other, and together they store every message once.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conformance.bodies import FORMAT, call_id, voice_report
from tests.runtime.helpers import POSTGRES, Daemon, free_port, postgres_schema, wait_until
from tests.runtime.test_run import scrape

pytestmark = [pytest.mark.timeout(180), pytest.mark.postgres]

MNS_QUEUE = "Alicom-Queue-123-VoiceReport"
TOPIC = "CALLS"
GROUP = "GID_consumer"
PER_QUEUE = 300


@pytest.fixture
def schema() -> Iterator[str]:
    """A schema of this test's own in the shared database, dropped afterwards."""
    yield from postgres_schema(f"runtime_scale_{os.getpid()}_{uuid.uuid4().hex[:6]}")


def host_config(path: Path, schema: str, mns: Any, rocketmq: Any, port: int) -> Path:
    """One host's configuration: only the listener's port tells the two apart."""
    path.write_text(
        f"""
log: {{level: info, format: json}}
sink: {{url: "{POSTGRES}?options=-csearch_path%3D{schema}"}}
http: {{listen: "127.0.0.1:{port}"}}
queues:
  - name: vms
    source: mns
    format: {FORMAT}
    mns:
      endpoint: {mns.endpoint}
      queue: {MNS_QUEUE}
      auth: {{mode: access_key, access_key_id: AK, access_key_secret: SK}}
      batch_size: 4
      wait_seconds: 1
  - name: bot
    source: rocketmq
    format: {FORMAT}
    rocketmq:
      endpoints: "{rocketmq.endpoint}"
      topic: {TOPIC}
      group: {GROUP}
      batch_size: 4
      invisible_duration: 10s
"""
    )
    return path


def test_two_daemons_share_the_queues_and_store_everything_once(
    tmp_path: Path, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # the RocketMQ client's import writes $HOME/logs
    from consumer.testing.fake_mns import FakeMnsServer
    from consumer.testing.fake_rocketmq import FakeRocketMQ, ProxyLimits

    with (
        FakeMnsServer(seed=7) as mns,
        FakeRocketMQ(limits=ProxyLimits.relaxed(), max_workers=64) as rocketmq,
    ):
        mns.create_queue(MNS_QUEUE, visibility_timeout=10)
        mns.add_credentials("AK", "SK")
        # Given two daemons, as on two hosts, on the same MNS queue, the same RocketMQ topic
        # and consumer group, and the same PostgreSQL database, both ready
        ports = [free_port(), free_port()]
        daemons = []
        try:
            for host, port in enumerate(ports):
                config = host_config(tmp_path / f"host{host}.yaml", schema, mns, rocketmq, port)
                daemons.append(Daemon(config, tmp_path))
            for daemon in daemons:
                daemon.wait_ready()
            # When 300 receipts arrive on each queue while both are polling
            for n in range(PER_QUEUE):
                mns.put_message(MNS_QUEUE, voice_report(n))
                rocketmq.publish(TOPIC, voice_report(PER_QUEUE + n))

            def done() -> bool:
                return (
                    mns.stats(MNS_QUEUE).total == 0
                    and rocketmq.stats(TOPIC, GROUP).acked == PER_QUEUE
                )

            wait_until(done, 90, "both queues to be drained")
            metrics = [scrape(port) for port in ports]
            codes = [daemon.stop(signal.SIGTERM) for daemon in daemons]
        finally:
            for daemon in daemons:
                if daemon.process.poll() is None:
                    daemon.stop(signal.SIGKILL)
    # Then both stopped cleanly
    assert codes == [0, 0], [daemon.log_text() for daemon in daemons]
    # And every receipt is stored exactly once, nothing lost
    with psycopg.connect(POSTGRES, connect_timeout=5) as db:
        db.execute(f'SET search_path TO "{schema}"')
        events = [row[0] for row in db.execute("SELECT call_id FROM call_events")]
        calls = db.execute("SELECT count(*) FROM calls").fetchone()
        dead = db.execute("SELECT count(*) FROM dead_letters").fetchone()
    assert sorted(events) == sorted(call_id(n) for n in range(2 * PER_QUEUE))
    assert calls == (2 * PER_QUEUE,)
    assert dead == (0,)
    # And each daemon acknowledged part of each queue's messages, together all of them
    for queue in ("vms", "bot"):
        acked = [m[("consumer_messages_acked_total", queue)] for m in metrics]
        assert all(share > 0 for share in acked), (queue, acked)
        assert sum(acked) >= PER_QUEUE, (queue, acked)
