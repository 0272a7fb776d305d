-- The recording archive (README "Recording archive"): one row per recording of a call, written
-- in the transaction of the event that names it; `source_key` is the dedupe key (a digest of provider,
-- call id and the link without its query, or of the Huawei recordObjectName). Lease and retry
-- times are epoch seconds, as in forward_state.

CREATE TABLE recordings (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider         text NOT NULL,
    call_id          text,
    source           text NOT NULL,
    source_key       text NOT NULL UNIQUE,
    status           text NOT NULL DEFAULT 'pending',
    attempts         integer NOT NULL DEFAULT 0,
    archive_uri      text,
    sha256           text,
    bytes            bigint,
    content_type     text,
    first_seen       timestamptz NOT NULL,
    archived_at      timestamptz,
    last_error       text,
    last_http_status integer,
    next_attempt_at  double precision NOT NULL DEFAULT 0,
    lease_owner      text,
    lease_until      double precision NOT NULL DEFAULT 0
);

CREATE INDEX recordings_due ON recordings (status, next_attempt_at);
CREATE INDEX recordings_call ON recordings (provider, call_id);

ALTER TABLE calls ADD COLUMN recording_archive_uri text;
