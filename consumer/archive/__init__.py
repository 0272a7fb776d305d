"""The recording archive (`recordings:`): every recording the events name, copied into
storage the operator owns before its link expires.

- `extract`: which events name a recording, and the key that makes it one row however often.
- `hosts`: the `allow_hosts` check every event link and redirect must pass.
- `store`: local files and S3-compatible object stores, each write complete-or-absent.
- `download`: streaming HTTP download with redirects checked, cut at `max_bytes`.
- `huawei`: the Private Number download-URL API (X-AKSK signed, answered 301 + Location).
- `worker`: leases due rows, archives them `concurrency` at a time, retries with backoff.

The rows live in `recordings` (`consumer.sinks.recordings`), written in the transaction of the
event that names them, so archiving never delays an acknowledgment and a crash loses nothing.
"""
