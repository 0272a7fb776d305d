"""The supervisor's restart rules without processes: backoff per worker, crash loops per queue."""

from __future__ import annotations

from consumer.runtime.restart import Child, Policy, Restarts
from consumer.runtime.spec import WorkerSpec

POLICY = Policy(initial_backoff=1.0, max_backoff=8.0, healthy_after=60.0, max_crashes=3)


def child(queue: str, index: int = 0) -> Child:
    return Child(WorkerSpec("pull", f"{queue}#{index}", index, queue=queue))


def test_backoff_doubles_per_death_and_starts_afresh_after_a_healthy_run() -> None:
    # Given a worker that keeps dying seconds after each start
    restarts, worker = Restarts(POLICY), child("bot")
    delays = []
    for now in (1.0, 3.0, 7.0, 15.0, 31.0):
        worker.started_at = now - 1.0
        delays.append(restarts.schedule(worker, now))
    # Then each death doubles the delay, up to max_backoff, and sets the restart time
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert worker.restart_at == 31.0 + 8.0
    # When it dies again after running longer than healthy_after
    worker.started_at = 100.0
    # Then its backoff starts afresh
    assert restarts.schedule(worker, 100.0 + POLICY.healthy_after) == 1.0


def test_a_queue_gives_up_on_max_crashes_of_its_workers_within_the_window() -> None:
    # Given two workers of one queue and one of another
    restarts = Restarts(POLICY)
    first, second, other = child("bot", 0), child("bot", 1), child("mns")
    # When the queue's workers die twice and the other queue's once
    counts = [restarts.crashes(first, 0.0), restarts.crashes(second, 1.0)]
    counts.append(restarts.crashes(other, 2.0))
    # Then each queue counts its own deaths, short of max_crashes
    assert counts == [1, 2, 1]
    assert not restarts.gives_up(counts[1])
    # When a third death of the queue comes within the window, it gives up
    assert restarts.gives_up(restarts.crashes(first, 3.0))
    # And a death after the window counts only the deaths still inside it
    assert restarts.crashes(second, 3.0 + POLICY.crash_window + 0.5) == 1
