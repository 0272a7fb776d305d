"""Forwarders fed from the outbox: a real HTTP receiver on 127.0.0.1, a callable, a JSONL file."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from consumer.config.model import Forward, SinkConfig
from consumer.errors import ConfigError
from consumer.model import CallEvent
from consumer.sinks import open_forward_runner, open_sink
from consumer.sinks.forward import (
    SIGNATURE_HEADER,
    ForwardRunner,
    JsonlForwarder,
    PythonForwarder,
    WebhookForwarder,
    build_all,
    forward_name,
)
from consumer.sinks.sql import SqlSink
from tests.sinks.conftest import SinkFactory
from tests.sinks.helpers import count, query
from tests.sinks.scenarios import SCENARIOS, event, stored

SECRET = "webhook-secret"


class Receiver:
    """An HTTP endpoint that checks signatures and answers from a script of status codes."""

    def __init__(self, statuses: Sequence[int] = ()) -> None:
        self.statuses = list(statuses)  # answered in turn; 200 once used up
        self.bodies: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.requests = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests += 1
                expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                if not hmac.compare_digest(self.headers.get(SIGNATURE_HEADER, ""), expected):
                    receiver.bad_signatures += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                if status == 200:
                    receiver.bodies.append(json.loads(body))
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"try later")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/calls"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def event_ids(self) -> list[str]:
        return [e["event_id"] for body in self.bodies for e in body["events"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _events(n: int) -> list[CallEvent]:
    return [event("call.ringing", "moor7", f"c{k}", k) for k in range(n)]


def _retry_in(sink: SqlSink, clock: Clock) -> float:
    """Seconds until the (only) forwarder's next attempt, as the database holds it."""
    ((retry_at,),) = query(sink, "SELECT next_attempt_at FROM forward_state")
    return float(retry_at) - clock.now


def _runner(sink: SqlSink, forwarder: Any, clock: Clock, **options: Any) -> ForwardRunner:
    return ForwardRunner(sink, [forwarder], clock=clock, **options)


# --- webhook --------------------------------------------------------------------------------


def test_webhook_delivers_signed_batches_in_order(
    make_sink: SinkFactory, receiver: Receiver
) -> None:
    # Given a sink forwarding to a webhook, and 7 stored events
    hook = WebhookForwarder(receiver.url, SECRET, timeout=5)
    sink = make_sink(forwarders=[hook.name])
    events = _events(7)
    sink.store(stored(events[:4]), [])
    sink.store(stored(events[4:]), [])
    # When the runner delivers in batches of 3
    runner = _runner(sink, hook, Clock(), batch_size=3)
    runner.run_once()
    # Then the receiver got every event once, in commit order, with valid signatures
    assert receiver.bad_signatures == 0
    assert receiver.event_ids == [
        e.event_id for e in sorted(events[:4], key=lambda e: e.event_id)
    ] + [e.event_id for e in sorted(events[4:], key=lambda e: e.event_id)]
    assert [len(body["events"]) for body in receiver.bodies] == [3, 3, 1]
    # And the events are the objects `consumer normalize` prints
    first = receiver.bodies[0]["events"][0]
    assert CallEvent.model_validate(first) in events
    assert count(sink, "outbox") == 0


def test_webhook_failures_are_retried_later_and_nothing_is_dropped(
    make_sink: SinkFactory,
) -> None:
    # Given a receiver that fails twice (503, 500) before it accepts
    receiver = Receiver(statuses=[503, 500])
    try:
        hook = WebhookForwarder(receiver.url, SECRET)
        sink = make_sink(forwarders=[hook.name])
        events = _events(3)
        sink.store(stored(events), [])
        clock = Clock()
        runner = _runner(sink, hook, clock, initial_backoff=2.0, max_backoff=60.0)
        # When the runner tries: the first failure asks for a 2 s wait
        runner.run_once()
        assert _retry_in(sink, clock) == pytest.approx(2.0)
        # Then nothing is delivered yet and the rows are kept, with the error recorded
        assert receiver.event_ids == []
        assert sink.outbox_backlog() == {hook.name: 3}
        (state,) = query(sink, "SELECT failures, last_error FROM forward_state")
        assert state[0] == 1
        assert "HTTP 503" in state[1]
        # When called again before the backoff has passed, Then it does not even try
        runner.run_once()
        assert receiver.requests == 1
        # When the backoff passes: the second failure doubles it
        clock.now += 2.0
        runner.run_once()
        assert _retry_in(sink, clock) == pytest.approx(4.0)
        # When that passes too, Then the same events are delivered, once, and the state is reset
        clock.now += 4.0
        runner.run_once()
        assert sorted(receiver.event_ids) == sorted(e.event_id for e in events)
        assert sink.outbox_backlog() == {}
        assert query(sink, "SELECT failures, last_error, delivered FROM forward_state") == [
            (0, None, 3)
        ]
    finally:
        receiver.close()


