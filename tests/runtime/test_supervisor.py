"""The supervisor with stand-in worker processes (tests/runtime/workers.py): restarts, crash
loops, wedged workers, the drain deadline and the sd_notify conversation with systemd."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from consumer.config.model import (
    Config,
    HttpQueue,
    HttpSourceConfig,
    RocketMqConfig,
    RocketMqQueue,
)
from consumer.runtime.supervisor import Policy, Supervisor
from tests.runtime import workers
from tests.runtime.helpers import NotifySocket

FAST = Policy(initial_backoff=0.05, max_backoff=0.2, max_crashes=3, crash_window=30.0)


def config(pull_workers: int = 2) -> Config:
    return Config(
        queues=[
            RocketMqQueue(
                name="bot",
                source="rocketmq",
                format="aliyun.outbound_bot",
                workers=pull_workers,
                rocketmq=RocketMqConfig(endpoints="127.0.0.1:1", topic="T", group="G"),
            ),
            HttpQueue(
                name="push",
                source="http",
                format="huawei.voice_call",
                http=HttpSourceConfig(path="/push"),
            ),
        ]
    )


@pytest.fixture
def notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", sock.path)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    yield sock
    sock.close()


def stop_self_after_ready(notify: NotifySocket, delay: float = 0.3) -> None:
    """SIGTERM to this process (the supervisor) once it said READY=1, as systemd would."""

    def later() -> None:
        threading.Timer(delay, os.kill, (os.getpid(), signal.SIGTERM)).start()

    notify.on_ready = later


def supervisor(target: Callable[..., Any], **kwargs: Any) -> Supervisor:
    kwargs.setdefault("policy", FAST)
    kwargs.setdefault("drain_seconds", 2.0)
    return Supervisor(kwargs.pop("config", config()), target=target, **kwargs)


def test_ready_watchdog_and_stopping_reach_systemd(
    notify: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given systemd's watchdog at 0.2 s and healthy workers (2 pull + the listener)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    stop_self_after_ready(notify, delay=0.5)
    # When the supervisor runs until systemd stops it
    code = supervisor(workers.healthy).run()
    # Then it exits 0 after this conversation: status, READY=1, pings, STOPPING=1
    assert code == 0
    lines = notify.lines()
    assert lines[0] == "STATUS=starting 3 workers"
    assert "READY=1" in lines
    assert "STATUS=ready: 3 workers connected" in lines
    assert lines.count("WATCHDOG=1") >= 2
    assert lines.index("READY=1") < lines.index("STOPPING=1")
    assert lines[-1] == "STATUS=stopping: draining 3 workers"
    # And the variables meant for the main process are not passed on to workers
    assert "NOTIFY_SOCKET" not in os.environ
    assert "WATCHDOG_USEC" not in os.environ


def test_a_queue_that_keeps_crashing_ends_the_daemon(notify: NotifySocket) -> None:
    # Given pull workers that die as soon as they start
    with capture_logs() as logs:
        code = supervisor(workers.crash, config=config(pull_workers=1)).run()
    # Then each death is logged and restarted with growing backoff, until the crash loop
    assert code == 1
    restarts = [
        line
        for line in logs
        if line["event"] == "worker died: restarting" and line["worker"] == "bot#0"
    ]
    assert [line["restart_in_seconds"] for line in restarts[:2]] == [0.05, 0.1]
    assert restarts[0]["exit_code"] == "1"
    loop = [line for line in logs if line["event"] == "queue keeps crashing: stopping"]
    assert loop
    assert loop[0]["crashes"] == 3
    # And systemd never heard READY=1
    assert "READY=1" not in notify.lines()


def test_a_configuration_refused_by_a_worker_is_not_restarted(notify: NotifySocket) -> None:
    with capture_logs() as logs:
        code = supervisor(workers.bad_config).run()
    assert code == 78
    assert not [line for line in logs if line["event"] == "worker died: restarting"]


def test_work_unfinished_at_the_drain_deadline_exits_non_zero(notify: NotifySocket) -> None:
    # Given workers that do not stop within the 1 s drain deadline
    stop_self_after_ready(notify)
    with capture_logs() as logs:
        code = supervisor(workers.stubborn, drain_seconds=1.0).run()
    # Then they are killed and the exit status says the drain failed
    assert code == 1
    unfinished = [line for line in logs if line["event"].startswith("drain deadline passed")]
    assert sorted(unfinished[0]["workers"]) == ["bot#0", "bot#1", "listener"]


def test_a_wedged_worker_is_killed_and_restarted(notify: NotifySocket) -> None:
    # Given a worker whose loop stops beating, taken for wedged after 0.3 s of silence
    sup = supervisor(workers.wedged, config=config(pull_workers=1))
    for child in sup.children:
        child.spec = dataclasses.replace(child.spec, stale_after=0.3)
    with capture_logs() as logs:
        code = sup.run()
    # Then the supervisor kills it, restarts it, and gives up when it keeps wedging
    wedged = [line for line in logs if line["event"] == "worker wedged: killing it"]
    died = [line for line in logs if line["event"] == "worker died: restarting"]
    assert wedged
    assert died[0]["exit_code"] == "killed by SIGKILL"
    assert code == 1


def test_queue_selection_decides_the_worker_processes() -> None:
    # Given a pull queue with two workers and a push queue
    every = Supervisor(config(pull_workers=2))
    only_push = Supervisor(config(), ["push"])
    only_pull = Supervisor(config(), ["bot"])
    # Then each pull worker is a process, and the listener always runs (metrics, health)
    assert [(c.spec.name, c.spec.push_queues) for c in every.children] == [
        ("bot#0", ()),
        ("bot#1", ()),
        ("listener", ("push",)),
    ]
    assert [(c.spec.name, c.spec.push_queues) for c in only_push.children] == [
        ("listener", ("push",))
    ]
    assert [(c.spec.name, c.spec.push_queues) for c in only_pull.children] == [
        ("bot#0", ()),
        ("bot#1", ()),
        ("listener", ()),
    ]
    # And a wedged pull worker is judged against its long poll and sink retries
    assert every.children[0].spec.stale_after == 15 + 15 + 30 + 15
