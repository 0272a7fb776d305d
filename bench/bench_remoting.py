"""RocketMQ 4.x (Remoting) consumption, messages/s: the full pipeline next to the bare
PushConsumer loop, interleaved rounds, medians and spread.

Both drain the same messages (realistic Outbound Bot bodies, see
tests/sources/test_rocketmq_pipeline.py) from the same in-process 4.x name server and broker
(`consumer.testing.fake_remoting`, real Remoting frames over 127.0.0.1), through
rocketmq-client-python 2.0.0 over librocketmq (`$CONSUMER_LIBROCKETMQ`); every run uses a
consumer group of its own, so each sees every message once:

- `push loop`: the binding's PushConsumer whose callback only counts and returns
  CONSUME_SUCCESS: the strongest loop the client allows;
- `pipeline`: `RemotingSource` + `Worker` + the SQLite sink (synchronous=FULL, one transaction
  per batch, calls rows recomputed), each callback answered only after its batch committed,
  logging at info to /dev/null as a daemon would.

Both use the same consume thread count (the batch size) and the broker's default 32 messages
per pull. Rounds alternate push loop and pipeline.

    python -m bench.bench_remoting [--calls 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from typing import Any

TOPIC = "OUTBOUND_BOT_TOPIC"
BATCH = 16


def push_loop(fake: Any, total: int, group: str) -> float:
    """Seconds for a bare PushConsumer to consume `total` messages."""
    from consumer.sources.remoting import import_binding

    client = import_binding()
    done = threading.Event()
    count = [0]
    lock = threading.Lock()

    def on_message(_message: Any) -> int:
        with lock:
            count[0] += 1
            if count[0] >= total:
                done.set()
        return int(client.ConsumeStatus.CONSUME_SUCCESS)

    consumer = client.PushConsumer(group)
    consumer.set_name_server_address(fake.namesrv)
    consumer.set_thread_count(BATCH)
    consumer.subscribe(TOPIC, on_message, "*")
    started = time.perf_counter()
    consumer.start()
    try:
        done.wait()
        return time.perf_counter() - started
    finally:
        consumer.shutdown()


def pipeline(fake: Any, total: int, group: str, folder: str) -> float:
    """Seconds for RemotingSource + Worker + SQLite to store and acknowledge `total` messages."""
    from bench.bench_rocketmq import drain
    from consumer.config.model import RocketMqConfig
    from consumer.sources.remoting import RemotingSource

    config = RocketMqConfig(
        protocol="remoting", endpoints=fake.namesrv, topic=TOPIC, group=group, batch_size=BATCH
    )
    source = RemotingSource(config, state_dir=folder)
    return drain(source, total, f"{folder}/{group}.db", batch_size=BATCH)


def _summary(name: str, total: int, seconds: list[float]) -> tuple[str, float]:
    rates = [total / s for s in seconds]
    median = statistics.median(rates)
    line = f"{name:<34}{median:>8,.0f} msgs/s  (min {min(rates):,.0f}, max {max(rates):,.0f})"
    return line, median


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=300, help="calls (5 messages each)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    args = parser.parse_args(argv if argv is not None else [])

    from consumer.sources.remoting import unavailable

    missing = unavailable()
    if missing is not None:
        print(f"bench_remoting cannot run: {missing}")
        return 1
    from consumer.config.model import LogConfig
    from consumer.logs import configure_logging
    from consumer.testing.fake_remoting import FakeRemoting
    from tests.sources.test_rocketmq_pipeline import outbound_bot_traffic

    configure_logging(LogConfig(level="info", format="json"), stream=open(os.devnull, "w"))  # noqa: SIM115
    traffic = outbound_bot_traffic(args.calls)
    total = len(traffic.messages)
    bare: list[float] = []
    full: list[float] = []
    with tempfile.TemporaryDirectory() as folder, FakeRemoting(TOPIC, long_poll_cap=0.5) as fake:
        for event, body in traffic.messages:
            fake.publish(body, tags=event)
        for n in range(args.rounds):
            bare.append(push_loop(fake, total, f"GID_bench_push_{n}"))
            full.append(pipeline(fake, total, f"GID_bench_pipeline_{n}", folder))
    print(
        f"rocketmq 4.x (remoting) consumption, {total:,} messages, fake broker on 127.0.0.1, "
        f"{BATCH} consume threads, {args.rounds} interleaved rounds"
    )
    line, bare_rate = _summary("push loop (CONSUME_SUCCESS only)", total, bare)
    print(line)
    line, full_rate = _summary("pipeline (source + worker + sqlite)", total, full)
    print(line)
    print(f"{'ratio of medians pipeline / push':<34}{full_rate / bare_rate:>8.2f}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
