"""The local POP peer and what the two Aliyun query APIs answer about test calls."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from consumer.config.model import AliyunOutboundBotQuery, AliyunVmsQuery
from consumer.sinks.reconcile import OwedCall
from consumer.testing.fake_alicom import FakeAlicomServer

AK, SK = "LTAIreconcile", "reconcile-secret"
VOICE_NOTICE, IVR = 11000000300006, 11000000300005
INSTANCE, JOB = "inst-1", "job-1"


def vms_config(peer: FakeAlicomServer, secret: str = SK, **options: Any) -> AliyunVmsQuery:
    return AliyunVmsQuery(
        access_key_id=AK, access_key_secret=secret, endpoint=peer.endpoint, **options
    )


def bot_config(peer: FakeAlicomServer, secret: str = SK) -> AliyunOutboundBotQuery:
    return AliyunOutboundBotQuery(
        access_key_id=AK, access_key_secret=secret, endpoint=peer.endpoint
    )


def call_detail(call_id: str, **changes: Any) -> dict[str, Any]:
    """QueryCallDetailByCallId's Data of an answered call (Asia/Shanghai wall times)."""
    return {
        "callId": call_id,
        "caller": "0571000****",
        "callee": "1380000****",
        "gmtCreate": "2024-05-01 10:00:00",
        "bRingTime": "2024-05-01 10:00:03",
        "startDate": "2024-05-01 10:00:06",
        "endDate": "2024-05-01 10:00:36",
        "duration": 30,
        "state": "200000",
        "stateDesc": "用户接听",
        "callerShowNumber": "0571000****",
        **changes,
    }


def job(call_id: str, status: str = "Succeeded", task_status: str = "Busy") -> dict[str, Any]:
    """DescribeJob's Job with one finished task for `call_id` and one other attempt."""
    return {
        "JobId": JOB,
        "InstanceId": INSTANCE,
        "JobGroupId": "group-1",
        "Status": status,
        "ReferenceId": "ref-1",
        "Contacts": [{"ContactId": "contact-1", "PhoneNumber": "1380000****"}],
        "Tasks": [
            {
                "TaskId": "task-0",
                "CallId": "other-call",
                "Status": "NoAnswer",
                "ActualTime": 1714528800000,
                "EndTime": 1714528810000,
            },
            {
                "TaskId": "task-1",
                "CallId": call_id,
                "Status": task_status,
                "ActualTime": 1714528860000,  # 2024-05-01 02:01:00 UTC
                "EndTime": 1714528875000,
                "CallingNumber": "0571000****",
                "CalledNumber": "1380000****",
                "Duration": 15,
            },
        ],
    }


def owed(provider: str, call_id: str, **refs: str) -> OwedCall:
    seen = datetime(2024, 5, 1, 2, 0, 3, tzinfo=UTC)  # 10:00:03 in Shanghai
    return OwedCall(provider, call_id, "overdue", "call.ringing", seen, seen, None, None, refs)
