"""Can the database and the brokers be reached at all? One clear line when they cannot.

A command that needs the database (`run`, `dead-letters ...`) first tries one plain connection
with a short timeout, rather than letting the sink's pool retry in the background for its
acquire timeout (10 s) and log every attempt. `consumer run` also opens a TCP connection to
every pull queue's broker (and Alicom token endpoint) before it starts any worker. What cannot
be reached becomes `Unreachable`, whose text is the one line the command prints:

    config/local.yaml: sink postgresql://app:***@db:5432/calls: cannot connect: ... refused

naming the configuration file, the sink (password masked) or the queue and endpoint, and the
cause. Once running, the daemon waits out outages instead (the pipeline's retries, the
workers' reconnects); this is only about starting on a setup that cannot work right now.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from consumer.config.model import AlicomTokenAuth, Config, QueueConfig, SinkConfig
from consumer.errors import ConsumerError

PROBE_SECONDS = 3.0
"""How long one connection attempt may take before the target counts as unreachable."""


class Unreachable(ConsumerError):
    """The database or a broker cannot be reached; `str()` is the line to print."""


def sink_problem(config_path: str, sink: SinkConfig, cause: object) -> str:
    """`PATH: sink URL (password masked): cause`, on one line."""
    return f"{config_path}: sink {sink.redacted_url}: {_one_line(cause, sink)}"


def check_sink(config_path: str, sink: SinkConfig, timeout: float = PROBE_SECONDS) -> None:
    """Raise `Unreachable` when the PostgreSQL server does not accept a connection within
    `timeout` seconds. A SQLite file needs no server: its errors come at once from `migrate`."""
    if not sink.url.startswith(("postgresql://", "postgres://")):
        return
    import psycopg  # noqa: PLC0415 - only PostgreSQL users load psycopg

    try:
        connection = psycopg.connect(
            sink.url, connect_timeout=max(1, round(timeout)), application_name="consumer"
        )
    except psycopg.Error as exc:
        raise Unreachable(sink_problem(config_path, sink, f"cannot connect: {exc}")) from None
    connection.close()


def check_brokers(
    config_path: str,
    config: Config,
    queues: Sequence[str] = (),
    timeout: float = PROBE_SECONDS,
) -> None:
    """Raise `Unreachable` when a pull queue's broker (any of a RocketMQ queue's endpoints) or
    its Alicom token endpoint refuses a TCP connection or does not answer within `timeout`.

    All targets are tried at once, so the check takes at most about `timeout` seconds.
    """
    selected = [q for q in config.queues if q.source != "http" and (not queues or q.name in queues)]
    checks = [(queue, what, group) for queue in selected for what, group in _targets(queue)]
    if not checks:
        return
    with ThreadPoolExecutor(min(len(checks), 16), thread_name_prefix="preflight") as pool:
        causes = list(pool.map(lambda check: _first_reachable(check[2], timeout), checks))
    failed = [
        f"queue {queue.name}: {what} {', '.join(f'{h}:{p}' for h, p in group)}: {cause}"
        for (queue, what, group), cause in zip(checks, causes, strict=True)
        if cause is not None
    ]
    if failed:
        raise Unreachable(_one_line(f"{config_path}: {'; '.join(failed)}", None))


def _targets(queue: QueueConfig) -> Iterable[tuple[str, list[tuple[str, int]]]]:
    if queue.mns is not None:
        yield "MNS endpoint", [_url_address(queue.mns.endpoint)]
        if isinstance(queue.mns.auth, AlicomTokenAuth):
            yield "Alicom token endpoint", [_url_address(queue.mns.auth.token_endpoint)]
    if queue.rocketmq is not None:
        addresses = [item.rsplit(":", 1) for item in queue.rocketmq.endpoints.split(";")]
        yield "RocketMQ endpoints", [(host, int(port)) for host, port in addresses]


def _url_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def _first_reachable(addresses: Sequence[tuple[str, int]], timeout: float) -> str | None:
    """None when one of the addresses accepts a connection, else why the last one did not."""
    cause = "no address"
    for host, port in addresses:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return None
        except TimeoutError:
            cause = f"no answer within {timeout:g} s"
        except socket.gaierror as exc:
            cause = f"unknown host: {exc.strerror}"
        except OSError as exc:
            cause = f"cannot connect: {exc.strerror or exc}"
    return cause


def _one_line(cause: object, sink: SinkConfig | None) -> str:
    text = " ".join(str(cause).split())  # psycopg's messages span lines (a hint after a tab)
    password = urlsplit(sink.url).password if sink is not None else None
    return text.replace(password, "***") if password else text


__all__ = ["PROBE_SECONDS", "Unreachable", "check_brokers", "check_sink", "sink_problem"]
