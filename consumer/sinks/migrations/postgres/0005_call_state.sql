-- Calls owed a final record (docs/reconcile.md): the state of each call, and the reconciler's
-- lease.

ALTER TABLE calls ADD COLUMN state text NOT NULL DEFAULT 'open';
ALTER TABLE calls ADD COLUMN final_at timestamptz;

-- The reconciler finds the open calls past their deadline, and the overdue calls to query or
-- give up, by a range of this index per provider: never a scan of calls.
CREATE INDEX calls_state ON calls (state, provider, last_event_at);

-- Backfill: a call that already has its final record (docs/reconcile.md, "final records").
UPDATE calls SET state = 'final', final_at = updated_at
 WHERE EXISTS (
    SELECT 1 FROM call_events e
     WHERE e.provider = calls.provider AND e.call_id = calls.call_id
       AND (e.kind = 'call.record' OR (e.provider = 'aliyun_outbound_bot' AND e.kind = 'call.ended'))
 );

-- One row per reconciler lease (one reconciler at a time per database); times are epoch seconds.
CREATE TABLE reconcile_state (
    name         text PRIMARY KEY,
    lease_owner  text,
    lease_until  double precision NOT NULL DEFAULT 0,
    last_pass_at double precision NOT NULL DEFAULT 0
);
