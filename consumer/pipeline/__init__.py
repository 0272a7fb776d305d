"""The at-least-once pipeline: a message is acknowledged only after everything it yields is stored.

- `normalize`: message → unit (events, or a dead letter with the raw bytes)
- `store`: units → one sink transaction per batch, transient failures retried, refused rows
  isolated and quarantined
- `handler.Pipeline`: the two above for one queue, with logging and metrics
- `loop.Worker`: a pull source tied to a pipeline, from its parts: `prefetch` (one batch
  ahead), `keepalive` (keep invisible), `settle` (ack / reject), `middleware` (hooks)
- `push.PushCommits`: a push queue's worker on a thread of its own (its answers, batch sizes,
  last failure)
- `replay`: `consumer dead-letters list|replay`
"""

from consumer.pipeline.handler import Pipeline
from consumer.pipeline.keepalive import Keepalive, KeepaliveThread
from consumer.pipeline.loop import Worker, run_worker
from consumer.pipeline.metrics import Counters, Metrics, NullMetrics
from consumer.pipeline.middleware import Middleware
from consumer.pipeline.push import PushCommits
from consumer.pipeline.results import Disposition, Result

__all__ = [
    "Counters",
    "Disposition",
    "Keepalive",
    "KeepaliveThread",
    "Metrics",
    "Middleware",
    "NullMetrics",
    "Pipeline",
    "PushCommits",
    "Result",
    "Worker",
    "run_worker",
]
