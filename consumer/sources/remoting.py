"""RocketMQ 4.x (Remoting protocol) through rocketmq-client-python 2.0.0's PushConsumer.

How the binding and librocketmq are loaded (beside the 5.x client, which also calls itself
`rocketmq`): `remoting_binding.py`; the client's own log file: `remoting_log.py`.

Mapping a push consumer onto the batch `Source`: the client calls back on its native threads,
one message at a time per pulled batch. Each callback hands its message to `receive` and blocks
until the pipeline settles it: `ack` answers CONSUME_SUCCESS (only ever after the commit),
`reject` RECONSUME_LATER, which makes the client send the whole pulled batch back to the broker
(`%RETRY%group`, reconsume count + 1), so a batch is never retried in place forever, and
`max_deliveries` is read from the reconsume count. The consumer offset only moves past a message
once its callback returned, so a crash redelivers, never loses.

What the binding does not do for us:

- Its `body` stops at the first NUL byte: bodies are read with GetMessageBodyLength.
- `start()` succeeds with credentials the broker refuses, and `start()`/`shutdown()` can block
  (about 10 s each against a peer that accepts and never answers): both run under a watchdog,
  and the client's own log file (under the state directory) is tailed into the structured log,
  where an AclException turns into a ConfigError (exit 78).
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import structlog

from consumer.config.model import RocketMqConfig, RocketMqQueue
from consumer.errors import ConfigError, TransientError
from consumer.sources.base import Message
from consumer.sources.remoting_binding import Body, import_binding, unavailable, watchdog
from consumer.sources.remoting_log import (
    LOG_LINE_MAX,
    LogTailer,
    client_log,
    log_client_line,
    logger_home,
)

log = structlog.get_logger("consumer.sources.remoting")

CONSUME_SUCCESS = 0
RECONSUME_LATER = 1
START_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 30.0
_instances = itertools.count(1)


@dataclass(eq=False)
class _Delivery:
    """One callback waiting on a native thread for its message's outcome."""

    status: int = RECONSUME_LATER
    done: threading.Event = field(default_factory=threading.Event)

    def settle(self, status: int) -> None:
        if not self.done.is_set():
            self.status = status
            self.done.set()


def open_queue(queue: RocketMqQueue) -> RemotingSource:
    """The source of a `source: rocketmq` queue with `protocol: remoting`."""
    return RemotingSource(queue.rocketmq, **queue.source_options())


