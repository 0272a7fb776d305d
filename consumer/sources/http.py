"""The HTTP push receiver: Huawei Cloud and 7moor (or any format) POST events to one path per queue.

Huawei and 7moor retry until they get a 200, so a 200 means "durably stored": the body is
normalized and committed, or quarantined in `dead_letters` with its raw bytes, before the response
goes out (docs/http-push.md). A storage failure answers 503 and the sender retries.

Per request, in order, nothing stored and the body unread until the last step:
unknown path 404, client address outside `allow_from` 403, method other than POST 405, wrong or
missing credentials 401 (`http_auth`), content type other than JSON (or a form, for 7moor) 415,
body over `max_body_bytes` 413, body not received within `body_timeout` 408, the listener's
bodies in flight over their cap (`http_body.BodyBudget`) 503. Then the body is submitted to the
queue's `PushSource` (`sources/push.py`) and the request waits for its settlement: requests that
arrive while a commit is running are received together by the next one, each still answered for
itself. A signed (`huawei_aksk`) request's nonce is stored in that commit (`http_nonces`): a nonce
found already stored is answered 401.

The listener only routes (`http_routes`): its reserved paths (`/healthz`, `/readyz`, `/metrics`)
to the `Service` it is given (`consumer.runtime.probes`), each push to its queue's source. What
commits a queue's requests is wired by `consumer.runtime.push`: this module imports no pipeline.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
import uuid
from collections.abc import Sequence
from typing import Protocol

import structlog
from aiohttp import web

from consumer.errors import ConfigError, Overloaded, clip
from consumer.formats import get_format
from consumer.sources.http_auth import Credentials, Denied, Nonce
from consumer.sources.http_body import BodyBudget, Held
from consumer.sources.http_metrics import AUTH_FAILURES, REQUESTS, UNMATCHED, counted
from consumer.sources.http_routes import (
    RESERVED_PATHS,
    Commits,
    PushEndpoint,
    Routes,
    parse_listen,
)

log = structlog.get_logger("consumer.http")

DEFAULT_BODY_BYTES_IN_FLIGHT = 64 * 1_048_576
"""Bytes of push bodies the listener holds at once, from the first byte read to the answer: past
this a request is answered 503 at once, so slow or stalled senders cannot grow the process."""


class _RequestIds:
    """Unique request ids as uuid4 spells them, without a `getrandom` per request: 64 random
    bits per process, then a counter. (That system call releases the GIL, and at concurrency 64
    the event loop then waits for the commit thread to hand it back: ~0.3 ms per request.)"""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self._prefix = f"http-{uuid.uuid4().hex[:16]}"
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


_request_ids = _RequestIds()


def success_body(format_name: str) -> bytes:
    """What the sender expects once its push is stored: the format's own answer."""
    return get_format(format_name).answer


class Service(Protocol):
    """What answers the listener's own paths (`RESERVED_PATHS`: probes and metrics)."""

    async def __call__(self, request: web.BaseRequest, server: PushServer) -> web.Response: ...

    def close(self) -> None: ...


