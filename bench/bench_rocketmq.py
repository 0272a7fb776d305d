"""RocketMQ consumption, messages/s: the full pipeline next to the bare client loop, one run.

Both drain the same messages (realistic Outbound Bot bodies: 5 messages per call on average,
see tests/sources/test_rocketmq_pipeline.py) from the same in-process fake proxy
(`consumer.testing.fake_rocketmq`, real gRPC over 127.0.0.1), each in a consumer group of its
own, so each sees every message once:

- `client loop`: the real client's `SimpleConsumer.receive(32)` then `ack(m)` for every
  message, no work: the loop the client's own API allows;
- `source loop`: `RocketMQSource.receive(32)` then `ack(batch)` (one AckMessage per batch), no
  work: the transport's cost as the pipeline pays it;
- `pipeline`: `RocketMQSource` + `Worker` (batch 32) + the SQLite sink (synchronous=FULL, one
  transaction per batch, calls rows recomputed), logging at info to /dev/null as a daemon would.

    python -m bench.bench_rocketmq [--calls 1000]

The target is pipeline >= 0.8 x the client loop; the ratio to the source loop is printed too
(what decoding, normalizing and the SQLite commit cost on top of the transport). The fake and
the consumers share this process and the machine's cores.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import timedelta
from typing import Any

TOPIC = "OUTBOUND_BOT_TOPIC"
INVISIBLE = 30
BATCH = 32


def client_loop(fake: Any, client: Any, total: int) -> float:
    """Seconds for the bare client to receive and ack `total` messages."""
    consumer = client.SimpleConsumer(
        client.ClientConfiguration(fake.endpoint, client.Credentials(), request_timeout=3),
        "GID_bench_client",
        {TOPIC: client.FilterExpression("*")},
        await_duration=1,
        tls_enable=False,
    )
    consumer.startup()
    try:
        done = 0
        started = time.perf_counter()
        while done < total:
            for message in consumer.receive(BATCH, INVISIBLE):
                consumer.ack(message)
                done += 1
        return time.perf_counter() - started
    finally:
        consumer.shutdown()
        pool = getattr(consumer, "_Consumer__message_decode_executor", None)
        if pool is not None:
            pool.shutdown(wait=False)


def source_loop(fake: Any, total: int) -> float:
    """Seconds for RocketMQSource to receive and ack `total` messages, one ack per batch."""
    from consumer.config.model import RocketMqConfig
    from consumer.sources.rocketmq import RocketMQSource

    config = RocketMqConfig(
        endpoints=fake.endpoint,
        topic=TOPIC,
        group="GID_bench_source",
        invisible_duration=timedelta(seconds=INVISIBLE),
    )
    source = RocketMQSource(config, min_wait=1)
    try:
        done = 0
        started = time.perf_counter()
        while done < total:
            batch = source.receive(BATCH, 1)
            source.ack(batch)
            done += len(batch)
        return time.perf_counter() - started
    finally:
        source.close()


def pipeline(fake: Any, total: int, folder: str) -> float:
    """Seconds for RocketMQSource + Worker + SQLite to store and ack `total` messages."""
    from consumer.config.model import RetryConfig, RocketMqConfig, SinkConfig
    from consumer.formats import get_format
    from consumer.pipeline import Counters, Pipeline, Worker
    from consumer.sinks import open_sink
    from consumer.sources.rocketmq import RocketMQSource

    sink = open_sink(SinkConfig(url=f"sqlite:///{folder}/bench.db"))
    sink.migrate()
    counters = Counters()
    config = RocketMqConfig(
        endpoints=fake.endpoint,
        topic=TOPIC,
        group="GID_bench_pipeline",
        invisible_duration=timedelta(seconds=INVISIBLE),
    )
    source = RocketMQSource(config, min_wait=1)
    worker = Worker(
        source,
        Pipeline(
            queue="outbound-bot",
            format=get_format("aliyun.outbound_bot"),
            sink=sink,
            retry=RetryConfig(),
            metrics=counters,
        ),
        batch_size=BATCH,
        wait=1,
    )
    try:
        started = time.perf_counter()
        while counters["outbound-bot"].acknowledged < total:
            worker.run_once()
        return time.perf_counter() - started
    finally:
        source.close()
        sink.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=1000, help="calls (5 messages each)")
    args = parser.parse_args(argv if argv is not None else [])

    with tempfile.TemporaryDirectory() as folder:
        os.environ.setdefault("CACHE_DIRECTORY", folder)
        from consumer.logs import configure_logging
        from consumer.sources.rocketmq import import_client

        old_home = os.environ.get("HOME")
        os.environ["HOME"] = folder  # the client logs to $HOME/logs/rocketmq_python
        try:
            client = import_client()
            from consumer.testing.fake_rocketmq import FakeRocketMQ, ProxyLimits
        finally:
            if old_home is not None:
                os.environ["HOME"] = old_home
        from consumer.config.model import LogConfig
        from tests.sources.test_rocketmq_pipeline import outbound_bot_traffic

        configure_logging(LogConfig(level="info", format="json"), stream=open(os.devnull, "w"))  # noqa: SIM115
        traffic = outbound_bot_traffic(args.calls)
        total = len(traffic.messages)
        with FakeRocketMQ(limits=ProxyLimits.relaxed()) as fake:
            for event, body in traffic.messages:
                fake.publish(TOPIC, body, tag=event)
            raw = client_loop(fake, client, total)
            bare = source_loop(fake, total)
            full = pipeline(fake, total, folder)
    raw_rate, bare_rate, full_rate = total / raw, total / bare, total / full
    print(f"rocketmq consumption, {total:,} messages, fake proxy on 127.0.0.1, batch {BATCH}")
    print(f"{'client loop (receive + ack each)':<36}{raw_rate:>8,.0f} msgs/s {raw:6.2f} s")
    print(f"{'source loop (receive + batch ack)':<36}{bare_rate:>8,.0f} msgs/s {bare:6.2f} s")
    print(f"{'pipeline (source + worker + sqlite)':<36}{full_rate:>8,.0f} msgs/s {full:6.2f} s")
    print(f"{'ratio pipeline / client loop':<36}{full_rate / raw_rate:>8.2f}   (target >= 0.80)")
    print(f"{'ratio pipeline / source loop':<36}{full_rate / bare_rate:>8.2f}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
