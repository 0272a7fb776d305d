-- The recording archive (README "Recording archive"): one row per recording of a call, written
-- in the transaction of the event that names it; `source_key` is the dedupe key (a digest of provider,
-- call id and the link without its query, or of the Huawei recordObjectName). Lease and retry
-- times are epoch seconds, as in forward_state.

CREATE TABLE recordings (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    provider         TEXT NOT NULL,
    call_id          TEXT,
    source           TEXT NOT NULL,
    source_key       TEXT NOT NULL UNIQUE,
    status           TEXT NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    archive_uri      TEXT,
    sha256           TEXT,
    bytes            INTEGER,
    content_type     TEXT,
    first_seen       TEXT NOT NULL,
    archived_at      TEXT,
    last_error       TEXT,
    last_http_status INTEGER,
    next_attempt_at  REAL NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_until      REAL NOT NULL DEFAULT 0
);

CREATE INDEX recordings_due ON recordings (status, next_attempt_at);
CREATE INDEX recordings_call ON recordings (provider, call_id);

ALTER TABLE calls ADD COLUMN recording_archive_uri TEXT;
