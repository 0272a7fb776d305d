"""The HTTP push receiver: Huawei Cloud and 7moor (or any format) POST events to one path per queue.

Huawei and 7moor retry until they get a 200, so a 200 means "durably stored": the body is
normalized and committed, or quarantined in `dead_letters` with its raw bytes, before the response
goes out (providers.md §3.4, §4.1). A storage failure answers 503 and the sender retries.

Per request, in order, nothing stored and the body unread until the last step:
unknown path 404, client address outside `allow_from` 403, method other than POST 405, wrong or
missing credentials 401 (`http_auth`), content type other than JSON (or a form, for 7moor) 415,
body over `max_body_bytes` 413, body not received within `body_timeout` 408, the listener's
bodies in flight over their cap (`BodyBudget`) 503. Then the body goes to the queue's pipeline;
requests that arrive while a commit is running wait for the next one and are committed together
(group commit), each still answered for itself. A signed (`huawei_aksk`) request's nonce is
stored in that commit (`http_nonces`): a nonce found already stored is answered 401.

The same listener serves `GET /healthz` (the process is alive, from before the database is
reachable), `GET /readyz` (the sink answers a read and, after a failed commit, takes a write)
and `GET /metrics` (prometheus_client's default registry).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import json
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import structlog
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.registry import CollectorRegistry

from consumer.config.model import RESERVED_HTTP_PATHS, Config, QueueConfig
from consumer.errors import ConfigError, clip
from consumer.formats import aliyun_vms
from consumer.pipeline.handler import Pipeline
from consumer.pipeline.metrics import Metrics
from consumer.pipeline.push import PushHandler
from consumer.pipeline.results import Disposition, Result
from consumer.sinks.base import Sink
from consumer.sources.base import Message
from consumer.sources.http_auth import (
    Authenticator,
    Credentials,
    Denied,
    HuaweiAksk,
    Nonce,
    NonceCache,
    authenticator,
)
from consumer.sources.http_nonces import NonceLedger

log = structlog.get_logger("consumer.http")

RESERVED_PATHS = RESERVED_HTTP_PATHS
DEFAULT_PUSH_BUDGET = 5.0
"""Seconds of sink retries a push waits for before it is answered 503 (below senders' timeouts)."""
DEFAULT_BODY_BYTES_IN_FLIGHT = 64 * 1_048_576
"""Bytes of push bodies the listener holds at once, from the first byte read to the answer: past
this a request is answered 503 at once, so slow or stalled senders cannot grow the process."""

REQUESTS = Counter(
    "consumer_push_requests",
    "HTTP push requests answered, by queue and status code",
    ["queue", "code"],
)
AUTH_FAILURES = Counter(
    "consumer_push_auth_failures",
    "HTTP push requests refused for wrong or missing credentials",
    ["queue"],
)
REQUEST_SECONDS = Histogram(
    "consumer_push_request_duration_seconds",
    "From the request's arrival to its answer, for requests that reached the pipeline",
    ["queue"],
)
BATCH_MESSAGES = Histogram(
    "consumer_push_batch_messages",
    "Push requests committed together in one sink transaction (group commit)",
    ["queue"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
BODY_BYTES_IN_FLIGHT = Gauge(
    "consumer_push_body_bytes_in_flight",
    "Bytes of push bodies held by the listener (being received, waiting or committing)",
    multiprocess_mode="livesum",
)
UNMATCHED = "unmatched"  # the queue label of a request to no known path

_JSON_TYPES = frozenset({"application/json", "text/json"})
_FORM_TYPE = "application/x-www-form-urlencoded"
_FORM_FORMATS = frozenset({"moor7.event"})

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def success_body(format_name: str) -> bytes:
    """What the sender expects once its push is stored (providers.md §1.1, §3.4, §4.1)."""
    if format_name.startswith("huawei."):
        # Voice Call fee judges success by resultcode "0"; other Huawei pushes ignore the body.
        return b'{"resultcode":"0","resultdesc":"Success"}'
    if format_name.startswith("aliyun."):
        return aliyun_vms.PUSH_ANSWER
    return b"{}"


class Overloaded(Exception):
    """More requests wait for a commit than the queue takes: answer 503 at once."""


class GroupCommit:
    """Commits the requests that arrive while a commit is running together, in the next one.

    One `PushHandler.handle_async` call at a time (the handler runs the sink on one thread
    anyway); every waiting request joins the next call, up to `max_batch` requests or
    `max_batch_bytes` of bodies. Concurrency 64 thus costs a few transactions instead of 64.
    Each request still gets its own `Result`. What may wait is bounded too (`max_pending`
    requests, `max_pending_bytes`): past that a request is answered 503 at once.
    """

    def __init__(
        self,
        queue: str,
        handler: PushHandler,
        *,
        max_batch: int = 128,
        max_batch_bytes: int = 8 * 1_048_576,
        max_pending: int = 4096,
        max_pending_bytes: int = 64 * 1_048_576,
    ) -> None:
        self.queue = queue
        self.handler = handler
        self.max_batch = max_batch
        self.max_batch_bytes = max_batch_bytes
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self._pending: deque[tuple[Message, asyncio.Future[Result]]] = deque()
        self._pending_bytes = 0
        self._task: asyncio.Task[None] | None = None
        self.last_failure: str | None = None
        """Why the last commit did not commit (None once one has): readiness reads it."""

    @property
    def waiting(self) -> int:
        """Requests waiting for the next commit (not counting the one in progress)."""
        return len(self._pending)

    async def submit(self, message: Message) -> Result:
        size = len(message.body)
        if self._pending and (
            len(self._pending) >= self.max_pending
            or self._pending_bytes + size > self.max_pending_bytes
        ):
            raise Overloaded(
                f"{len(self._pending)} requests ({self._pending_bytes} bytes) already wait"
            )
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((message, future))
        self._pending_bytes += size
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"push-commit-{self.queue}")
        # A client that hangs up does not cancel the commit its body already joined.
        return await asyncio.shield(future)

    def _next_batch(self) -> list[tuple[Message, asyncio.Future[Result]]]:
        batch: list[tuple[Message, asyncio.Future[Result]]] = []
        size = 0
        while self._pending and len(batch) < self.max_batch:
            body = len(self._pending[0][0].body)
            if batch and size + body > self.max_batch_bytes:
                break
            batch.append(self._pending.popleft())
            size += body
        self._pending_bytes -= size
        return batch

    async def _run(self) -> None:
        while self._pending:
            batch = self._next_batch()
            messages = [message for message, _ in batch]
            BATCH_MESSAGES.labels(self.queue).observe(len(messages))
            try:
                results = await self.handler.handle_async(messages)
            except Exception as exc:  # a bug in the sink: answer 503 and lose nothing
                log.exception("push pipeline failed: answering 503", queue=self.queue)
                error = f"{type(exc).__name__}: {exc}"
                results = [
                    Result(m, Disposition.TRANSIENT, 0, "transient", error) for m in messages
                ]
            failed = next((r for r in results if not r.committed), None)
            self.last_failure = None if failed is None else (failed.error or "not committed")
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def drain(self) -> None:
        """Wait until every submitted request has its result."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)


@dataclass
class PushEndpoint:
    """One `source: http` queue as the listener sees it."""

    queue: str
    format: str
    path: str
    handler: PushHandler
    auth: Authenticator
    allow_from: tuple[Network, ...] = ()
    max_body_bytes: int = 1_048_576
    ledger: NonceLedger | None = None
    """Where signed requests' nonces are remembered with their events (`huawei_aksk` queues)."""
    commits: GroupCommit = field(init=False)

    def __post_init__(self) -> None:
        self.commits = GroupCommit(self.queue, self.handler)

    @classmethod
    def for_queue(
        cls,
        config: QueueConfig,
        sink: Sink,
        metrics: Metrics | None = None,
        *,
        budget: float = DEFAULT_PUSH_BUDGET,
        nonces: NonceCache | None = None,
    ) -> PushEndpoint:
        if config.http is None:
            raise ConfigError(f"queues.{config.name}", "is not a `source: http` queue")
        auth = authenticator(config.http.auth, nonces=nonces)
        ledger = NonceLedger(sink) if isinstance(auth, HuaweiAksk) else None
        if ledger is not None and not ledger.durable:
            log.warning("nonces are remembered per process only", queue=config.name, sink=sink)
        pipeline = Pipeline.for_queue(config, ledger or sink, metrics)
        budget = min(budget, config.retry.total.total_seconds())
        return cls(
            queue=config.name,
            format=config.format,
            path=config.http.path,
            handler=PushHandler(pipeline, budget),
            auth=auth,
            allow_from=tuple(ipaddress.ip_network(c, strict=False) for c in config.http.allow_from),
            max_body_bytes=config.http.max_body_bytes,
            ledger=ledger,
        )

    def allows(self, remote: str | None) -> bool:
        if not self.allow_from:
            return True
        if remote is None:
            return False
        try:
            address = ipaddress.ip_address(remote.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.allow_from)

    def accepts(self, content_type: str) -> bool:
        if content_type in _JSON_TYPES or content_type.endswith("+json"):
            return True
        return content_type == _FORM_TYPE and self.format in _FORM_FORMATS


def parse_listen(listen: str) -> tuple[str, int]:
    """`127.0.0.1:8080`, `0.0.0.0:8080` or `[::1]:8080` to host and port."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError("http.listen", f"not HOST:PORT: {listen!r}")
    return host.strip("[]"), int(port)


class PushServer:
    """The shared listener: every push queue, health, readiness and metrics on one port.

    The server owns its endpoints' handlers and closes them in `close`.
    """

    def __init__(
        self,
        endpoints: Sequence[PushEndpoint],
        *,
        listen: str = "127.0.0.1:8080",
        ready: Callable[[], object] | None = None,
        body_timeout: float = 10.0,
        keepalive_timeout: float = 75.0,
        shutdown_timeout: float = 30.0,
        registry: CollectorRegistry = REGISTRY,
        write_probe: Callable[[], object] | None = None,
        max_body_bytes_in_flight: int = DEFAULT_BODY_BYTES_IN_FLIGHT,
        accepting: bool = True,
    ) -> None:
        """`write_probe` decides readiness after a failed commit; `accepting=False` starts the
        listener before the database is ready: pushes get 503 until `accept()`."""
        self.endpoints = list(endpoints)
        self.host, self._port = parse_listen(listen)
        self.ready = ready
        self.body_timeout = body_timeout
        self.keepalive_timeout = keepalive_timeout
        self.shutdown_timeout = shutdown_timeout
        self.registry = registry
        self.write_probe = write_probe
        self.accepting = accepting
        self.bodies = BodyBudget(max_body_bytes_in_flight)
        self._routes = _routes(self.endpoints)
        self._runner: web.AppRunner | None = None
        self._probe = ThreadPoolExecutor(max_workers=1, thread_name_prefix="readyz")

    @classmethod
    def from_config(
        cls,
        config: Config,
        sink: Sink,
        metrics: Metrics | None = None,
        *,
        queues: Sequence[str] = (),
        budget: float = DEFAULT_PUSH_BUDGET,
    ) -> PushServer:
        """A listener for the `source: http` queues of `config` (only `queues` if given)."""
        nonces = NonceCache()
        endpoints = [
            PushEndpoint.for_queue(queue, sink, metrics, budget=budget, nonces=nonces)
            for queue in config.queues
            if queue.source == "http" and (not queues or queue.name in queues)
        ]
        return cls(
            endpoints,
            listen=config.http.listen,
            ready=_sink_probe(sink),
            write_probe=getattr(sink, "write_probe", None),
        )

    @property
    def port(self) -> int:
        """The bound port (the real one when `listen` asked for port 0)."""
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    def application(self) -> web.Application:
        app = web.Application(
            client_max_size=max([e.max_body_bytes for e in self.endpoints] or [1])
        )
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    async def start(self) -> None:
        runner = web.AppRunner(
            self.application(),
            access_log=None,
            handle_signals=False,
            keepalive_timeout=self.keepalive_timeout,
            shutdown_timeout=self.shutdown_timeout,
            # After a refused body (413, 408) read and drop at most this long before closing.
            lingering_time=2.0,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                "http.listen", f"cannot listen on {self.host}:{self._port}: {exc}"
            ) from exc
        self._runner = runner
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self._port = int(sockets[0].getsockname()[1])
        log.info("http listener started", url=self.url, queues=[e.queue for e in self.endpoints])

    def accept(self) -> None:
        """The database is ready (migrated): take pushes from now on."""
        self.accepting = True

    async def close(self) -> None:
        """Stop accepting, answer the requests in progress, then release the pipelines."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for endpoint in self.endpoints:
            await endpoint.commits.drain()
        loop = asyncio.get_running_loop()
        for endpoint in self.endpoints:
            await loop.run_in_executor(None, endpoint.handler.close)
        self._probe.shutdown(wait=False)

    # -- requests ----------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path in RESERVED_PATHS:
            return await self._service(request, path)
        match = self._match(path)
        if match is None:
            REQUESTS.labels(UNMATCHED, "404").inc()
            return _error(404, "no push queue at this path")
        endpoint, token = match
        started = time.monotonic()
        if self.accepting:
            response = await self._push(request, endpoint, token)
        else:
            response = _error(503, "starting: the database is not ready", {"Retry-After": "30"})
        REQUESTS.labels(endpoint.queue, str(response.status)).inc()
        if response.status in (200, 503):
            REQUEST_SECONDS.labels(endpoint.queue).observe(time.monotonic() - started)
        return response

    def _match(self, path: str) -> tuple[PushEndpoint, str | None] | None:
        key = path.rstrip("/")
        endpoint = self._routes.get(key)
        if endpoint is not None:
            return endpoint, None
        parent, _, segment = key.rpartition("/")
        endpoint = self._routes.get(parent)
        if endpoint is not None and segment and endpoint.auth.accepts_path_token():
            return endpoint, segment
        return None

    async def _push(
        self, request: web.Request, endpoint: PushEndpoint, token: str | None
    ) -> web.Response:
        queue = endpoint.queue
        if not endpoint.allows(request.remote):
            log.warning(
                "push refused: client address not allowed", queue=queue, remote=request.remote
            )
            return _error(403, "client address not allowed")
        if request.method != "POST":
            return _error(405, "only POST", headers={"Allow": "POST"})
        credentials = Credentials(request.headers, token, _signed_urls(request))
        verdict = endpoint.auth.verify(credentials)
        if isinstance(verdict, Denied):
            return _unauthorized(queue, verdict, request.remote)
        if not endpoint.accepts(request.content_type):
            accepted = "JSON" + (" or a form" if endpoint.format in _FORM_FORMATS else "")
            return _error(415, f"content type {clip(request.content_type)}: expected {accepted}")
        async with self.bodies.hold() as held:
            body = await self._read_body(request, endpoint, held)
            if isinstance(body, web.Response):  # nothing stored: a retry is no replay
                endpoint.auth.release(credentials)
                return body
            return await self._commit(endpoint, credentials, verdict, body, request.remote)

    async def _commit(
        self,
        endpoint: PushEndpoint,
        credentials: Credentials,
        nonce: Nonce | None,
        body: bytes,
        remote: str | None,
    ) -> web.Response:
        queue = endpoint.queue
        message = Message(id=f"http-{uuid.uuid4().hex}", body=body, delivery_count=1)
        ledger = endpoint.ledger if nonce is not None else None
        if ledger is not None and nonce is not None:
            ledger.expect(nonce.claim(message.id, queue))
        try:
            result = await endpoint.commits.submit(message)
        except Overloaded as exc:
            endpoint.auth.release(credentials)
            log.warning("push answered 503: overloaded", queue=queue, error=str(exc))
            return _error(503, "overloaded; retry later", headers={"Retry-After": "5"})
        finally:
            replayed = ledger is not None and ledger.settle(message.id)
        if replayed:  # the nonce was already stored: by another daemon, or before a restart
            denied = Denied("replayed", "Nonce already stored with an earlier request")
            return _unauthorized(queue, denied, remote)
        headers = {"X-Request-Id": message.id, "X-Consumer-Result": str(result.disposition)}
        if not result.committed:
            endpoint.auth.release(credentials)
            headers["Retry-After"] = "30"
            return _error(503, "storage unavailable; retry later", headers=headers)
        return web.Response(
            status=200,
            body=success_body(endpoint.format),
            content_type="application/json",
            charset="utf-8",
            headers=headers,
        )

    async def _read_body(
        self, request: web.Request, endpoint: PushEndpoint, held: Held
    ) -> bytes | web.Response:
        limit = endpoint.max_body_bytes
        too_large = _error(413, f"body larger than {limit} bytes")
        too_large.force_close()  # do not linger reading the rest of a body we refuse
        if request.content_length is not None and request.content_length > limit:
            return too_large
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout):
                async for chunk in request.content.iter_any():
                    size += len(chunk)
                    if size > limit:
                        chunks.clear()
                        return too_large
                    if not held.take(len(chunk)):
                        chunks.clear()
                        return self._too_many_bytes(endpoint, size)
                    chunks.append(chunk)
        except ConnectionError:  # the sender hung up half-way: nobody to answer
            # Its traceback (kept by the stream) holds this frame: drop the bytes now, not at
            # the next garbage collection.
            chunks.clear()
            log.warning("push abandoned: the sender hung up", queue=endpoint.queue, received=size)
            gone = _error(400, "connection lost")
            gone.force_close()
            return gone
        except TimeoutError:
            chunks.clear()
            log.warning("push refused: body too slow", queue=endpoint.queue, received=size)
            too_slow = _error(408, f"body not received within {self.body_timeout:g}s")
            too_slow.force_close()
            return too_slow
        return b"".join(chunks)

    def _too_many_bytes(self, endpoint: PushEndpoint, received: int) -> web.Response:
        log.warning(
            "push answered 503: too many body bytes in flight",
            queue=endpoint.queue,
            received=received,
            in_flight=self.bodies.used,
            limit=self.bodies.limit,
        )
        busy = _error(503, "overloaded; retry later", headers={"Retry-After": "5"})
        busy.force_close()  # the rest of the body is not read
        return busy

    async def _service(self, request: web.Request, path: str) -> web.Response:
        if request.method not in ("GET", "HEAD"):
            return _error(405, "only GET", headers={"Allow": "GET, HEAD"})
        if path == "/healthz":
            return web.Response(text="ok\n")
        if path == "/metrics":
            return web.Response(
                body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )
        if not self.accepting:
            return web.Response(status=503, text="starting: the database is not ready\n")
        failures = [e for e in self.endpoints if e.commits.last_failure is not None]
        # After a failed commit a read is no proof of health (a full disk still reads): the
        # sink must take a write; a commit that succeeds clears the failure too.
        probes = [self.ready] if self.ready is not None else []
        if failures and self.write_probe is not None:
            probes.append(self.write_probe)
        elif failures:
            return web.Response(status=503, text="sink unavailable: the last commit failed\n")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(5.0):
                for probe in probes:
                    await loop.run_in_executor(self._probe, probe)
        except Exception as exc:  # whatever the sink raises, the answer is "not ready"
            reason = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}"
            log.warning("readiness probe failed", error=f"{type(exc).__name__}: {exc}")
            return web.Response(status=503, text=f"sink unavailable: {reason}\n")
        for endpoint in failures:
            endpoint.commits.last_failure = None
        return web.Response(text="ready\n")