def test_an_unreachable_webhook_is_retried(make_sink: SinkFactory) -> None:
    # Given a webhook on a port where nothing listens
    closed = Receiver()
    url = closed.url
    closed.close()
    hook = WebhookForwarder(url, SECRET, timeout=1)
    sink = make_sink(forwarders=[hook.name])
    sink.store(stored(_events(2)), [])
    # When the runner tries, Then the connection error becomes a retry, not a loss
    clock = Clock()
    _runner(sink, hook, clock).run_once()
    assert _retry_in(sink, clock) == pytest.approx(1.0)
    assert count(sink, "outbox") == 2
    (error,) = query(sink, "SELECT last_error FROM forward_state")
    assert "ConnectionRefusedError" in error[0]


def test_two_runners_share_a_forwarder_without_double_delivery(
    make_sink: SinkFactory, receiver: Receiver
) -> None:
    # Given two workers' runners on one outbox
    hook = WebhookForwarder(receiver.url, SECRET)
    sink = make_sink(forwarders=[hook.name])
    sink.store(stored(_events(50)), [])
    clock = Clock()
    runners = [_runner(sink, hook, clock, batch_size=5) for _ in range(2)]
    # When they run at the same time
    threads = [threading.Thread(target=r.run_once, kwargs={"max_batches": 20}) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for runner in runners:  # whatever the other left over
        runner.run_once(max_batches=20)
    # Then every event was delivered exactly once
    assert sorted(receiver.event_ids) == sorted(e.event_id for e in _events(50))


def test_webhook_url_must_be_http() -> None:
    # Given a URL of another scheme, Then building the forwarder names the problem
    with pytest.raises(ConfigError, match="must be an http:// or https:// URL"):
        WebhookForwarder("ftp://example.internal/x")


# --- python callable ------------------------------------------------------------------------

RECEIVED: list[list[CallEvent]] = []
FAIL_NEXT: list[bool] = []


def collect(events: list[CallEvent]) -> None:
    """The forward target named `tests.sinks.test_forward:collect`."""
    if FAIL_NEXT:
        FAIL_NEXT.pop()
        raise RuntimeError("downstream is down")
    RECEIVED.append(events)


def test_python_callable_gets_call_events_and_is_retried(make_sink: SinkFactory) -> None:
    # Given a callable that fails once
    RECEIVED.clear()
    FAIL_NEXT[:] = [True]
    target = PythonForwarder("tests.sinks.test_forward:collect")
    sink = make_sink(forwarders=[target.name])
    events = list(SCENARIOS[1].events)
    sink.store(stored(events), [])
    clock = Clock()
    runner = _runner(sink, target, clock)
    # When the runner calls it, Then the exception means retry later
    runner.run_once()
    assert _retry_in(sink, clock) == pytest.approx(1.0)
    assert RECEIVED == []
    # When the backoff passes, Then it gets the events as CallEvent objects
    clock.now += 1.0
    runner.run_once()
    assert len(RECEIVED) == 1
    assert all(isinstance(e, CallEvent) for e in RECEIVED[0])
    assert sorted(e.event_id for e in RECEIVED[0]) == sorted({e.event_id for e in events})


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("no_such_module_xyz:f", "cannot import 'no_such_module_xyz'"),
        ("tests.sinks.test_forward:nothing_here", "has no callable 'nothing_here'"),
        ("tests.sinks.test_forward:SECRET", "has no callable 'SECRET'"),
    ],
)
def test_a_bad_callable_is_a_config_error(target: str, problem: str) -> None:
    # Given a python forward naming something that cannot be called, Then the key path is named
    entry = Forward.model_validate({"python": {"callable": target}})
    with pytest.raises(ConfigError, match=problem) as raised:
        build_all([entry])
    assert raised.value.location == "sink.forward[0].python.callable"