class PushServer:
    """The shared listener: every push queue, health, readiness and metrics on one port.

    The server owns its endpoints' handlers and closes them in `close`.
    """

    def __init__(
        self,
        endpoints: Sequence[PushEndpoint],
        *,
        listen: str = "127.0.0.1:8080",
        body_timeout: float = 10.0,
        keepalive_timeout: float = 75.0,
        shutdown_timeout: float = 30.0,
        max_body_bytes_in_flight: int = DEFAULT_BODY_BYTES_IN_FLIGHT,
        accepting: bool = True,
        service: Service | None = None,
    ) -> None:
        """`accepting=False` starts the listener before the database is ready: pushes get 503
        until `accept()`. `service` answers the reserved paths (`consumer.runtime.probes`)."""
        self.endpoints = list(endpoints)
        self.host, self._port = parse_listen(listen)
        self.body_timeout = body_timeout
        self.keepalive_timeout = keepalive_timeout
        self.shutdown_timeout = shutdown_timeout
        self.accepting = accepting
        self.service = service
        self.bodies = BodyBudget(max_body_bytes_in_flight)
        self._routes = Routes(self.endpoints)
        self._runner: web.ServerRunner | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when `listen` asked for port 0)."""
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    async def start(self) -> None:
        # aiohttp's low-level server: every path goes to `_dispatch`, which routes by itself,
        # so an `Application` (router, middlewares, its request class) would only add CPU per
        # request to the event loop (~10% of it at concurrency 64).
        handler = web.Server(
            self._dispatch,
            access_log=None,
            keepalive_timeout=self.keepalive_timeout,
            # After a refused body (413, 408) read and drop at most this long before closing.
            lingering_time=2.0,
        )
        runner = web.ServerRunner(
            handler, handle_signals=False, shutdown_timeout=self.shutdown_timeout
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
            await endpoint.source.drain()
        loop = asyncio.get_running_loop()
        for endpoint in self.endpoints:
            await loop.run_in_executor(None, endpoint.commits.close)
        if self.service is not None:
            self.service.close()

    # -- requests ----------------------------------------------------------------------------

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if path in RESERVED_PATHS and self.service is not None:
            return await self.service(request, self)
        match = self._routes.match(path)
        if match is None:
            counted.answered(UNMATCHED, 404)
            return error_response(404, "no push queue at this path")
        endpoint, token = match
        started = time.monotonic()
        if self.accepting:
            response = await self._push(request, endpoint, token)
        else:
            response = error_response(
                503, "starting: the database is not ready", {"Retry-After": "30"}
            )
        counted.answered(endpoint.queue, response.status)
        if response.status in (200, 503):
            counted.took(endpoint.queue, time.monotonic() - started)
        return response

    async def _push(
        self, request: web.BaseRequest, endpoint: PushEndpoint, token: str | None
    ) -> web.Response:
        queue = endpoint.queue
        if endpoint.allow_from and not endpoint.allows(request.remote):
            log.warning(
                "push refused: client address not allowed", queue=queue, remote=request.remote
            )
            return error_response(403, "client address not allowed")
        if request.method != "POST":
            return error_response(405, "only POST", headers={"Allow": "POST"})
        urls = _signed_urls(request) if endpoint.auth.signs_urls else ()
        credentials = Credentials(request.headers, token, urls)
        verdict = endpoint.auth.verify(credentials)
        if isinstance(verdict, Denied):
            return _unauthorized(queue, verdict, request.remote)
        if not endpoint.parser.accepts(request.content_type):
            accepted = "JSON" + (" or a form" if endpoint.parser.accepts_form else "")
            return error_response(
                415, f"content type {clip(request.content_type)}: expected {accepted}"
            )
        with self.bodies.hold() as held:
            if request.content.is_eof():  # all of it came with the headers: nothing to await
                body = self._body_at_hand(request, endpoint, held)
            else:
                body = await self._read_body(request, endpoint, held)
            if isinstance(body, web.Response):  # nothing stored: a retry is no replay
                endpoint.auth.release(credentials)
                return body
            return await self._commit(endpoint, credentials, verdict, body, request)

    async def _commit(
        self,
        endpoint: PushEndpoint,
        credentials: Credentials,
        nonce: Nonce | None,
        body: bytes,
        request: web.BaseRequest,
    ) -> web.Response:
        queue = endpoint.queue
        message_id = _request_ids.next()
        ledger = endpoint.ledger if nonce is not None else None
        if ledger is not None and nonce is not None:
            ledger.expect(nonce.claim(message_id, queue))
        try:
            result = await endpoint.source.enqueue(message_id, body)
        except Overloaded as exc:
            endpoint.auth.release(credentials)
            log.warning("push answered 503: overloaded", queue=queue, error=str(exc))
            return error_response(503, "overloaded; retry later", headers={"Retry-After": "5"})
        finally:
            replayed = ledger is not None and ledger.settle(message_id)
        if replayed:  # the nonce was already stored: by another daemon, or before a restart
            denied = Denied("replayed", "Nonce already stored with an earlier request")
            return _unauthorized(queue, denied, request.remote)
        headers = {"X-Request-Id": message_id, "X-Consumer-Result": str(result.disposition)}
        if not result.committed:
            endpoint.auth.release(credentials)
            headers["Retry-After"] = "30"
            return error_response(503, "storage unavailable; retry later", headers=headers)
        # The Content-Type that content_type="application/json", charset="utf-8" would add, at
        # the same place (last), spelled out once instead of per request.
        headers["Content-Type"] = _JSON_UTF8
        return web.Response(status=200, body=endpoint.parser.answer, headers=headers)

    def _body_at_hand(
        self, request: web.BaseRequest, endpoint: PushEndpoint, held: Held
    ) -> bytes | web.Response:
        """`_read_body` of a body that came whole with the headers (the common case): no
        coroutine, no timeout, no iterator."""
        limit = endpoint.max_body_bytes
        body = request.content.read_nowait()
        if len(body) > limit:
            return _too_large(limit)
        if not held.take(len(body)):
            return self._too_many_bytes(endpoint, len(body))
        return body

    async def _read_body(
        self, request: web.BaseRequest, endpoint: PushEndpoint, held: Held
    ) -> bytes | web.Response:
        limit = endpoint.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout):
                async for chunk in request.content.iter_any():
                    size += len(chunk)
                    if size > limit:
                        chunks.clear()
                        return _too_large(limit)
                    if not held.take(len(chunk)):
                        chunks.clear()
                        return self._too_many_bytes(endpoint, size)
                    chunks.append(chunk)
        except ConnectionError:  # the sender hung up half-way: nobody to answer
            # Its traceback (kept by the stream) holds this frame: drop the bytes now, not at
            # the next garbage collection.
            chunks.clear()
            log.warning("push abandoned: the sender hung up", queue=endpoint.queue, received=size)
            gone = error_response(400, "connection lost")
            gone.force_close()
            return gone
        except TimeoutError:
            chunks.clear()
            log.warning("push refused: body too slow", queue=endpoint.queue, received=size)
            too_slow = error_response(408, f"body not received within {self.body_timeout:g}s")
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
        busy = error_response(503, "overloaded; retry later", headers={"Retry-After": "5"})
        busy.force_close()  # the rest of the body is not read
        return busy


_JSON_UTF8 = "application/json; charset=utf-8"


def _unauthorized(queue: str, denied: Denied, remote: str | None) -> web.Response:
    AUTH_FAILURES.labels(queue).inc()
    log.warning(
        "push refused: credentials",
        queue=queue,
        reason=denied.reason,
        detail=denied.detail,
        remote=remote,
    )
    return error_response(401, "unauthorized")


def _too_large(limit: int) -> web.Response:
    too_large = error_response(413, f"body larger than {limit} bytes")
    too_large.force_close()  # do not linger reading the rest of a body we refuse
    return too_large


def _signed_urls(request: web.BaseRequest) -> list[str]:
    """The push URL as the sender configured it (Huawei Voice signs it: docs/http-push.md)."""
    schemes = dict.fromkeys(
        [request.headers.get("X-Forwarded-Proto", request.scheme), "https", "http"]
    )
    host = request.headers.get("X-Forwarded-Host", request.host)
    return [f"{scheme}://{host}{request.path}" for scheme in schemes]


def error_response(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps({"error": text}).encode(),
        content_type="application/json",
        headers=headers,
    )


__all__ = [
    "AUTH_FAILURES",
    "DEFAULT_BODY_BYTES_IN_FLIGHT",
    "REQUESTS",
    "Commits",
    "PushEndpoint",
    "PushServer",
    "Service",
    "error_response",
    "parse_listen",
    "success_body",
]
