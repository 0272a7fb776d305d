-- Nonces of signed HTTP pushes (huawei_aksk), each kept until its `Created` can no longer pass
-- the freshness check, so a captured request is refused after a restart and at every daemon on
-- the same database. `nonce` is a digest of the app key and the nonce; `expires_at` is epoch
-- seconds. Inserted in the transaction that stores the request's events.

CREATE TABLE push_nonces (
    nonce      TEXT PRIMARY KEY,
    queue      TEXT NOT NULL,
    expires_at REAL NOT NULL
);

CREATE INDEX push_nonces_expires_at ON push_nonces (expires_at);
