"""The archiver: leases due `recordings` rows and archives them, `concurrency` at a time.

It runs as a task in the listener's event loop with one kept aiohttp session. Each row is
leased by one archiver at a time (any number of daemons may share the database); the lease is
short and renewed while the download runs, so a row whose archiver died is taken up again
within `LEASE_SECONDS` of its last renewal. Attempts are counted when a row is leased, so a
file that crashes the daemon cannot loop forever.

Outcomes of one attempt:
- a host outside `allow_hosts` (the link or any redirect): `refused`, never contacted;
- larger than `max_bytes`: `failed` at once;
- 403/404/410 after an earlier failure, or on the last attempt: `expired`;
- anything else: retried after `initial * 2**(attempt-1)` (capped at `max`), `failed` once
  `retry.attempts` are spent. `consumer recordings retry` puts final rows back in line.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar

import aiohttp
import structlog

from consumer import backoff
from consumer.archive import huawei
from consumer.archive.download import DownloadError, download
from consumer.archive.extract import HUAWEI_OBJECT, link_key, object_key, source_kind
from consumer.archive.hosts import HostPolicy
from consumer.archive.metrics import ArchiveMetrics
from consumer.archive.store import Store, extension
from consumer.archive.store import object_key as store_key
from consumer.background import lease_owner
from consumer.config.model import Config, RecordingsConfig
from consumer.errors import describe
from consumer.sinks.recordings import Recording, RecordingTable

log = structlog.get_logger("consumer.archive")

LEASE_SECONDS = 10.0
POLL_SECONDS = 1.0
GAUGE_SECONDS = 5.0
CONNECT_SECONDS = 30.0
READ_SECONDS = 60.0
"""A server silent this long fails the attempt (it is retried)."""
DOWNLOAD_SECONDS = 1800.0
"""No single download holds a slot longer (a 200 MB file at 120 kB/s): a trickling server is not
allowed to keep a download slot forever."""
_URL_CHARS = 200
T = TypeVar("T")
P = ParamSpec("P")


class Archiver:
    def __init__(
        self,
        config: RecordingsConfig,
        table: RecordingTable,
        store: Store,
        *,
        providers: Sequence[str] = (),
        metrics: ArchiveMetrics | None = None,
        lease_seconds: float = LEASE_SECONDS,
        poll_seconds: float = POLL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.table = table
        self.store = store
        self.providers = tuple(providers)
        self.metrics = metrics
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.clock = clock
        self.policy = HostPolicy(config.allow_hosts)
        self.owner = lease_owner()
        self._stop = asyncio.Event()
        self._tasks: dict[int, asyncio.Task[None]] = {}

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Archive until `stop()`; database and network failures never end the loop."""
        if self.metrics is not None:
            self.metrics.declare()
        timeout = aiohttp.ClientTimeout(
            total=DOWNLOAD_SECONDS, sock_connect=CONNECT_SECONDS, sock_read=READ_SECONDS
        )
        connector = aiohttp.TCPConnector(limit=self.config.concurrency * 2)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            last_renew = last_gauge = 0.0
            changed = True  # rows were taken or finished: the pending gauge is stale
            try:
                while not self._stop.is_set():
                    now = self.clock()
                    changed |= await self._claim(session, now)
                    if self._tasks and now - last_renew >= self.lease_seconds / 3:
                        last_renew = now
                        ids = list(self._tasks)
                        await self._db(self.table.renew, self.owner, ids, now + self.lease_seconds)
                    if self.metrics is not None and (changed or now - last_gauge >= GAUGE_SECONDS):
                        last_gauge, changed = now, False
                        counts = await self._db(self.table.pending_counts)
                        if counts is not None:
                            self.metrics.set_pending(counts, self.providers)
                    changed |= await self._wait()
            finally:
                await self._abandon()

    async def _claim(self, session: aiohttp.ClientSession, now: float) -> bool:
        """Lease what is due, up to the free download slots; whether anything was taken."""
        free = self.config.concurrency - len(self._tasks)
        if free <= 0:
            return False
        claimed = await self._db(self.table.claim, self.owner, now, self.lease_seconds, free)
        for row in claimed or []:
            self._tasks[row.id] = asyncio.create_task(self._archive(session, row))
        return bool(claimed)

    async def _wait(self) -> bool:
        """Until a download ends, `stop()`, or the poll interval; whether a download ended."""
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait(
                [stop, *self._tasks.values()],
                timeout=self.poll_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            stop.cancel()
        ended = False
        for row_id, task in list(self._tasks.items()):
            if task.done():
                del self._tasks[row_id]
                ended = True
        return ended

    async def _abandon(self) -> None:
        """On stop: cancel the downloads and give their rows back for the next start."""
        tasks = dict(self._tasks)
        self._tasks.clear()
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        if tasks:
            await self._db(self.table.release, self.owner, list(tasks))

    async def _db(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | None:
        try:
            return await asyncio.to_thread(function, *args, **kwargs)
        except Exception as exc:
            log.warning("recordings: database unavailable", error=describe(exc))
            return None

    async def _archive(self, session: aiohttp.ClientSession, row: Recording) -> None:
        started = time.monotonic()
        try:
            result = await self._fetch_and_store(session, row)
        except DownloadError as exc:
            await self._failed(row, exc)
            return
        except Exception as exc:  # the store (disk, S3) or a bug: retry like a network failure
            await self._failed(row, DownloadError(DownloadError.ERROR, describe(exc)))
            return
        uri, size, sha256, content_type = result
        done = await self._db(
            self.table.archived,
            self.owner,
            row,
            uri=uri,
            sha256=sha256,
            size=size,
            content_type=content_type,
            now=datetime.now(UTC),
        )
        if done:
            self._finished(row, "archived")
            if self.metrics is not None:
                self.metrics.bytes.labels(row.provider).inc(size)
                self.metrics.download.labels(row.provider).observe(time.monotonic() - started)
            log.info("recording archived", id=row.id, provider=row.provider, uri=uri, bytes=size)

    async def _fetch_and_store(
        self, session: aiohttp.ClientSession, row: Recording
    ) -> tuple[str, int, str, str | None]:
        if source_kind(row.source) == HUAWEI_OBJECT:
            app = self.config.huawei_privacy
            if app is None:
                raise DownloadError(
                    DownloadError.FINAL, "recordings.huawei_privacy is not configured"
                )
            url = await huawei.resolve(session, app, row.source)
            policy = None  # the API's answer is configuration, not event data
            key = object_key(row.provider, huawei.split_source(row.source)[1])
        else:
            url, policy = row.source, self.policy
            key = link_key(row.provider, row.call_id, row.source)
        temporary = await asyncio.to_thread(self.store.temporary)
        try:
            with open(temporary, "wb") as file:
                got = await download(
                    session, url, file, max_bytes=self.config.max_bytes, policy=policy
                )
            ext = extension(row.source, got.content_type)
            target = store_key(row.provider, row.first_seen, row.call_id, key, ext)
            uri = await asyncio.to_thread(self.store.commit, temporary, target, got.content_type)
        except BaseException:
            self.store.discard(temporary)
            raise
        return uri, got.size, got.sha256, got.content_type

    async def _failed(self, row: Recording, exc: DownloadError) -> None:
        error = str(exc)[:500]
        budget = self.config.retry.attempts
        final: str | None = None
        if exc.kind == DownloadError.REFUSED:
            final = "refused"
        elif exc.kind in (DownloadError.TOO_LARGE, DownloadError.FINAL):
            final = "failed"
        elif exc.kind == DownloadError.GONE and (row.attempts >= 2 or row.attempts >= budget):
            final = "expired"
        elif row.attempts >= budget:
            final = "failed"
            error = f"{error} (after {row.attempts} attempts)"
        if final is not None:
            await self._db(self.table.ended, self.owner, row.id, final, error, exc.http_status)
            self._finished(row, final)
            log.warning(
                "recording not archived",
                id=row.id,
                provider=row.provider,
                status=final,
                source=_loggable(row.source),
                error=error,
            )
            return
        retry = self.config.retry
        delay = backoff.delay(
            row.attempts, retry.initial.total_seconds(), retry.max.total_seconds()
        )
        await self._db(
            self.table.again_later,
            self.owner,
            row.id,
            error,
            exc.http_status,
            self.clock() + delay,
        )
        log.info(
            "recording download failed: retrying later",
            id=row.id,
            provider=row.provider,
            attempts=row.attempts,
            retry_in_seconds=round(delay, 3),
            error=error,
        )

    def _finished(self, row: Recording, status: str) -> None:
        if self.metrics is not None:
            self.metrics.finished.labels(row.provider, status).inc()


def open_archiver(config: Config) -> Archiver | None:
    """The archiver of `config.recordings` on its own sink and store; None when not configured."""
    settings = config.recordings
    if settings is None:
        return None
    from consumer.archive.store import open_store  # noqa: PLC0415 - boto3 only for s3://
    from consumer.formats import get_format  # noqa: PLC0415
    from consumer.sinks import open_sink  # noqa: PLC0415 - sinks import this package

    store = open_store(settings)
    providers = sorted({get_format(queue.format).provider.value for queue in config.queues})
    return Archiver(
        settings,
        RecordingTable(open_sink(config.sink)),
        store,
        providers=providers,
        metrics=ArchiveMetrics(),
    )


async def run_archiver(archiver: Archiver | None, stopping: asyncio.Event) -> None:
    """Run `archiver` until `stopping` is set, then close its sink (the listener's hook)."""
    if archiver is None:
        return
    task = asyncio.create_task(archiver.run())
    try:
        await stopping.wait()
    finally:
        archiver.stop()
        with contextlib.suppress(Exception):
            await task
        archiver.table.sink.close()


def _loggable(source: str) -> str:
    """A link for a log line: without its query (signatures, tokens), truncated."""
    return source.split("?", 1)[0][:_URL_CHARS]


__all__ = ["LEASE_SECONDS", "Archiver", "open_archiver", "run_archiver"]
