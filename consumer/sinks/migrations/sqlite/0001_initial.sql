-- The tables readers rely on (README.md, "Layout"). Times are UTC text of one fixed width
-- (2020-05-01T02:00:05.000000Z) so that they sort as they compare; JSON columns are text.

CREATE TABLE call_events (
    event_id         TEXT PRIMARY KEY,
    provider         TEXT NOT NULL,
    kind             TEXT NOT NULL,
    call_id          TEXT,
    occurred_at      TEXT NOT NULL,
    caller           TEXT,
    callee           TEXT,
    direction        TEXT,
    started_at       TEXT,
    ringing_at       TEXT,
    answered_at      TEXT,
    ended_at         TEXT,
    duration_seconds INTEGER,
    outcome          TEXT,
    provider_status  TEXT,
    hangup_by        TEXT,
    recording_url    TEXT,
    correlation_id   TEXT,
    refs             TEXT NOT NULL DEFAULT '{}',
    extras           TEXT NOT NULL DEFAULT '{}',
    payload          TEXT NOT NULL DEFAULT '{}',
    queue            TEXT NOT NULL,
    message_id       TEXT NOT NULL,
    received_at      TEXT NOT NULL
);

CREATE INDEX call_events_call ON call_events (provider, call_id) WHERE call_id IS NOT NULL;
CREATE INDEX call_events_occurred_at ON call_events (occurred_at);

CREATE TABLE calls (
    provider         TEXT NOT NULL,
    call_id          TEXT NOT NULL,
    outcome          TEXT,
    caller           TEXT,
    callee           TEXT,
    direction        TEXT,
    started_at       TEXT,
    ringing_at       TEXT,
    answered_at      TEXT,
    ended_at         TEXT,
    duration_seconds INTEGER,
    recording_url    TEXT,
    provider_status  TEXT,
    hangup_by        TEXT,
    correlation_id   TEXT,
    refs             TEXT NOT NULL DEFAULT '{}',
    last_event_kind  TEXT NOT NULL,
    last_event_at    TEXT,
    event_count      INTEGER NOT NULL,
    updated_at       TEXT NOT NULL,
    PRIMARY KEY (provider, call_id)
);

CREATE INDEX calls_started_at ON calls (started_at);

CREATE TABLE dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    queue       TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    reason      TEXT NOT NULL,
    error       TEXT NOT NULL,
    payload     BLOB NOT NULL,
    attempts    INTEGER NOT NULL,
    first_seen  TEXT NOT NULL,
    last_seen   TEXT NOT NULL,
    UNIQUE (queue, message_id)
);

-- One row per (forwarder, new event), written in the event's own transaction; deleted once the
-- forwarder has it.
CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    forwarder   TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE INDEX outbox_pending ON outbox (forwarder, id);

-- Delivery state per forwarder, shared by every worker: who holds the lease, and the backoff.
-- Lease and retry times are epoch seconds.
CREATE TABLE forward_state (
    forwarder        TEXT PRIMARY KEY,
    lease_owner      TEXT,
    lease_until      REAL NOT NULL DEFAULT 0,
    failures         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  REAL NOT NULL DEFAULT 0,
    last_error       TEXT,
    delivered        INTEGER NOT NULL DEFAULT 0
);
