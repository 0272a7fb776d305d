"""The listener's own paths: `/healthz`, `/readyz` and `/metrics`, beside the push queues.

- `/healthz`: the process is alive (answered from the first second, before the database is).
- `/readyz`: the listener takes pushes (the database is migrated) and the sink answers a read;
  after a failed commit a read is no proof of health (a full disk still reads), so the sink must
  take a write, and a commit that succeeds clears the failure too.
- `/metrics`: the Prometheus registry (every process's metrics, in the daemon).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.registry import CollectorRegistry

from consumer.errors import describe
from consumer.sources.http import PushServer, error_response

log = structlog.get_logger("consumer.http")

PROBE_SECONDS = 5.0


class Probes:
    """A `consumer.sources.http.Service`: what the listener answers on its reserved paths."""

    def __init__(
        self,
        ready: Callable[[], object] | None = None,
        write_probe: Callable[[], object] | None = None,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        """`ready` is a cheap read of the sink; `write_probe` a write, tried after a failed
        commit."""
        self.ready = ready
        self.write_probe = write_probe
        self.registry = registry
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="readyz")

    async def __call__(self, request: web.BaseRequest, server: PushServer) -> web.Response:
        if request.method not in ("GET", "HEAD"):
            return error_response(405, "only GET", headers={"Allow": "GET, HEAD"})
        if request.path == "/healthz":
            return web.Response(text="ok\n")
        if request.path == "/metrics":
            return web.Response(
                body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )
        return await self._ready(server)

    async def _ready(self, server: PushServer) -> web.Response:
        if not server.accepting:
            return web.Response(status=503, text="starting: the database is not ready\n")
        failures = [e for e in server.endpoints if e.commits.last_failure is not None]
        probes = [self.ready] if self.ready is not None else []
        if failures and self.write_probe is not None:
            probes.append(self.write_probe)
        elif failures:
            return web.Response(status=503, text="sink unavailable: the last commit failed\n")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(PROBE_SECONDS):
                for probe in probes:
                    await loop.run_in_executor(self._executor, probe)
        except Exception as exc:  # whatever the sink raises, the answer is "not ready"
            reason = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}"
            log.warning("readiness probe failed", error=describe(exc))
            return web.Response(status=503, text=f"sink unavailable: {reason}\n")
        for endpoint in failures:
            endpoint.commits.last_failure = None
        return web.Response(text="ready\n")

    def close(self) -> None:
        self._executor.shutdown(wait=False)


__all__ = ["Probes"]