# --- jsonl ----------------------------------------------------------------------------------


def test_jsonl_appends_one_event_per_line(make_sink: SinkFactory, tmp_path: Path) -> None:
    # Given a JSONL file whose last line was torn by a crash
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"event_id": "old"}\n{"event_id": "tor')
    target = JsonlForwarder(path)
    sink = make_sink(forwarders=[target.name])
    events = _events(3)
    sink.store(stored(events), [])
    # When the runner delivers
    _runner(sink, target, Clock()).run_once()
    # Then the new events are whole lines after the old content, each a CallEvent
    lines = path.read_bytes().split(b"\n")
    assert lines[:2] == [b'{"event_id": "old"}', b'{"event_id": "tor']
    assert lines[-1] == b""
    written = [CallEvent.model_validate_json(line) for line in lines[2:-1]]
    assert sorted(written, key=lambda e: e.event_id) == sorted(events, key=lambda e: e.event_id)


def test_jsonl_needs_an_existing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="directory does not exist"):
        JsonlForwarder(tmp_path / "missing" / "events.jsonl")


# --- configuration ----------------------------------------------------------------------------


def test_open_sink_and_runner_from_config(tmp_path: Path, receiver: Receiver) -> None:
    # Given a sink section with all three forwarders
    config = SinkConfig.model_validate(
        {
            "url": f"sqlite:///{tmp_path / 'events.db'}",
            "forward": [
                {"webhook": {"url": receiver.url, "secret": SECRET, "timeout": "2s"}},
                {"python": {"callable": "tests.sinks.test_forward:collect"}},
                {"jsonl": {"path": str(tmp_path / "events.jsonl")}},
            ],
        }
    )
    RECEIVED.clear()
    FAIL_NEXT.clear()
    # When the sink and its runner are opened and an event is stored and forwarded
    sink = open_sink(config)
    sink.migrate()
    runner = open_forward_runner(config, sink)
    assert runner is not None
    sink.store(stored(_events(1)), [])
    runner.start()
    try:
        deadline = threading.Event()
        for _ in range(100):
            if count(sink, "outbox") == 0:
                break
            deadline.wait(0.05)
    finally:
        runner.stop(timeout=10)
    # Then every forwarder got it
    assert sink.forwarders == tuple(forward_name(entry) for entry in config.forward)
    assert receiver.event_ids == [_events(1)[0].event_id]
    assert [[e.event_id for e in batch] for batch in RECEIVED] == [[_events(1)[0].event_id]]
    assert len((tmp_path / "events.jsonl").read_text().splitlines()) == 1
    sink.close()


def test_no_forwarders_no_runner(tmp_path: Path) -> None:
    config = SinkConfig(url=f"sqlite:///{tmp_path / 'e.db'}")
    sink = open_sink(config)
    assert open_forward_runner(config, sink) is None
    sink.close()


def test_the_same_forwarder_twice_is_refused(tmp_path: Path) -> None:
    # Given two identical jsonl entries, Then opening the sink names the duplicate
    entry = {"jsonl": {"path": str(tmp_path / "x.jsonl")}}
    config = SinkConfig.model_validate({"url": "sqlite:///x.db", "forward": [entry, entry]})
    with pytest.raises(ConfigError, match="configured twice"):
        open_sink(config)


def test_a_webhook_query_token_stays_out_of_the_name() -> None:
    entry = Forward.model_validate({"webhook": {"url": "https://h.example/p?token=abc123"}})
    name = forward_name(entry)
    assert "abc123" not in name
    assert name.startswith("webhook:https://h.example/p#")


def test_backoff_is_capped_even_after_days_of_failures(make_sink: SinkFactory) -> None:
    # Given a forwarder that has failed thousands of times already
    hook = WebhookForwarder("http://127.0.0.1:9/unreachable", SECRET, timeout=1)
    sink = make_sink(forwarders=[hook.name])
    sink.store(stored(_events(1)), [])
    clock = Clock()
    with sink._write() as cur:
        cur.execute(
            sink._sql("INSERT INTO forward_state (forwarder, failures) VALUES (?, ?)"),
            (hook.name, 5000),
        )
    # When it fails once more, Then the wait is the maximum, not an overflow
    _runner(sink, hook, clock, max_backoff=300.0).run_once()
    assert _retry_in(sink, clock) == pytest.approx(300.0)
    assert count(sink, "outbox") == 1
