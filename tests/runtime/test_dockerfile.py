"""The Dockerfile, read as Docker would (no engine runs here to build it): multi-stage, the
runtime stage unprivileged, `consumer run -c /etc/consumer/config.yaml`, state in a volume, and a
HEALTHCHECK whose command really tells a healthy listener from a sick or absent one."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tests.runtime.helpers import free_port

DOCKERFILE = Path(__file__).parents[2] / "Dockerfile"

Instruction = tuple[str, str]


def instructions(text: str) -> list[Instruction]:
    """(KEYWORD, arguments) per instruction: comments dropped, continuation lines joined."""
    found: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, rest = (pending + stripped).partition(" ")
        found.append((keyword.upper(), rest.strip()))
        pending = ""
    return found


def final_stage(found: list[Instruction]) -> list[Instruction]:
    starts = [i for i, (keyword, _) in enumerate(found) if keyword == "FROM"]
    return found[starts[-1] :]


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in stage:
        if keyword == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


@pytest.fixture(scope="module")
def stage() -> list[Instruction]:
    found = instructions(DOCKERFILE.read_text())
    assert sum(keyword == "FROM" for keyword, _ in found) >= 2, "not multi-stage"
    return final_stage(found)


def test_the_runtime_stage_runs_the_daemon_unprivileged_with_state_in_a_volume(
    stage: list[Instruction],
) -> None:
    keywords = [keyword for keyword, _ in stage]
    # Then it copies only what the build stage installed, not the source tree
    copies = [rest for keyword, rest in stage if keyword == "COPY"]
    assert copies
    assert all(rest.startswith("--from=") for rest in copies)
    # And it switches to a user that is not root, before the command
    users = [rest for keyword, rest in stage if keyword == "USER"]
    assert users
    assert users[-1].split(":")[0] not in ("root", "0")
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    # And the command is `consumer run -c /etc/consumer/config.yaml` (exec form)
    entrypoint = json.loads(next(rest for keyword, rest in stage if keyword == "ENTRYPOINT"))
    command = json.loads(next(rest for keyword, rest in stage if keyword == "CMD"))
    assert entrypoint + command == ["consumer", "run", "-c", "/etc/consumer/config.yaml"]
    # And the state directory (SQLite, HOME) is a volume
    volume = json.loads(next(rest for keyword, rest in stage if keyword == "VOLUME"))
    env = env_of(stage)
    assert "/var/lib/consumer" in volume
    assert env["HOME"] == "/var/lib/consumer"
    # And the drain deadline fits in `docker stop`'s default 10 s grace
    assert 0 < float(env["CONSUMER_DRAIN_TIMEOUT"]) < 10


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def listener() -> Iterator[HTTPServer]:
    server = HTTPServer(("127.0.0.1", free_port()), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_healthcheck_command_tells_healthy_from_sick_and_absent(
    stage: list[Instruction], listener: HTTPServer
) -> None:
    # Given the HEALTHCHECK's exec-form command and the image's CONSUMER_HEALTHZ
    healthcheck = next(rest for keyword, rest in stage if keyword == "HEALTHCHECK")
    assert "--interval=" in healthcheck
    assert "--timeout=" in healthcheck
    command = json.loads(healthcheck.partition("CMD ")[2])
    assert command[:2] == ["python", "-c"]
    default = env_of(stage)["CONSUMER_HEALTHZ"]
    assert default.endswith("/healthz")
    port = listener.server_address[1]

    def probe(url: str) -> int:
        env = {**os.environ, "CONSUMER_HEALTHZ": url}
        done = subprocess.run(
            [sys.executable, *command[1:]], env=env, timeout=20, capture_output=True, check=False
        )
        return done.returncode

    # When it probes a listener answering 200, then 503, then a port nobody listens on
    healthy = probe(f"http://127.0.0.1:{port}/healthz")
    _Health.status = 503
    sick = probe(f"http://127.0.0.1:{port}/healthz")
    _Health.status = 200
    absent = probe(f"http://127.0.0.1:{free_port()}/healthz")
    # Then only the first counts as healthy
    assert (healthy, sick != 0, absent != 0) == (0, True, True)
