"""What the supervisor tells the service manager about its workers: READY=1 once every worker's
source answered, then a STATUS= line whenever what it says changes (systemctl status shows it).
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from consumer.runtime.notify import Notifier

log = structlog.get_logger("consumer.runtime")


class Readiness:
    """READY=1 the first time all `total` workers are connected; STATUS= on every change."""

    def __init__(self, notifier: Notifier, total: int) -> None:
        self.notifier = notifier
        self.total = total
        self.ready = False
        self._status = ""

    def report(self, connected: int, waiting: Sequence[str]) -> None:
        """`connected` workers answered their source; `waiting` names the others."""
        if not self.ready and connected == self.total:
            self.ready = True
            status = f"ready: {workers(self.total)} connected"
            self.notifier.ready(status)
            self._status = status
            log.info("ready", workers=self.total)
            return
        if not waiting:
            status = f"running: {workers(self.total)} connected"
        else:
            status = (
                f"{'running' if self.ready else 'starting'}: {connected}/"
                f"{workers(self.total)} connected; waiting for {', '.join(waiting)}"
            )
        self.status(status)

    def status(self, status: str) -> None:
        """STATUS=`status`, unless it says that already."""
        if status != self._status:
            self._status = status
            self.notifier.status(status)


def workers(count: int) -> str:
    return f"{count} worker{'' if count == 1 else 's'}"


__all__ = ["Readiness", "workers"]
