"""The nonce ledger: a signed push's nonce is stored in the transaction of its events."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from consumer.sinks.base import NonceClaim, StoredEvent
from consumer.sinks.sqlite import SqliteSink
from consumer.sources.http_nonces import NonceLedger
from tests.sinks.helpers import query
from tests.sinks.scenarios import SCENARIOS, stored, with_call_id


def request_events(message_id: str) -> list[StoredEvent]:
    return [
        replace(s, message_id=message_id)
        for s in stored(with_call_id(SCENARIOS[0].events, message_id))
    ]


def test_two_daemons_ledgers_store_a_nonce_once(tmp_path: Path) -> None:
    # Given two daemons' ledgers on one database
    sinks = [SqliteSink(tmp_path / "events.db") for _ in range(2)]
    sinks[0].migrate()
    first, second = (NonceLedger(sink) for sink in sinks)
    assert first.durable
    assert second.durable
    until = time.time() + 300
    try:
        # When each stores a request under the same nonce, the first one first
        first.expect(NonceClaim("m-1", "privacy", "k", until))
        first.store(request_events("m-1"), [])
        second.expect(NonceClaim("m-2", "privacy", "k", until))
        second.store(request_events("m-2"), [])
        # Then the first is stored and the second refused, with nothing of it stored
        assert (first.settle("m-1"), second.settle("m-2")) == (False, True)
        messages = {row[0] for row in query(sinks[0], "SELECT message_id FROM call_events")}
        assert messages == {"m-1"}
        # And a message stored without a claim goes through as usual
        second.store(request_events("m-3"), [])
        assert second.settle("m-3") is False
        assert len(query(sinks[0], "SELECT 1 FROM call_events WHERE message_id = 'm-3'")) > 0
    finally:
        for sink in sinks:
            sink.close()
