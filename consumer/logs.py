"""Logging: structlog, one JSON object per line on stderr (a console layout on a terminal).

Every line passes through the same chain: context variables (the message being handled), level,
UTC timestamp, exception text, secret redaction, phone-number masking, a cap on the length of
every value (untrusted input must not make a log line of a megabyte), rendering, and a last
redaction of the rendered text. Redaction runs on the event dict *and* on the final line, so a
secret cannot slip out through a repr, a traceback or JSON escaping.

Records of the standard library's `logging` (aiohttp, botocore, the RocketMQ client) take the
same chain through structlog's `ProcessorFormatter`; a library that gives its logger handlers of
its own (the RocketMQ client writes rotating files) is adopted by `adopt_library_loggers`.

The chain is installed once per process and reads its settings at call time, so calling
`configure_logging` again (a worker process after start, a test) takes effect for every logger,
including module-level ones. The processors would stay right even with structlog's
`cache_logger_on_first_use`; it is off all the same, because a cached logger ignores any later
`structlog.configure` (such as `structlog.testing.capture_logs` in tests) and caching saved
about 1 µs of the ~16 µs a JSON line costs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from consumer.config.model import Config, LogConfig
from consumer.errors import clip
from consumer.redaction import (
    REDACTED,
    SEVEN_DIGITS,
    alternation,
    is_phone_key,
    json_spellings,
    mask_phone_numbers,
    mask_text,
    mask_value,
    redact_value,
    scrub,
    spellings,
)

LOG_VALUE_LIMIT = 2048
"""Characters of one string value on a log line; the rest is cut, and its size said."""
LOG_EXCEPTION_LIMIT = 16384
"""Characters of a rendered traceback (`exception`), which is longer by nature."""
MESSAGE_KEYS = ("queue", "provider", "kind", "call_id", "event_id", "message_id")

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
    "msg": logging.INFO,
}


@dataclass
class _Settings:
    level: int = logging.INFO
    renderer: Processor = field(default_factory=structlog.processors.JSONRenderer)
    mask_phone_numbers: bool = True
    secrets: re.Pattern[str] | None = None  # the secrets as they appear in event values
    rendered_secrets: re.Pattern[str] | None = None  # ... and as they appear in the output
    stream: TextIO | None = None  # None: whatever sys.stderr is when a line is written
    lock: threading.Lock = field(default_factory=threading.Lock)


_settings = _Settings()


def configure_logging(
    log: LogConfig | None = None,
    *,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Set up logging for this process: call it in the main process and in every worker.

    `secrets` are replaced by `***` wherever they appear; `stream` defaults to stderr.
    Also routes the standard library's `logging` (aiohttp, SDKs) through the same chain.
    """
    log = log or LogConfig()
    target = stream or sys.stderr
    fmt = effective_format(log, target)
    # A secret made only of * cannot be told from the mask itself; it is no secret anyway.
    forms = {form for value in secrets if value.strip("*") for form in spellings(value)}
    rendered = forms | {form for value in forms for form in json_spellings(value)}
    _settings.level = _LEVELS[log.level]
    _settings.mask_phone_numbers = log.mask_phone_numbers
    _settings.stream = stream
    _settings.secrets = alternation(forms)
    _settings.rendered_secrets = alternation(rendered)
    _settings.renderer = (
        structlog.dev.ConsoleRenderer(colors=_isatty(target), exception_formatter=_plain_exc)
        if fmt == "console"
        else structlog.processors.JSONRenderer(_dumps_line)
    )
    if structlog.get_config()["processors"] is not _PROCESSORS:  # first call, or someone else's
        structlog.configure(
            processors=_PROCESSORS,
            wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
            logger_factory=_LineWriter,
            context_class=dict,
            cache_logger_on_first_use=False,
        )
    _route_stdlib(_settings.level)


def effective_format(log: LogConfig, stream: TextIO | None = None) -> str:
    """`log.format`, or when unset what `configure_logging` picks for `stream` (stderr): a
    console layout on a terminal, JSON lines elsewhere (systemd, Docker, a pipe)."""
    return log.format or ("console" if _isatty(stream or sys.stderr) else "json")


