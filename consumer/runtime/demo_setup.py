"""What `consumer demo` puts where: the packaged samples, on the emulators' queues and topics
the way each provider delivers them, and the daemon's configuration that reads them back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from consumer.testing.fake_alicom import FakeAlicomServer
    from consumer.testing.fake_mns import FakeMnsServer
    from consumer.testing.fake_remoting import FakeRemoting
    from consumer.testing.fake_rocketmq import FakeRocketMQ

ACCESS_KEY_ID = "LTAIdemo"
ACCESS_KEY_SECRET = "demo-secret"
MNS_PREFIX = "Alicom-Queue-1234567890123456-"
MESSAGE_TYPES = {
    "aliyun.voice_report": "VoiceReport",
    "aliyun.voice_call_report": "VoiceCallReport",
    "aliyun.voice_record_report": "VoiceRecordReport",
    "aliyun.voice_asr_report": "VoiceRTASRReport",
}
TOPIC = "OUTBOUND_BOT_TOPIC"
GROUP = "GID_call_consumer"
TOPIC_4X = "OUTBOUND_BOT_TOPIC_4X"
PUSH_PATHS = {
    "huawei.voice_call": "/push/huawei/voice",
    "huawei.privacy_number": "/push/huawei/privacy",
    "moor7.event": "/push/7moor",
}


class DemoError(Exception):
    """Why the demo could not finish; printed, exit status 1."""


@dataclass(frozen=True)
class Sample:
    name: str
    format: str
    body: bytes


@dataclass
class Loaded:
    """What was put where, to know when everything has been stored."""

    mns_queues: list[str] = field(default_factory=list)
    mns: int = 0
    rocketmq: int = 0
    remoting: int = 0
    push: int = 0


def load_samples() -> list[Sample]:
    """Every shipped sample, as `FORMAT.NAME.ext` (the format is the first two parts)."""
    folder = resources.files("consumer.testing") / "samples" / "demo"
    samples = []
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        parts = entry.name.split(".")
        if not entry.is_file() or len(parts) < 3:
            continue
        samples.append(Sample(entry.name, ".".join(parts[:2]), entry.read_bytes()))
    if not samples:
        raise DemoError(f"no sample messages in {folder}")
    return samples


def enqueue(samples: Sequence[Sample], mns: FakeMnsServer, rocketmq: FakeRocketMQ) -> Loaded:
    loaded = Loaded()
    for fmt, message_type in MESSAGE_TYPES.items():
        queue = MNS_PREFIX + message_type
        mns.create_queue(queue, visibility_timeout=10)
        loaded.mns_queues.append(queue)
        for sample in samples:
            if sample.format == fmt:
                mns.put_message(queue, sample.body)  # bytes are stored base64-encoded
                loaded.mns += 1
    for sample in samples:
        if sample.format == "aliyun.outbound_bot":
            rocketmq.publish(TOPIC, sample.body, tag="JobComplete")
            loaded.rocketmq += 1
    return loaded


def enqueue_remoting(samples: Sequence[Sample], remoting: FakeRemoting | None) -> int:
    """The Outbound Bot samples once more, on the 4.x topic (the same events: stored once)."""
    if remoting is None:
        return 0
    outbound = [sample for sample in samples if sample.format == "aliyun.outbound_bot"]
    for sample in outbound:
        remoting.publish(sample.body, tags="JobComplete")
    return len(outbound)


def demo_config(
    database: Path,
    port: int,
    mns: FakeMnsServer,
    alicom: FakeAlicomServer,
    rocketmq: FakeRocketMQ,
    *,
    remoting: FakeRemoting | None = None,
) -> str:
    lines = [
        "log: {level: info, format: json}",
        f'sink: {{url: "sqlite:///{database}"}}',
        f'http: {{listen: "127.0.0.1:{port}"}}',
        "queues:",
    ]
    for fmt, message_type in MESSAGE_TYPES.items():
        lines += [
            f"  - name: vms-{fmt.split('.')[1].replace('_', '-')}",
            "    source: mns",
            f"    format: {fmt}",
            "    mns:",
            f"      endpoint: {mns.endpoint}",
            f"      queue: {MNS_PREFIX}{message_type}",
            "      auth:",
            "        mode: alicom_token",
            f"        message_type: {message_type}",
            f"        access_key_id: {ACCESS_KEY_ID}",
            f"        access_key_secret: {ACCESS_KEY_SECRET}",
            f"        token_endpoint: {alicom.endpoint}",
            "      wait_seconds: 1",
        ]
    lines += [
        "  - name: outbound-bot",
        "    source: rocketmq",
        "    format: aliyun.outbound_bot",
        "    rocketmq:",
        f'      endpoints: "{rocketmq.endpoint}"',
        f"      topic: {TOPIC}",
        f"      group: {GROUP}",
        "      invisible_duration: 10s",
    ]
    if remoting is not None:
        lines += [
            "  - name: outbound-bot-4x",
            "    source: rocketmq",
            "    format: aliyun.outbound_bot",
            "    rocketmq:",
            "      protocol: remoting",
            f'      endpoints: "{remoting.namesrv}"',
            f"      topic: {TOPIC_4X}",
            f"      group: {GROUP}",
        ]
    for fmt, path in PUSH_PATHS.items():
        lines += [
            f"  - name: {fmt.split('.')[0]}-{fmt.split('.')[1].replace('_', '-')}",
            "    source: http",
            f"    format: {fmt}",
            f"    http: {{path: {path}}}",
        ]
    return "\n".join(lines) + "\n"


__all__ = [
    "ACCESS_KEY_ID",
    "ACCESS_KEY_SECRET",
    "GROUP",
    "MESSAGE_TYPES",
    "MNS_PREFIX",
    "PUSH_PATHS",
    "TOPIC",
    "TOPIC_4X",
    "DemoError",
    "Loaded",
    "Sample",
    "demo_config",
    "enqueue",
    "enqueue_remoting",
    "load_samples",
]
