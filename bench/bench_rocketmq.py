"""RocketMQ consumption, messages/s: the pipeline next to the strongest bare client loop.

All drain the same messages (realistic Outbound Bot bodies: 5 messages per call on average,
see tests/sources/test_rocketmq_pipeline.py) from the same in-process fake proxy
(`consumer.testing.fake_rocketmq`, real gRPC over 127.0.0.1), each in a consumer group of its
own, so each sees every message once:

- `client loop`: the real client's batched `SimpleConsumer.receive(32)`, and `ack(m)` of every
  message on a pool of 8 threads, overlapped with the next receive; no work. The client's
  `ack_async` would be the natural tool, but in rocketmq-python-client 5.1 it returns None
  instead of its future, so a thread pool is the strongest plain loop its API allows;
- `source loop`: `RocketMQSource.receive(32)` then `ack(batch)` (one AckMessage per batch), no
  work: the transport's cost as the pipeline pays it;
- `pipeline`: `RocketMQSource` + `Worker` (batch 32) + the SQLite sink (synchronous=FULL, one
  transaction per batch, calls rows recomputed), logging at info to /dev/null as a daemon would.

    python -m bench.bench_rocketmq [--calls 400] [--rounds 3]

Each round publishes the messages to a topic of its own and runs the three variants on it, in a
rotating order; figures are medians over the rounds with their spread (min-max), and ratios
are computed per round. The target is pipeline >= 0.8 x the client loop; the ratio to the
source loop is printed too (what decoding, normalizing and the SQLite commit cost on top of the
transport). The fake and the consumers share this process and the machine's cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import timedelta
from typing import Any

TOPIC = "OUTBOUND_BOT_TOPIC"
INVISIBLE = 30
BATCH = 32


def client_loop(fake: Any, client: Any, total: int, topic: str, group: str) -> float:
    """Seconds for the bare client to receive `total` messages, acking them concurrently."""
    consumer = client.SimpleConsumer(
        client.ClientConfiguration(fake.endpoint, client.Credentials(), request_timeout=3),
        group,
        {topic: client.FilterExpression("*")},
        await_duration=1,
        tls_enable=False,
    )
    consumer.startup()
    acks = ThreadPoolExecutor(8, thread_name_prefix="bench-ack")
    try:
        done = 0
        pending: list[Future[None]] = []
        started = time.perf_counter()
        while done < total:
            batch = consumer.receive(BATCH, INVISIBLE)
            wait(pending)  # the previous batch's acks ran while this batch was received
            for future in pending:
                future.result()
            pending = [acks.submit(consumer.ack, message) for message in batch]
            done += len(batch)
        wait(pending)
        for future in pending:
            future.result()
        return time.perf_counter() - started
    finally:
        acks.shutdown()
        consumer.shutdown()
        pool = getattr(consumer, "_Consumer__message_decode_executor", None)
        if pool is not None:
            pool.shutdown(wait=False)


def source_loop(fake: Any, total: int, topic: str, group: str) -> float:
    """Seconds for RocketMQSource to receive and ack `total` messages, one ack per batch."""
    from consumer.config.model import RocketMqConfig
    from consumer.sources.rocketmq import RocketMQSource

    config = RocketMqConfig(
        endpoints=fake.endpoint,
        topic=topic,
        group=group,
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


def pipeline(fake: Any, total: int, topic: str, group: str, folder: str) -> float:
    """Seconds for RocketMQSource + Worker + SQLite to store and ack `total` messages."""
    from consumer.config.model import RocketMqConfig
    from consumer.sources.rocketmq import RocketMQSource

    config = RocketMqConfig(
        endpoints=fake.endpoint,
        topic=topic,
        group=group,
        invisible_duration=timedelta(seconds=INVISIBLE),
    )
    return drain(RocketMQSource(config, min_wait=1), total, f"{folder}/{group}.db")


def drain(source: Any, total: int, database: str, batch_size: int = BATCH) -> float:
    """Seconds for `source` + Worker + SQLite at `database` to store and ack `total` Outbound
    Bot messages; closes the source. The pipeline side of every RocketMQ bench."""
    from consumer.config.model import RetryConfig, SinkConfig
    from consumer.formats import get_format
    from consumer.pipeline import Counters, Pipeline, Worker
    from consumer.sinks import open_sink

    sink = open_sink(SinkConfig(url=f"sqlite:///{database}"))
    sink.migrate()
    counters = Counters()
    worker = Worker(
        source,
        Pipeline(
            queue="outbound-bot",
            format=get_format("aliyun.outbound_bot"),
            sink=sink,
            retry=RetryConfig(),
            metrics=counters,
        ),
        batch_size=batch_size,
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


def _spread(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=400, help="calls (5 messages each)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv if argv is not None else [])

    rates: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        os.environ.setdefault("CACHE_DIRECTORY", folder)
        from consumer.logs import configure_logging
        from consumer.sources import client_home
        from consumer.sources.rocketmq import import_client

        with client_home.home(folder):  # the client logs to $HOME/logs/rocketmq_python
            client = import_client()
            from consumer.testing.fake_rocketmq import FakeRocketMQ, ProxyLimits
        from consumer.config.model import LogConfig
        from tests.sources.test_rocketmq_pipeline import outbound_bot_traffic

        configure_logging(LogConfig(level="info", format="json"), stream=open(os.devnull, "w"))  # noqa: SIM115
        traffic = outbound_bot_traffic(args.calls)
        total = len(traffic.messages)
        variants: dict[str, Callable[[Any, str, str], float]] = {
            "client": lambda fake, topic, group: client_loop(fake, client, total, topic, group),
            "source": lambda fake, topic, group: source_loop(fake, total, topic, group),
            "pipeline": lambda fake, topic, group: pipeline(fake, total, topic, group, folder),
        }
        names = list(variants)
        with FakeRocketMQ(limits=ProxyLimits.relaxed()) as fake:
            for round_ in range(-1, args.rounds):  # round -1 warms up, and is not counted
                topic = f"{TOPIC}_{round_ + 1}"
                for event, body in traffic.messages:
                    fake.publish(topic, body, tag=event)
                shift = max(round_, 0) % len(names)
                for name in names[shift:] + names[:shift]:
                    seconds = variants[name](fake, topic, f"GID_bench_{name}_{round_ + 1}")
                    if round_ >= 0:
                        rates.setdefault(name, []).append(total / seconds)
    print(
        f"rocketmq consumption, {total:,} messages per round, fake proxy on 127.0.0.1, "
        f"batch {BATCH}; median [min-max] of {args.rounds} interleaved rounds"
    )
    labels = {
        "client": "client loop (receive 32, 8 acks at once)",
        "source": "source loop (receive + batch ack)",
        "pipeline": "pipeline (source + worker + sqlite)",
    }
    for name in names:
        print(f"  {labels[name]:<42}{_spread(rates[name], '>7,.0f')} msgs/s")
    for base, target in (("client", " (target >= 0.80)"), ("source", "")):
        ratios = [p / b for p, b in zip(rates["pipeline"], rates[base], strict=True)]
        print(f"  {'ratio pipeline / ' + base:<42}{_spread(ratios, '.2f')}{target}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
