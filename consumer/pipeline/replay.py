"""Replaying dead letters: push quarantined messages through normalization and the sink again.

Replay re-parses each dead letter's raw bytes with its queue's format (normally after a fix to a
format module or to the data) and stores the result exactly as the pipeline would. What now
stores is removed from `dead_letters`; what still fails stays, with the new reason and error
(the sink upserts the letter on queue and message id). A replay repeated after a crash is
harmless: the events are idempotent and the letter is removed the next time.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeAlias

from consumer.config.model import Config
from consumer.formats import get_format
from consumer.pipeline.normalize import Unit, prepare
from consumer.pipeline.results import Disposition, Result
from consumer.pipeline.store import Committer
from consumer.sinks.base import DeadLetterRow, Sink
from consumer.sources.base import Message

if TYPE_CHECKING:
    Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


@dataclass
class ReplayReport:
    stored: list[tuple[DeadLetterRow, Result]] = field(default_factory=list)
    failing: list[tuple[DeadLetterRow, Result]] = field(default_factory=list)
    """Still permanent failures: kept, with the new reason and error."""
    kept: list[tuple[DeadLetterRow, str]] = field(default_factory=list)
    """Not tried or not committed (queue gone, database unavailable): kept unchanged."""
    missing: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.kept and not self.missing


def replay(config: Config, sink: Sink, ids: Sequence[int] = ()) -> ReplayReport:
    """Replay the dead letters with these ids (all when empty), one queue at a time."""
    report = ReplayReport()
    rows = sink.dead_letters(ids)
    report.missing = sorted(set(ids) - {row.id for row in rows})
    by_queue: dict[str, list[DeadLetterRow]] = {}
    for row in rows:
        by_queue.setdefault(row.queue, []).append(row)
    configured = {queue.name: queue for queue in config.queues}
    for name, letters in by_queue.items():
        queue = configured.get(name)
        if queue is None:
            reason = f"queue {name!r} is not in the configuration; its format is unknown"
            report.kept.extend((row, reason) for row in letters)
            continue
        fmt = get_format(queue.format)
        now = datetime.now(UTC)
        units: list[Unit] = [
            prepare(
                Message(row.message_id, row.payload, row.attempts + 1),
                queue=name,
                fmt=fmt,
                max_deliveries=None,
                received_at=now,
            )
            for row in letters
        ]
        results = Committer(sink, queue.retry, name).commit(units)
        done: list[int] = []
        for row, result in zip(letters, results, strict=True):
            if result.disposition is Disposition.STORED:
                report.stored.append((row, result))
                done.append(row.id)
            elif result.disposition is Disposition.DEAD_LETTERED:
                report.failing.append((row, result))
            else:
                report.kept.append((row, result.error or "transient failure"))
        if done:
            sink.discard_dead_letters(done)
    return report


__all__ = ["ReplayReport", "replay"]