class BodyBudget:
    """Bytes of push bodies held at once, across every queue of the listener.

    Taken chunk by chunk as a body arrives (what is counted is what is held in memory, so a
    sender that announces a large body and sends nothing holds nothing) and given back when the
    request is answered. A chunk that would pass the limit is refused: that request gets 503.
    The event loop is the only user, so no lock.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._since_trim = 0  # bytes taken since the memory was last given back

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[Held]:
        held = Held(self)
        try:
            yield held
        finally:
            self.used -= held.size
            self._since_trim += held.size
            BODY_BYTES_IN_FLIGHT.dec(held.size)
            if not self.used and self._since_trim >= _TRIM_AFTER:
                self._since_trim = 0
                # once this request's frames are gone too
                asyncio.get_running_loop().call_soon(_return_memory)


@dataclass
class Held:
    """One request's share of the `BodyBudget`."""

    budget: BodyBudget
    size: int = 0

    def take(self, size: int) -> bool:
        if self.budget.used + size > self.budget.limit:
            return False
        self.budget.used += size
        self.size += size
        BODY_BYTES_IN_FLIGHT.inc(size)
        return True


def _return_memory() -> None:
    """Give freed heap pages back to the system (glibc keeps them otherwise, and the listener's
    resident size stays at its peak after a burst of large bodies)."""
    if _TRIM is not None:
        _TRIM(0)


