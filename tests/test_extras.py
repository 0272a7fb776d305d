"""A missing optional dependency is named, with the extra that brings it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from consumer.cli import main
from consumer.config.load import load_config
from consumer.extras import EXTRAS, MissingExtra, queue_extra, require

MNS_QUEUE = """queues:
  - name: vms
    source: mns
    format: aliyun.voice_report
    mns:
      endpoint: http://127.0.0.1:1
      queue: q
      auth: {mode: access_key, access_key_id: id, access_key_secret: secret}
"""


def test_an_installed_extra_is_no_problem() -> None:
    # Given the test environment, which installs consumer[all]
    # When every extra is required, Then none is missing (and a name that is no extra passes)
    for extra in [*EXTRAS, "http"]:
        require(extra, "here")


def test_a_missing_sdk_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the MNS SDK cannot be imported (None in sys.modules stops its import)
    monkeypatch.setitem(sys.modules, "mns", None)
    # When the mns extra is required, Then the error names the extra and how to install it
    with pytest.raises(MissingExtra) as caught:
        require("mns", "queues[0]")
    assert caught.value.location == "queues[0]"
    assert caught.value.problem == (
        "needs the optional dependencies of consumer[mns] (mns is not installed):"
        " pip install 'consumer[mns]'"
    )


def test_run_refuses_a_queue_whose_extra_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an MNS queue on a host without the MNS SDK
    monkeypatch.setitem(sys.modules, "mns", None)
    path = tmp_path / "consumer.yaml"
    path.write_text(MNS_QUEUE)
    # When the daemon is started
    code = main(["run", "-c", str(path)])
    # Then it exits EX_CONFIG before connecting anywhere, naming the queue and the extra
    assert code == 78
    assert capsys.readouterr().err == (
        f"{path}: queue vms: needs the optional dependencies of consumer[mns]"
        " (mns is not installed): pip install 'consumer[mns]'\n"
    )


def test_a_queue_needs_the_extra_named_like_its_source_except_rocketmq_4(tmp_path: Path) -> None:
    # Given an MNS queue, a RocketMQ 5 (gRPC) queue and a RocketMQ 4.x (remoting) queue
    rocketmq = (
        "  - name: {name}\n    source: rocketmq\n    format: aliyun.outbound_bot\n"
        "    rocketmq: {{endpoints: 'rmq.example:8080', topic: t, group: G,"
        " protocol: {protocol}}}\n"
    )
    path = tmp_path / "consumer.yaml"
    path.write_text(
        MNS_QUEUE
        + rocketmq.format(name="grpc", protocol="grpc")
        + rocketmq.format(name="remoting", protocol="remoting")
    )
    # When each queue's extra is asked for
    extras = [queue_extra(queue) for queue in load_config(path).queues]
    # Then the remoting queue needs none: its binding is installed apart
    assert extras == ["mns", "rocketmq", ""]
