"""sd_notify(3) without libsystemd: one datagram per state change to `$NOTIFY_SOCKET`.

A leading `@` names a socket in the abstract namespace. Without `$NOTIFY_SOCKET` (not started by
systemd) every call is a no-op. A failed send is logged, never raised and never swallowed
silently (sdk-notes.md 7.7): losing a READY=1 or WATCHDOG=1 makes systemd kill us, so the journal
must say why.
"""

from __future__ import annotations

import os
import socket

import structlog

log = structlog.get_logger("consumer.runtime")


class Notifier:
    """Sends `KEY=value` lines to the service manager; `enabled` is False outside systemd."""

    def __init__(self, address: str | None = None) -> None:
        """`address` defaults to `$NOTIFY_SOCKET`, read once (children must not inherit it)."""
        self.address = os.environ.get("NOTIFY_SOCKET") if address is None else address
        self._socket: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, **fields: str | int) -> bool:
        """Send `READY=1`, `STATUS=...` and friends in one datagram; True when it was sent."""
        if not self.address:
            return False
        text = "\n".join(f"{key}={_one_line(str(value))}" for key, value in fields.items())
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
            self._socket.sendto(text.encode("utf-8"), target)
        except OSError as exc:
            log.warning("sd_notify failed", socket=self.address, message=text, error=str(exc))
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify(READY=1, STATUS=status)

    def status(self, status: str) -> bool:
        return self.notify(STATUS=status)

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def stopping(self, status: str) -> bool:
        return self.notify(STOPPING=1, STATUS=status)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of `$WATCHDOG_USEC` (sd_watchdog_enabled(3)).

    None when no watchdog is asked for, or when `$WATCHDOG_PID` names another process.
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2_000_000


def _one_line(value: str) -> str:
    # STATUS= takes a single line; a newline would start a bogus assignment.
    return " ".join(value.splitlines())


__all__ = ["Notifier", "watchdog_interval"]