def _malloc_trim() -> Callable[[int], object] | None:
    try:
        trim: Callable[[int], object] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


_TRIM = _malloc_trim()
_TRIM_AFTER = 4 * 1_048_576  # a trim costs a walk of the heap: not after every small body


def _unauthorized(queue: str, denied: Denied, remote: str | None) -> web.Response:
    AUTH_FAILURES.labels(queue).inc()
    log.warning(
        "push refused: credentials",
        queue=queue,
        reason=denied.reason,
        detail=denied.detail,
        remote=remote,
    )
    return _error(401, "unauthorized")


def _routes(endpoints: Sequence[PushEndpoint]) -> dict[str, PushEndpoint]:
    routes: dict[str, PushEndpoint] = {}
    for endpoint in endpoints:
        key = endpoint.path.rstrip("/")
        if (key or "/") in RESERVED_PATHS:
            raise ConfigError(
                f"queues.{endpoint.queue}.http.path", f"{endpoint.path} is reserved by the listener"
            )
        if key in routes:
            raise ConfigError(
                f"queues.{endpoint.queue}.http.path",
                f"{endpoint.path} is already the path of queue {routes[key].queue}",
            )
        routes[key] = endpoint
    return routes


def _signed_urls(request: web.Request) -> list[str]:
    """The push URL as the sender may have configured it (Huawei Voice signs it, §3.9)."""
    schemes = dict.fromkeys(
        [request.headers.get("X-Forwarded-Proto", request.scheme), "https", "http"]
    )
    host = request.headers.get("X-Forwarded-Host", request.host)
    return [f"{scheme}://{host}{request.path}" for scheme in schemes]


def _sink_probe(sink: Sink) -> Callable[[], object]:
    """Readiness: one cheap read (`SqlSink.schema_version`, else an empty dead-letter lookup)."""
    probe = getattr(sink, "schema_version", None)
    if callable(probe):
        return probe  # type: ignore[no-any-return]
    return lambda: sink.dead_letters([0])


def _error(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps({"error": text}).encode(),
        content_type="application/json",
        headers=headers,
    )


__all__ = [
    "AUTH_FAILURES",
    "BODY_BYTES_IN_FLIGHT",
    "DEFAULT_BODY_BYTES_IN_FLIGHT",
    "DEFAULT_PUSH_BUDGET",
    "REQUESTS",
    "BodyBudget",
    "GroupCommit",
    "Overloaded",
    "PushEndpoint",
    "PushServer",
    "parse_listen",
    "success_body",
]
