"""RocketMQ 4.x (Remoting protocol) through rocketmq-client-python 2.0.0's PushConsumer.

The binding and the gRPC client (rocketmq-python-client 5.x) both install a top-level package
`rocketmq`. The 2.0.0 one lives in its own directory (`pip install --target`, the
`consumer[rocketmq4]` extra: `$CONSUMER_ROCKETMQ4_PATH`, default `<venv>/rocketmq4`) and is
loaded from there under another module name, so both can live in one process and neither
shadows the other. Its native half, librocketmq, comes from `$CONSUMER_LIBROCKETMQ` when set.

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

import contextlib
import ctypes
import ctypes.util
import importlib.util
import itertools
import os
import queue
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import structlog

from consumer.config.model import RocketMqConfig
from consumer.errors import ConfigError, TransientError
from consumer.sources.base import Message

log = structlog.get_logger("consumer.sources.remoting")

CONSUME_SUCCESS = 0
RECONSUME_LATER = 1
MODULE = "consumer_rocketmq4"
"""The name the 2.0.0 binding is imported under (its own name, `rocketmq`, is the 5.x one's)."""
START_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 30.0
LOG_LINE_MAX = 400
_import_lock = threading.Lock()
_instances = itertools.count(1)


class _Process:
    """What is loaded once per process."""

    binding: ModuleType | None = None
    log_file: Path | None = None
    """librocketmq's logger is a process-wide singleton: its file is fixed by the first start."""


_BENIGN = ("TcpRemotingClient::stopAllTcpTransportThread End",)
"""Lines the client logs as errors on every clean shutdown."""
_SETTINGS = re.compile(r"\[(logConfigs|showClientConfigs):\d+\]$")
"""The client logs its settings as warnings at every start."""
_LINE = re.compile(r"^\[(?P<time>[^\]]*)\]\((?P<level>\w+)\):(?P<text>.*)$")


def binding_path() -> Path:
    return Path(os.environ.get("CONSUMER_ROCKETMQ4_PATH") or Path(sys.prefix) / "rocketmq4")


def unavailable() -> str | None:
    """Why the binding cannot load here (without loading it), or None."""
    if not (binding_path() / "rocketmq" / "client.py").is_file():
        return f"rocketmq-client-python 2.0.0 is not in {binding_path()} (make rocketmq4)"
    library = os.environ.get("CONSUMER_LIBROCKETMQ", "")
    packaged = binding_path() / "rocketmq" / "librocketmq.so"
    if library:
        return None if Path(library).is_file() else f"CONSUMER_LIBROCKETMQ={library} is missing"
    if packaged.is_file() or ctypes.util.find_library("rocketmq"):
        return None
    return "no librocketmq: set CONSUMER_LIBROCKETMQ (scripts/build-librocketmq.sh prints it)"


def import_binding() -> ModuleType:
    """rocketmq-client-python 2.0.0's `client` module, loaded over `$CONSUMER_LIBROCKETMQ`."""
    with _import_lock:
        if _Process.binding is not None:
            return _Process.binding
        package = binding_path() / "rocketmq"
        if not (package / "client.py").is_file():
            raise ConfigError(
                "rocketmq.protocol",
                f"remoting needs rocketmq-client-python 2.0.0 in {package.parent} "
                "(pip install --target DIR rocketmq-client-python==2.0.0, or "
                "set CONSUMER_ROCKETMQ4_PATH)",
            )
        library = os.environ.get("CONSUMER_LIBROCKETMQ", "")
        if library and not Path(library).is_file():
            raise ConfigError(
                "rocketmq.protocol",
                f"CONSUMER_LIBROCKETMQ={library} does not exist "
                "(build it with scripts/build-librocketmq.sh SOURCE_TARBALL)",
            )
        find = ctypes.util.find_library
        if library:
            # The binding asks find_library('rocketmq') when its package holds no .so.
            ctypes.util.find_library = lambda name: library if name == "rocketmq" else find(name)
        try:
            spec = importlib.util.spec_from_file_location(
                MODULE, package / "__init__.py", submodule_search_locations=[str(package)]
            )
            assert spec is not None
            assert spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[MODULE] = module
            spec.loader.exec_module(module)
            client = importlib.import_module(f"{MODULE}.client")
        except (ImportError, OSError) as exc:
            sys.modules.pop(MODULE, None)
            raise ConfigError(
                "rocketmq.protocol",
                f"cannot load librocketmq ({exc}); set CONSUMER_LIBROCKETMQ to the .so built by "
                "scripts/build-librocketmq.sh, or install upstream's release package",
            ) from exc
        finally:
            ctypes.util.find_library = find
        ffi = importlib.import_module(f"{MODULE}.ffi")
        if library and os.path.realpath(ffi._DYLIB_PATH) != os.path.realpath(library):
            log.warning(
                "rocketmq-client-python loaded its packaged librocketmq, not CONSUMER_LIBROCKETMQ",
                loaded=ffi._DYLIB_PATH,
            )
        _Process.binding = client
        return client


class _Body:
    """Body and length from the C API (the binding's `body` stops at a NUL byte)."""

    def __init__(self, dll: Any) -> None:
        self._body = dll["GetMessageBody"]
        self._body.argtypes = [ctypes.c_void_p]
        self._body.restype = ctypes.c_void_p
        self._length = dll["GetMessageBodyLength"]
        self._length.argtypes = [ctypes.c_void_p]
        self._length.restype = ctypes.c_int

    def __call__(self, handle: int) -> bytes:
        pointer, length = self._body(handle), self._length(handle)
        return ctypes.string_at(pointer, length) if pointer and length > 0 else b""


@dataclass(eq=False)
class _Delivery:
    """One callback waiting on a native thread for its message's outcome."""

    status: int = RECONSUME_LATER
    done: threading.Event = field(default_factory=threading.Event)

    def settle(self, status: int) -> None:
        if not self.done.is_set():
            self.status = status
            self.done.set()


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
        self._tailer: _LogTailer | None = None
        self._body: _Body | None = None

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
        if consumer is not None and not _watchdog(consumer.shutdown, SHUTDOWN_TIMEOUT):
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
        ffi = sys.modules[f"{MODULE}.ffi"]
        self._body = _Body(ffi.dll)
        cfg = self._config
        log_file = _client_log(self._state_dir)
        group, topic = cfg.group, cfg.topic
        if cfg.namespace and "MQ_INST_" not in cfg.endpoints:
            # NameSpaceUtil.withNameSpace: the client does this itself only for MQ_INST_ URLs.
            group, topic = f"{cfg.namespace}%{group}", f"{cfg.namespace}%{topic}"
        self._tailer = _LogTailer(log_file, self._client_line)
        self._tailer.start()
        failure: list[BaseException] = []

        def start(consumer: Any) -> None:
            try:
                consumer.start()
            except BaseException as exc:  # reported below, in the caller's thread
                failure.append(exc)

        # The client's first log line creates its logger: all of it under the logger's HOME.
        with _logger_home(log_file):
            consumer = self._configure(client, group, topic)
            started = _watchdog(lambda: start(consumer), START_TIMEOUT)
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
        if text.startswith(_BENIGN) or _SETTINGS.search(text):
            log.debug("rocketmq client", client_line=text)
        elif level in ("error", "fatal"):
            log.error("rocketmq client", client_line=text)
        elif level == "warning":
            log.warning("rocketmq client", client_line=text)


def _watchdog(call: Callable[[], object], timeout: float) -> bool:
    """Run `call` on a daemon thread; False if it did not return within `timeout`."""
    thread = threading.Thread(target=call, name="rocketmq-watchdog", daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive()


def _client_log(state_dir: str | None) -> Path:
    """Where librocketmq's logger writes: `<state>/rocketmq-client/rocketmq_client.log`."""
    if _Process.log_file is not None:
        return _Process.log_file
    root = (
        state_dir
        or os.environ.get("STATE_DIRECTORY", "").split(":")[0]
        or os.path.join(tempfile.gettempdir(), f"consumer-{os.getuid()}")
    )
    directory = Path(root).absolute() / "rocketmq-client"
    directory.mkdir(parents=True, exist_ok=True)
    return directory / "rocketmq_client.log"


@contextlib.contextmanager
def _logger_home(log_file: Path) -> Iterator[None]:
    """Around the first consumer's start: the logger (a process-wide singleton, created then)
    writes to `$HOME` + `$ROCKETMQ_CLIENT_LOG_DIR`; an empty HOME means the passwd entry's, so
    HOME is "/" and the directory absolute, for as long as the start takes."""
    if _Process.log_file is not None:
        yield
        return
    os.environ["ROCKETMQ_CLIENT_LOG_DIR"] = f"{log_file.parent}/"
    old_home = os.environ.get("HOME")
    os.environ["HOME"] = "/"
    try:
        yield
    finally:
        if old_home is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = old_home
        _Process.log_file = log_file


class _LogTailer:
    """Follows the client's log file from its current end; hands each line to `emit`."""

    def __init__(self, path: Path, emit: Callable[[str, str], None]) -> None:
        self._path = path
        self._emit = emit
        self._stop = threading.Event()
        self._offset = path.stat().st_size if path.exists() else 0
        self._thread = threading.Thread(target=self._run, name="rocketmq-log", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._read()  # the lines of the shutdown itself

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._read()

    def _read(self) -> None:
        with contextlib.suppress(OSError):
            with self._path.open("rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size < self._offset:  # rotated
                    self._offset = 0
                handle.seek(self._offset)
                chunk = handle.read(1 << 20)
            end = chunk.rfind(b"\n")
            if end < 0:
                return
            self._offset += end + 1
            for raw in chunk[: end + 1].splitlines():
                line = raw.decode("utf-8", "replace")
                match = _LINE.match(line)
                if match:
                    self._emit(match["level"], match["text"])


__all__ = ["RemotingSource", "import_binding", "unavailable"]
