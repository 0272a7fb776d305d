-- The tables readers rely on (README.md, "Layout"), created in the connection's current schema (search_path).

CREATE TABLE call_events (
    event_id         text PRIMARY KEY,
    provider         text NOT NULL,
    kind             text NOT NULL,
    call_id          text,
    occurred_at      timestamptz NOT NULL,
    caller           text,
    callee           text,
    direction        text,
    started_at       timestamptz,
    ringing_at       timestamptz,
    answered_at      timestamptz,
    ended_at         timestamptz,
    duration_seconds bigint,
    outcome          text,
    provider_status  text,
    hangup_by        text,
    recording_url    text,
    correlation_id   text,
    refs             jsonb NOT NULL DEFAULT '{}',
    extras           jsonb NOT NULL DEFAULT '{}',
    payload          jsonb NOT NULL DEFAULT '{}',
    queue            text NOT NULL,
    message_id       text NOT NULL,
    received_at      timestamptz NOT NULL
);

CREATE INDEX call_events_call ON call_events (provider, call_id) WHERE call_id IS NOT NULL;
CREATE INDEX call_events_occurred_at ON call_events (occurred_at);

CREATE TABLE calls (
    provider         text NOT NULL,
    call_id          text NOT NULL,
    outcome          text,
    caller           text,
    callee           text,
    direction        text,
    started_at       timestamptz,
    ringing_at       timestamptz,
    answered_at      timestamptz,
    ended_at         timestamptz,
    duration_seconds bigint,
    recording_url    text,
    provider_status  text,
    hangup_by        text,
    correlation_id   text,
    refs             jsonb NOT NULL DEFAULT '{}',
    last_event_kind  text NOT NULL,
    last_event_at    timestamptz,
    event_count      integer NOT NULL,
    updated_at       timestamptz NOT NULL,
    PRIMARY KEY (provider, call_id)
);

CREATE INDEX calls_started_at ON calls (started_at);

CREATE TABLE dead_letters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue       text NOT NULL,
    message_id  text NOT NULL,
    reason      text NOT NULL,
    error       text NOT NULL,
    payload     bytea NOT NULL,
    attempts    integer NOT NULL,
    first_seen  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    UNIQUE (queue, message_id)
);

-- One row per (forwarder, new event), written in the event's own transaction; deleted once the
-- forwarder has it.
CREATE TABLE outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    forwarder   text NOT NULL,
    event_id    text NOT NULL,
    created_at  timestamptz NOT NULL
);

CREATE INDEX outbox_pending ON outbox (forwarder, id);

-- Delivery state per forwarder, shared by every worker: who holds the lease, and the backoff.
-- Lease and retry times are epoch seconds.
CREATE TABLE forward_state (
    forwarder        text PRIMARY KEY,
    lease_owner      text,
    lease_until      double precision NOT NULL DEFAULT 0,
    failures         integer NOT NULL DEFAULT 0,
    next_attempt_at  double precision NOT NULL DEFAULT 0,
    last_error       text,
    delivered        bigint NOT NULL DEFAULT 0
);
