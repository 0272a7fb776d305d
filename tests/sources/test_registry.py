"""The source registry: a queue's `source:` picks its config member and the module that opens it."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter

from consumer.config.model import HttpQueue, MnsQueue, QueueConfig, RocketMqQueue
from consumer.errors import ConfigError
from consumer.sources import TRANSPORTS, open_source
from consumer.sources.mns import MnsSource

QUEUE = TypeAdapter(QueueConfig)


def test_every_config_member_has_a_module_in_the_registry() -> None:
    # Given the members of the queue union
    members = (MnsQueue, RocketMqQueue, HttpQueue)
    # When their `source:` values are read
    kinds = {tag for member in members for tag in member.model_fields["source"].annotation.__args__}
    # Then the registry knows each of them, and RocketMQ 4.x's protocol besides
    assert set(TRANSPORTS) == kinds | {"remoting"}


def test_source_picks_the_member_with_its_own_defaults() -> None:
    # Given an MNS and a RocketMQ queue that leave batch size and wait out
    mns = QUEUE.validate_python(
        {
            "name": "vms",
            "source": "mns",
            "format": "aliyun.voice_report",
            "mns": {
                "endpoint": "http://127.0.0.1:1",
                "queue": "q",
                "auth": {"mode": "access_key", "access_key_id": "a", "access_key_secret": "s"},
            },
        }
    )
    rocketmq = QUEUE.validate_python(
        {
            "name": "bot",
            "source": "rocketmq",
            "format": "aliyun.outbound_bot",
            "rocketmq": {"endpoints": "127.0.0.1:1", "topic": "T", "group": "G"},
        }
    )
    # When they are read, Then each member gives its transport's defaults
    assert isinstance(mns, MnsQueue)
    assert (mns.pull, mns.receive_settings()) == (True, (30.0, 16))
    assert isinstance(rocketmq, RocketMqQueue)
    assert (rocketmq.pull, rocketmq.receive_settings()) == (True, (15.0, 16))


def test_a_pull_queue_opens_its_own_source() -> None:
    # Given an MNS queue with access keys (opening contacts nobody)
    queue = MnsQueue.model_validate(
        {
            "name": "vms",
            "source": "mns",
            "format": "aliyun.voice_report",
            "mns": {
                "endpoint": "http://127.0.0.1:1",
                "queue": "q",
                "auth": {"mode": "access_key", "access_key_id": "a", "access_key_secret": "s"},
            },
        }
    )
    # When it is opened
    source = queue.open()
    # Then the registry's MNS module built it
    try:
        assert isinstance(source, MnsSource)
    finally:
        source.close()


def test_a_push_queue_is_not_opened_as_a_pull_source() -> None:
    # Given an HTTP push queue
    queue = HttpQueue.model_validate(
        {"name": "push", "source": "http", "format": "huawei.voice_call", "http": {"path": "/p"}}
    )
    # When it is opened as a pull source, Then the configuration error names it
    assert queue.pull is False
    with pytest.raises(ConfigError, match="http is not a pull source"):
        open_source(queue)
    with pytest.raises(ConfigError, match="is not a pull source"):
        queue.receive_settings()