def configure_from(config: Config) -> None:
    """`configure_logging` with a loaded configuration's log section and secrets."""
    configure_logging(config.log, secrets=config.secrets)


def get_logger(name: str | None = None) -> FilteringBoundLogger:
    logger: FilteringBoundLogger = structlog.get_logger(name) if name else structlog.get_logger()
    return logger


def writes(level: int) -> bool:
    """Whether a line at `level` may be written: False only when this module's chain filters it
    out (a test's `capture_logs` sees every line), so a hot path can skip building it."""
    chain = structlog.get_config()["processors"]
    return level >= _settings.level or not chain or chain[0] is not _filter_level


# -- message context -------------------------------------------------------------------------


@contextmanager
def message_context(
    *,
    queue: str | None = None,
    provider: str | None = None,
    kind: str | None = None,
    call_id: str | None = None,
    event_id: str | None = None,
    message_id: str | None = None,
) -> Iterator[None]:
    """Every line logged inside (in this thread or task) carries these keys; `None`s are left out.

    Nest it: bind queue and message_id for the message, then kind, call_id and event_id per event.
    """
    fields = _present(queue, provider, kind, call_id, event_id, message_id)
    with structlog.contextvars.bound_contextvars(**fields):
        yield


def _present(*values: str | None) -> dict[str, str]:
    return {
        key: value for key, value in zip(MESSAGE_KEYS, values, strict=True) if value is not None
    }


# -- processors ------------------------------------------------------------------------------


def _filter_level(_: WrappedLogger, method: str, event: EventDict) -> EventDict:
    if _LEVELS.get(method, logging.INFO) < _settings.level:
        raise structlog.DropEvent
    return event


def _add_logger_name(logger: WrappedLogger, _: str, event: EventDict) -> EventDict:
    name = getattr(logger, "name", None)
    if name:
        event.setdefault("logger", name)
    return event


