"""`consumer run -c PATH [--queue NAME ...] [--drain-timeout S]`: the daemon.

Exit statuses: 0 after a clean shutdown; 1 when the drain deadline passed with work unfinished,
a queue kept crashing or the database could not be reached at start-up; 78 (EX_CONFIG) when the
configuration cannot run, so that systemd's `RestartPreventExitStatus=78` does not loop on it.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

import structlog

from consumer.cli.common import EXIT_CONFIG, EXIT_FAILED, add_command
from consumer.config.load import load_config
from consumer.config.model import Config
from consumer.errors import ConfigError, TransientError
from consumer.extras import queue_extra, require
from consumer.logs import configure_from
from consumer.preflight import check_brokers, check_sink, sink_problem
from consumer.runtime.spec import DEFAULT_DRAIN_SECONDS

if TYPE_CHECKING:
    from consumer.cli.common import Subparsers

log = structlog.get_logger("consumer.runtime")

DRAIN_ENV = "CONSUMER_DRAIN_TIMEOUT"


def add_run(subparsers: Subparsers) -> None:
    parser = add_command(
        subparsers,
        "run",
        "run the daemon",
        "Run every queue of PATH (or only the named ones) until SIGTERM or SIGINT; "
        "then finish in-flight work within the drain deadline and exit.",
        run,
    )
    parser.add_argument(
        "--queue",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this queue (repeatable)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help=f"seconds to finish in-flight work after SIGTERM (default: ${DRAIN_ENV}, "
        f"else {DEFAULT_DRAIN_SECONDS:g}); keep it below systemd's TimeoutStopSec",
    )
    parser.set_defaults(config_status=EXIT_CONFIG)


def run(args: argparse.Namespace) -> int:
    try:
        drain = args.drain_timeout
        if drain is None:
            drain = _seconds(os.environ.get(DRAIN_ENV) or str(DEFAULT_DRAIN_SECONDS))
    except argparse.ArgumentTypeError as exc:
        print(f"{DRAIN_ENV}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    config = load_config(args.config)
    known = [queue.name for queue in config.queues]
    unknown = [name for name in args.queue if name not in known]
    if unknown:
        print(
            f"--queue {', '.join(unknown)}: no such queue in {args.config}; "
            f"known: {', '.join(known)}",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    for queue in config.queues:
        if not args.queue or queue.name in args.queue:
            require(queue_extra(queue), f"{args.config}: queue {queue.name}")
    # Within seconds and in one line (`Unreachable`), rather than workers retrying into the journal.
    check_sink(args.config, config.sink)
    check_brokers(args.config, config, args.queue)
    configure_from(config)
    try:
        _migrate(config)
    except ConfigError as exc:
        log.error("cannot start: configuration", location=exc.location, problem=exc.problem)
        return EXIT_CONFIG
    except TransientError as exc:
        print(sink_problem(args.config, config.sink, exc), file=sys.stderr)
        return EXIT_FAILED
    # Imported here: a spawned worker re-imports the `consumer` script (its __main__), and with
    # it this module; the supervisor and prometheus_client are the main process's alone.
    from consumer.runtime.supervisor import Supervisor  # noqa: PLC0415

    return Supervisor(config, args.queue, drain_seconds=drain).run()


def _migrate(config: Config) -> None:
    """Schema migrations once, before the workers start (they re-check; that is a no-op)."""
    from consumer.sinks import open_sink  # noqa: PLC0415 - see `run`

    sink = open_sink(config.sink)
    try:
        sink.migrate()
    finally:
        sink.close()


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 3600 s: {text!r}")
    return value


__all__ = ["DRAIN_ENV", "add_run", "run"]
