"""Real message bodies for the suite: Aliyun VoiceReport receipts (docs/formats.md F1.3).

Each `voice_report(n)` is a distinct call, so it yields a distinct event; the same `n` twice is
the provider re-sending the same receipt (same event, whatever the transport id).
"""

from __future__ import annotations

import base64
import json

FORMAT = "aliyun.voice_report"

NOT_JSON = b'{"call_id": "100001616500^1", "status_code": '
NOT_UTF8 = b'{"call_id": "\xff\xfe\x00 not utf-8"}'
NOT_BASE64_OF_JSON = base64.b64encode(b"\x89PNG\r\n\x1a\n")


def voice_report(n: int, *, base64_encoded: bool = False) -> bytes:
    record = {
        "call_id": f"1000016{n:05d}^1000018{n:05d}",
        "originate_time": "2024-05-01 10:00:00",
        "ring_time": "2024-05-01 10:00:03",
        "start_time": "2024-05-01 10:00:06",
        "end_time": "2024-05-01 10:00:36",
        "caller": "0571000****",
        "callee": "1380000****",
        "duration": "30",
        "status_code": "200000",
        "hangup_direction": "用户",
        "status_msg": "执行完成",
        "out_id": f"order-{n}",
        "voice_type": "voice",
        "toll_type": "LOCAL",
    }
    body = json.dumps(record, ensure_ascii=False).encode("utf-8")
    return base64.b64encode(body) if base64_encoded else body


def call_id(n: int) -> str:
    return f"1000016{n:05d}^1000018{n:05d}"
