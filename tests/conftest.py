"""Fixtures shared across the test folders."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from consumer.sources import client_home


@pytest.fixture(scope="session")
def rmq(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The RocketMQ client, our source module and the fake proxy, imported with a throw-away
    HOME: importing the client creates `$HOME/logs` (sdk-notes.md 5.5)."""
    home = tmp_path_factory.mktemp("rocketmq-home")
    with client_home.home(str(home)):
        import grpc
        import rocketmq
        from rocketmq.v5 import exception

        from consumer.sources import rocketmq as source_module
        from consumer.testing import fake_rocketmq
    return SimpleNamespace(
        client=rocketmq, exc=exception, grpc=grpc, fake=fake_rocketmq, source=source_module
    )