class RemotingSource:
    """One PushConsumer (clustering) on one topic and group; starts on the first `receive`."""

    concurrent_settle = True
    """Settling only wakes callbacks: it never touches the client concurrently with itself."""

    def __init__(
        self,
        config: RocketMqConfig,
        *,
        max_deliveries: int = 10,
        location: str = "rocketmq",
        threads: int | None = None,
        state_dir: str | None = None,
        instance: str | None = None,
    ) -> None:
        """`threads` is the client's consume thread count: at most that many messages are in
        hand at once (default: the batch size); `state_dir` holds the client's log files.
        `max_deliveries` is kept for the log; the pipeline applies it to `delivery_count`."""
        self._config = config
        self._max_deliveries = max_deliveries
        self._location = location
        self._threads = threads or config.batch_size
        self._state_dir = state_dir
        # The client shares one connection factory per instance name in a process: a name of
        # its own keeps a restarted source clear of the one still shutting down.
        self._instance = instance or f"consumer-{os.getpid()}-{next(_instances)}"
        self._consumer: Any = None
        self._closed = False
        self._lock = threading.Lock()
        self._ready: queue.SimpleQueue[tuple[Message, _Delivery]] = queue.SimpleQueue()
        self._pending: set[_Delivery] = set()
        self._fatal: ConfigError | None = None
        self._tailer: LogTailer | None = None
        self._body: Body | None = None

    @property
    def visibility_timeout(self) -> float | None:
        return None  # a message stays with its blocked callback until settled: nothing lapses

    # -- Source --------------------------------------------------------------------------------

    def receive(self, max_count: int, wait: float) -> list[Message]:
        if max_count < 1:
            raise ValueError(f"max_count must be >= 1, got {max_count}")
        self._connect()
        out: list[Message] = []
        deadline = time.monotonic() + max(wait, 0.0)
        while not out:
            self._raise_fatal()
            left = deadline - time.monotonic()
            try:
                out.append(self._take(min(max(left, 0.0), 0.25)))
            except queue.Empty:
                if left <= 0 or self._closed:
                    return []
        while len(out) < max_count:
            try:
                out.append(self._take(0.0))
            except queue.Empty:
                break
        return out

    def _take(self, timeout: float) -> Message:
        message, _ = self._ready.get(timeout=timeout) if timeout > 0 else self._ready.get_nowait()
        return message

    def ack(self, messages: Sequence[Message]) -> None:
        self._settle(messages, CONSUME_SUCCESS)

    def reject(self, messages: Sequence[Message], delay: float) -> None:
        # The broker's delay level decides when it comes back; `delay` cannot be honoured.
        self._settle(messages, RECONSUME_LATER)

    def extend(self, messages: Sequence[Message], seconds: float) -> None:
        pass  # nothing lapses while the callback waits

    def close(self) -> None:
        """Give back everything unsettled (RECONSUME_LATER), then shut the client down."""
        with self._lock:
            self._closed = True
            consumer, self._consumer = self._consumer, None
            pending, self._pending = self._pending, set()
        if pending:
            log.info("closing: giving back unsettled rocketmq messages", messages=len(pending))
        for delivery in pending:
            delivery.settle(RECONSUME_LATER)
        if consumer is not None and not watchdog(consumer.shutdown, SHUTDOWN_TIMEOUT):
            log.error(
                "rocketmq consumer shutdown did not finish; leaving it",
                timeout_seconds=SHUTDOWN_TIMEOUT,
            )
        if self._tailer is not None:
            self._tailer.stop()

    # -- internals -----------------------------------------------------------------------------

    def _settle(self, messages: Sequence[Message], status: int) -> None:
        for message in messages:
            delivery = message.handle
            if isinstance(delivery, _Delivery):
                with self._lock:
                    self._pending.discard(delivery)
                delivery.settle(status)

    def _raise_fatal(self) -> None:
        if self._fatal is not None:
            raise self._fatal

    def _on_message(self, received: Any) -> int:
        """Runs on a client thread; blocks it until the pipeline settled the message."""
        handle = received._handle
        assert self._body is not None
        body = self._body(handle)
        reconsumed = int(received.reconsume_times)
        delivery = _Delivery()
        message = Message(
            id=str(received.id), body=body, delivery_count=reconsumed + 1, handle=delivery
        )
        with self._lock:
            if self._closed:
                return RECONSUME_LATER
            self._pending.add(delivery)
        self._ready.put((message, delivery))
        delivery.done.wait()
        return delivery.status

    def _connect(self) -> None:
        if self._closed:
            raise TransientError("the RocketMQ remoting source is closed")
        if self._consumer is not None:
            return
        client = import_binding()
        self._body = Body()
        cfg = self._config
        log_file = client_log(self._state_dir)
        group, topic = cfg.group, cfg.topic
        if cfg.namespace and "MQ_INST_" not in cfg.endpoints:
            # NameSpaceUtil.withNameSpace: the client does this itself only for MQ_INST_ URLs.
            group, topic = f"{cfg.namespace}%{group}", f"{cfg.namespace}%{topic}"
        self._tailer = LogTailer(log_file, self._client_line)
        self._tailer.start()
        failure: list[BaseException] = []

        def start(consumer: Any) -> None:
            try:
                consumer.start()
            except BaseException as exc:  # reported below, in the caller's thread
                failure.append(exc)

        # The client's first log line creates its logger: all of it under the logger's HOME.
        with logger_home(log_file):
            consumer = self._configure(client, group, topic)
            started = watchdog(lambda: start(consumer), START_TIMEOUT)
        if not started:
            raise TransientError(f"rocketmq consumer start() did not finish in {START_TIMEOUT} s")
        if failure:
            raise TransientError(f"cannot start the rocketmq consumer: {failure[0]}")
        self._consumer = consumer
        log.info(
            "rocketmq remoting consumer started",
            endpoints=cfg.endpoints,
            topic=topic,
            group=group,
            tag=cfg.tag,
            client_log=str(log_file),
            max_deliveries=self._max_deliveries,
        )

    def _configure(self, client: ModuleType, group: str, topic: str) -> Any:
        cfg = self._config
        consumer = client.PushConsumer(group)
        try:
            if cfg.endpoints.startswith(("http://", "https://")):
                consumer.set_name_server_domain(cfg.endpoints)
            else:
                consumer.set_name_server_address(cfg.endpoints)
            consumer.set_instance_name(self._instance)
            consumer.set_thread_count(self._threads)
            if cfg.credentials is not None:
                consumer.set_session_credentials(
                    cfg.credentials.username,
                    cfg.credentials.password.get_secret_value(),
                    "ALIYUN",
                )
            consumer.subscribe(topic, self._on_message, cfg.tag or "*")
        except Exception as exc:
            raise ConfigError(self._location, f"the client refused the settings: {exc}") from exc
        return consumer

    def _client_line(self, level: str, text: str) -> None:
        """One line of the client's own log file, into the structured log."""
        text = text[:LOG_LINE_MAX]
        if "AclException" in text and self._fatal is None:
            self._fatal = ConfigError(
                f"{self._location}.credentials",
                f"the broker refused the credentials: {text}",
            )
            log.error("rocketmq broker refused the credentials", client_line=text)
            return
        log_client_line(level, text)


__all__ = ["RemotingSource", "import_binding", "open_queue", "unavailable"]