def _redact(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    pattern = _settings.secrets
    if pattern is None:
        return event
    redacted: EventDict = redact_value(event, pattern)
    return redacted


def _cap(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """The last line against log amplification: every long string is cut (`errors.clip`).

    Runs after the redaction and the masking (both linear), which must see whole values: a cut
    could split a secret or a phone number and leave its head unmasked.
    """
    for key, value in event.items():
        if type(value) is str:
            limit = LOG_EXCEPTION_LIMIT if key == "exception" else LOG_VALUE_LIMIT
            if len(value) > limit:
                event[key] = clip(value, limit, quote=False)
        elif isinstance(value, dict | list | tuple | bytes):
            event[key] = _cap_value(value)
    return event


def _cap_value(value: Any) -> Any:
    if isinstance(value, str | bytes):
        return clip(value, LOG_VALUE_LIMIT, quote=False) if len(value) > LOG_VALUE_LIMIT else value
    if isinstance(value, dict):
        return {_cap_value(key): _cap_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_cap_value(item) for item in value]
    return value


_UNMASKED = frozenset({"timestamp", "level", "logger"})


def _mask(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    if not _settings.mask_phone_numbers:
        return event
    # The same as mask_value on every value, with the common cases inlined: a line has ~10
    # values, most of them short strings and small numbers that cannot hold a phone number.
    masked: EventDict = {}
    for key, value in event.items():
        kind = type(value)
        if key in _UNMASKED or value is None or kind is float or kind is bool:
            masked[key] = value
        elif kind is str:
            masked[key] = (
                value if SEVEN_DIGITS.search(value) is None else mask_text(value, is_phone_key(key))
            )
        elif kind is int and not is_phone_key(key):
            masked[key] = value
        else:
            masked[key] = mask_value(value, is_phone_key(key))
    return masked


_FIRST_KEYS = ("timestamp", "level", "logger", "event")
# What json.dumps(ensure_ascii=False, default=repr) writes, without building an encoder per line.
_LINE_ENCODER = json.JSONEncoder(ensure_ascii=False, default=repr)


def _dumps_line(event: EventDict, **_: Any) -> str:
    return _LINE_ENCODER.encode(event)


def _render(logger: WrappedLogger, method: str, event: EventDict) -> str:
    ordered = {key: event[key] for key in _FIRST_KEYS if key in event}
    ordered.update(event)  # the fixed keys first: easier to read, same JSON
    rendered = _settings.renderer(logger, method, ordered)
    line = rendered if isinstance(rendered, str) else str(rendered)
    pattern = _settings.rendered_secrets
    return scrub(line, pattern) if pattern is not None else line


def _plain_exc(sio: TextIO, exc_info: Any) -> None:
    structlog.dev.plain_traceback(sio, exc_info)


# What every line gets, whether it comes from structlog or from a `logging` logger.
_ENRICH: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    _add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    structlog.processors.StackInfoRenderer(),
    structlog.processors.format_exc_info,
]
_FINISH: list[Processor] = [_redact, _mask, _cap, _render]

_PROCESSORS: list[Processor] = [_filter_level, *_ENRICH, *_FINISH]

# The standard library's records (aiohttp, botocore, the RocketMQ client): structlog's own
# bridge renders them with the same chain; `logging` filters their level.
_FOREIGN = structlog.stdlib.ProcessorFormatter(
    foreign_pre_chain=[structlog.stdlib.add_logger_name, *_ENRICH],
    processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *_FINISH],
)


# -- output ----------------------------------------------------------------------------------


class _LineWriter:
    """The wrapped logger: writes whole lines to the configured stream (stderr by default).

    It looks the stream up on every line, so a cached logger follows a reconfiguration (or a
    test's replaced stderr), and it writes each line with one call under a lock.
    """

    def __init__(self, name: object = None) -> None:
        self.name = str(name) if name is not None else None

    def _write(self, line: str) -> None:
        _write_line(line)

    msg = debug = info = warning = warn = error = critical = exception = fatal = log = _write


def _write_line(line: str) -> None:
    stream = _settings.stream or sys.stderr
    with _settings.lock:
        stream.write(line + "\n")
        stream.flush()


def _reset_lock_in_child() -> None:
    _settings.lock = threading.Lock()  # a fork may copy the lock while another thread holds it


os.register_at_fork(after_in_child=_reset_lock_in_child)


class _StdlibHandler(logging.Handler):
    """Writes `logging` records, rendered by `_FOREIGN`, where our own lines go."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(_FOREIGN)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _write_line(self.format(record))
        except Exception:
            self.handleError(record)


LIBRARY_LOGGERS = ("rocketmq-python-client",)
"""Loggers that libraries give handlers of their own and cut off from the root: the RocketMQ 5
client writes rotating files under `$HOME/logs` in its own format, unredacted."""


def adopt_library_loggers(names: Iterable[str] = LIBRARY_LOGGERS) -> None:
    """Take these loggers' lines into ours: their own handlers are closed, they propagate.

    Call it after importing the library that configures them (its import installs the handlers).
    """
    for name in names:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)  # the root's level decides, as for every other logger


def capture_stdlib_logger(name: str) -> None:
    """Route one `logging` logger that does not propagate to the root (see `adopt_...`)."""
    adopt_library_loggers([name])


def _route_stdlib(level: int) -> None:
    root = logging.getLogger()
    if not any(isinstance(handler, _StdlibHandler) for handler in root.handlers):
        root.addHandler(_StdlibHandler())
    root.setLevel(level)
    adopt_library_loggers(
        name for name in LIBRARY_LOGGERS if name in logging.root.manager.loggerDict
    )


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


__all__ = [
    "LIBRARY_LOGGERS",
    "LOG_EXCEPTION_LIMIT",
    "LOG_VALUE_LIMIT",
    "MESSAGE_KEYS",
    "REDACTED",
    "adopt_library_loggers",
    "capture_stdlib_logger",
    "configure_from",
    "configure_logging",
    "effective_format",
    "get_logger",
    "mask_phone_numbers",
    "message_context",
    "writes",
]
