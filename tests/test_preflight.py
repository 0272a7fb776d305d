"""A database or broker that cannot be reached: every command fails at once with one line.

The line names the configuration file, the sink (password masked) or the queue and its
endpoint, and the cause. The unreachable targets are loopback ports nothing listens on.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumer.cli import main
from consumer.config.load import load_config
from consumer.preflight import Unreachable, check_brokers, check_sink
from tests.sinks.conftest import POSTGRES

PASSWORD = "s3cret-pw"


@pytest.fixture
def closed_port() -> int:
    """A loopback port that nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


def write(tmp_path: Path, sink: str, queues: str) -> Path:
    path = tmp_path / "consumer.yaml"
    path.write_text(
        f'sink: {{url: "{sink}"}}\nhttp: {{listen: "127.0.0.1:8080"}}\nqueues:\n{queues}'
    )
    return path


PUSH = """  - name: vms
    source: http
    format: aliyun.voice_report
    http: {path: /push}
"""


def pull_queues(mns_port: int, rocketmq_port: int) -> str:
    return f"""  - name: vms
    source: mns
    format: aliyun.voice_report
    mns:
      endpoint: http://127.0.0.1:{mns_port}
      queue: q
      auth: {{mode: access_key, access_key_id: AK, access_key_secret: SK}}
  - name: bot
    source: rocketmq
    format: aliyun.outbound_bot
    rocketmq: {{endpoints: "127.0.0.1:{rocketmq_port}", topic: T, group: G}}
"""


@pytest.mark.parametrize(
    "command",
    [
        ["dead-letters", "list"],
        ["dead-letters", "replay"],
        ["recordings", "list"],
        ["recordings", "retry"],
        ["calls", "overdue"],
        ["reconcile"],
        ["run"],
    ],
)
def test_a_database_that_is_down_fails_every_command_with_one_line(
    tmp_path: Path, closed_port: int, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    # Given a configuration whose PostgreSQL does not listen
    url = f"postgresql://app:{PASSWORD}@127.0.0.1:{closed_port}/calls"
    config = write(tmp_path, url, PUSH)
    # When the command runs
    code = main([*command, "-c", str(config)])
    # Then it fails with one line: the file, the sink with its password masked, the cause
    err = capsys.readouterr().err
    assert code == 1
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"{config}: sink postgresql://app:***@127.0.0.1:{closed_port}/calls: ")
    assert "Connection refused" in err
    assert PASSWORD not in err


def test_unreachable_brokers_stop_run_before_any_worker_starts(
    tmp_path: Path, closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an MNS queue and a RocketMQ queue whose brokers do not listen
    config = write(
        tmp_path, f"sqlite:///{tmp_path}/events.db", pull_queues(closed_port, closed_port)
    )
    # When the daemon is started
    code = main(["run", "-c", str(config)])
    # Then it exits 1 with one line naming the file, both queues and their endpoints
    err = capsys.readouterr().err
    assert code == 1
    assert err.splitlines() == [
        f"{config}: queue vms: MNS endpoint 127.0.0.1:{closed_port}: cannot connect: "
        f"Connection refused; queue bot: RocketMQ endpoints 127.0.0.1:{closed_port}: "
        "cannot connect: Connection refused"
    ]
    # And no database was created: nothing started
    assert not (tmp_path / "events.db").exists()


def test_only_the_selected_queues_and_reachable_brokers_pass(
    tmp_path: Path, closed_port: int, listening: int
) -> None:
    # Given the RocketMQ broker down and MNS up
    config = load_config(write(tmp_path, "sqlite:///x.db", pull_queues(listening, closed_port)))
    # Then the MNS queue alone passes, and both together do not
    check_brokers("c.yaml", config, ["vms"])
    with pytest.raises(Unreachable, match=r"^c\.yaml: queue bot: RocketMQ endpoints"):
        check_brokers("c.yaml", config)


@pytest.mark.postgres
def test_a_database_that_answers_passes(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, POSTGRES, PUSH))
    check_sink("c.yaml", config.sink)  # raises when it cannot connect
    assert config.sink.url == POSTGRES
