"""Event ids and stored events pinned to what they were: a changed id double counts re-pushes.

An event's id is stored (`call_events.event_id`) and is what makes a provider's re-push the
same event, so a parse made faster must give the same id, and the same event and payload, for
the same body. The fingerprints below were computed before the commit thread's parse was
tuned (perf-format, December 2026); a mismatch means a stored-data change, not a test to update.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from consumer.formats import parse

SAMPLES = Path(__file__).parent / "samples"
VOICE = "huawei.voice_call"
PRIVACY = "huawei.privacy_number"


def format_of(name: str) -> str:
    return ".".join(name.split(".")[:2])


def sample_names() -> list[str]:
    return sorted(path.name for path in SAMPLES.glob("*.json"))


def body(value: Any) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


def fingerprint(fmt: str, raw: bytes) -> list[tuple[str, str]]:
    """Per event: its id, and a digest of its stored JSON and payload."""
    pinned = []
    for item in parse(fmt, raw):
        stored = item.event.model_dump_json() + "\n" + json.dumps(item.payload, sort_keys=True)
        pinned.append((item.event.event_id, hashlib.sha256(stored.encode()).hexdigest()[:16]))
    return pinned


def _status(event_type: str, **info: Any) -> dict[str, Any]:
    return {"eventType": event_type, "statusInfo": info}


_BENCH = {  # bench/bench_http.py body()
    "sessionId": "p-1@bench",
    "timestamp": "2019-01-24 03:04:49",
    "caller": "+86138****0022",
    "called": "+86138****0021",
    "stateCode": 0,
    "stateDesc": "The user releases the call.",
}

HUAWEI_CASES: dict[str, tuple[str, Any]] = {
    "bench": (VOICE, _status("disconnect", **_BENCH)),
    "bench base64": (VOICE, base64.b64encode(body(_status("disconnect", **_BENCH)))),
    "double space": (VOICE, _status("callout", sessionId="s", timestamp="2019-01-24  03:04:49")),
    "epoch seconds": (VOICE, _status("alerting", sessionId="s", timestamp="1548299089")),
    "epoch millis": (VOICE, _status("answer", sessionId="s", timestamp="1548299089123")),
    "digits": (
        VOICE,
        _status("collectInfo", sessionId=" s ", timestamp="2019-01-24 03:04:49", digitInfo="12#"),
    ),
    "numbers": (
        VOICE,
        _status("disconnect", sessionId=12, timestamp="2019-01-24 03:04:49", stateCode=8003.0),
    ),
    "absent and empty": (
        VOICE,
        _status(
            "disconnect", sessionId="s", timestamp="2019-01-24 03:04:49", caller="", called=None
        ),
    ),
    "unknown code": (
        VOICE,
        _status("disconnect", sessionId="s", timestamp="2019-01-24 03:04:49", stateCode="x"),
    ),
    "extras": (
        VOICE,
        {
            **_status(
                "disconnect",
                sessionId="s",
                timestamp="2019-01-24 03:04:49",
                callRelDirection="1",
                userData="u",
                subscriptionId="sub",
                eventType="inner",
                nested={"a": [1, {}]},
                empty="",
                flag=False,
            ),
            "statusInfo2": {"x": 1},
            "eventType2": None,
        },
    ),
    "privacy": (
        PRIVACY,
        _status(
            "disconnect",
            sessionId="s",
            timestamp="2019-01-24 03:04:49",
            caller="+1",
            called="+2",
            stateCode=0,
            subscriptionId="sub",
        ),
    ),
}

PINNED_SAMPLES: dict[str, list[tuple[str, str]]] = {
    "aliyun.outbound_bot.call_answered.json": [
        ("73d01062337366073266ccc27ad1b0c2", "9f1afb4d8a6278f2")
    ],
    "aliyun.outbound_bot.call_finished.json": [
        ("46b28807faf0fa8794522c5ac2e414a3", "4d5b15d4273837ad")
    ],
    "aliyun.outbound_bot.dialing.json": [("dfced793d6dae6a3f887349b6d368163", "8fc60ddac59a3a96")],
    "aliyun.outbound_bot.job_complete.json": [
        ("6b3e956fa7b4681f6b38c2cadc2e24fb", "c876dd484ed9cda8"),
        ("39f6f05943168208eab8bc014c05eb0b", "53727b21d2decb18"),
        ("511138a5b2d3365df5738ba42282abcc", "1301db35645d2988"),
    ],
    "aliyun.outbound_bot.recording_ready.json": [
        ("f9c3def17d22652e6626a8422a1c3bdf", "1d7734d63450b2d2")
    ],
    "aliyun.voice_asr_report.fields.json": [
        ("a14ee5ec3debef9e680df9f88ec6f61a", "486a838f6f12761d")
    ],
    "aliyun.voice_asr_report.story.json": [
        ("89cd3382cfa7f5712cad9096715faac1", "6865ff5221996fce")
    ],
    "aliyun.voice_call_report.dtmf_page.json": [
        ("3bedf0a9cfc189212ae7791fbaf2e252", "1b8f1b28bb8a352b")
    ],
    "aliyun.voice_call_report.inbound_page.json": [
        ("1822842a691bb443c875e14a44ee2ed0", "632e75b38c755f8a")
    ],
    "aliyun.voice_call_report.outbound_page.json": [
        ("b48e056913cde78a48c1fc6c082039a2", "a0493c0bd78a9249")
    ],
    "aliyun.voice_call_report.story_1_initiated.json": [
        ("ed0692c34a41cd516b10fdd4794999dc", "b493e4f9cf20ca74")
    ],
    "aliyun.voice_call_report.story_2_ringing.json": [
        ("197877dda770c52f880ce3f231580fb5", "587e2e0cbdd7f43a")
    ],
    "aliyun.voice_call_report.story_3_answered.json": [
        ("459aad92ce631ece3c900f81b18f28f7", "fcc6c4f261cb24ed")
    ],
    "aliyun.voice_call_report.story_4_dtmf.json": [
        ("635036325b0c180fc37c13401cca4b00", "106b6508194ceac0")
    ],
    "aliyun.voice_call_report.story_5_ended.json": [
        ("40ad176bac4c89a7a5e0712695faa920", "b4b783e715b74a64")
    ],
    "aliyun.voice_call_report.vms_push.json": [
        ("02486ccd9fd3fa0c72e17958e41dac82", "05af3857d460b537")
    ],
    "aliyun.voice_record_report.smart_page.json": [
        ("bf090df02c3f2e0e69ec38e53d448991", "519830ef296aac36")
    ],
    "aliyun.voice_record_report.story.json": [
        ("198063da083701f6b783a1d96257ba02", "d27ae10da899c9ae")
    ],
    "aliyun.voice_record_report.vms_push.json": [
        ("161a4db601cdf0b82985bc133c4a7da4", "167442c0ed7da25f")
    ],
    "aliyun.voice_report.aiccs_push.json": [
        ("bc875cd673a2073cfc0e1455e2a07a5a", "cbe12aa62e83ace2")
    ],
    "aliyun.voice_report.assembled.json": [
        ("38db9e1aac9420e49d537c81ef1a89ae", "1b21a874f8755cc4")
    ],
    "aliyun.voice_report.busy.json": [("afd4e4a130ea6310fbd6ca0e35d8081c", "6ab38774b7e415e3")],
    "aliyun.voice_report.seed000.json": [("cd345ed992f99a30cde5055f7523c32e", "c792a78634b43764")],
    "aliyun.voice_report.story.json": [("d93db8c238e2a85ddf37fda8748f9fe8", "3bf1c45471902607")],
    "aliyun.voice_report.vms_push.json": [("bc875cd673a2073cfc0e1455e2a07a5a", "f6f2c0fb95e05334")],
    "huawei.privacy_number.fee.json": [("6b444f477e6f0ad84c7a7d5acd05ce8e", "5513d38dc3932771")],
    "huawei.privacy_number.status_disconnect.json": [
        ("f5129677f4995fdb6a8e06b5d3ef0f5c", "e02047065f876688")
    ],
    "huawei.voice_call.fee_callback.json": [
        ("9e01eeba3d02ad4706329e1d0658be03", "4769a04a0a19a764")
    ],
    "huawei.voice_call.fee_callback_failed.json": [
        ("29c83c8d8e9ba5f5a34365fb3ff403fb", "d649fbc47ac708dc")
    ],
    "huawei.voice_call.status_answer.json": [
        ("d879b6817b336748421645b1e0963220", "467db25256c41283")
    ],
    "huawei.voice_call.status_disconnect.json": [
        ("8d59927534fce341571456a009f2782e", "9046c2585d6cee39")
    ],
    "moor7.event.agent_status.json": [
        ("moor7-9a25c35ab7fe4adebb2c1462ca15635e-callStatus-hangup", "f4026fa7ca79cc2c")
    ],
    "moor7.event.agent_status_link.json": [
        ("moor7-fbc13d07ddff4649bc1ca6d636a915b4-callStatus-link", "f8519503451921e7")
    ],
    "moor7.event.cdr.json": [("moor7-0db0948a14ea4b7eaa719f1f2501d142-cdr-", "b7fa29c4ce1242e0")],
    "moor7.event.customer_answered.json": [
        ("moor7-92fe6e957421411c9343fdef75411ca1--link", "c3a3893d9d6ab536")
    ],
    "moor7.event.dialout_hangup.json": [
        ("moor7-372e1067da2c40248d8f24425f2f5273-dialoutHangup-hangup", "e4823fba0718c8f1")
    ],
    "moor7.event.dialout_ring.json": [
        ("moor7-8757e994f19040749c5b194faaf21c78-dialoutRing-ring", "cd3903150559d14a")
    ],
    "moor7.event.inbound_hangup.json": [
        ("moor7-e454d40def4d47ee9d7a76aba5d6cbb7--hangup", "b7d7331c129129d6")
    ],
    "moor7.event.inbound_ring.json": [
        ("moor7-e454d40def4d47ee9d7a76aba5d6cbb7-callStatus-calling", "63f4ba8bc75992d4")
    ],
    "moor7.event.login.json": [
        ("moor7-bf6dc33761c34272800c7c8256f53c5a-login-", "779cfb3b2b090e20")
    ],
    "moor7.event.logout.json": [
        ("moor7-1278cc942e7544858b36a4588880e24a-logout-", "2b2ac0066303d9af")
    ],
    "moor7.event.media_failreason.json": [
        ("moor7-88c15955242645b485e902ec077acc52-mediaFailreason-", "1d53ba9b6f0dd0fa")
    ],
}
PINNED_HUAWEI: dict[str, list[tuple[str, str]]] = {
    "bench": [("0392d5d80067bde911b71abcff218e84", "c1cdb05a6d39460e")],
    "bench base64": [("0392d5d80067bde911b71abcff218e84", "c1cdb05a6d39460e")],
    "double space": [("c3cc50f81dacf9ad6fde0fdf8176c9db", "af0bbee2df3c80b1")],
    "epoch seconds": [("680567b516f3dc19f16d300ff7783855", "ac18d8ba2ec43ccc")],
    "epoch millis": [("71f489706059556257d44703ee4a4809", "e794a2b5de7b8778")],
    "digits": [("809a922db00c828ab3e6d0be70e1b53d", "be3ab42b1eafb7c3")],
    "numbers": [("5c89a0ff519d30f2f2f2ade95f63b18a", "d939fa84e0e4b5f0")],
    "absent and empty": [("c2ef8afe2c7cafccc784c7f8c999094a", "935cbc68e0fd93a7")],
    "unknown code": [("cfe29a69083ef58e11a418134023d5c6", "c505f0516c858b90")],
    "extras": [("c2ef8afe2c7cafccc784c7f8c999094a", "33aeebe908d69f0f")],
    "privacy": [("fcc03ef98b73159f44f772f2b27588e9", "0ab27cdf8a583f6f")],
}

# Samples without a time of their own: the event takes the parse's clock, so only ids compare.
_STAMPED_NOW = frozenset({"moor7.event.media_failreason.json"})


@pytest.mark.parametrize("name", sample_names())
def test_sample_events_are_pinned(name: str) -> None:
    raw = (SAMPLES / name).read_bytes()
    pinned = fingerprint(format_of(name), raw)
    if name in _STAMPED_NOW:
        assert [pin[0] for pin in pinned] == [pin[0] for pin in PINNED_SAMPLES[name]]
    else:
        assert pinned == PINNED_SAMPLES[name]


@pytest.mark.parametrize("label", list(HUAWEI_CASES))
def test_huawei_status_events_are_pinned(label: str) -> None:
    fmt, value = HUAWEI_CASES[label]
    assert fingerprint(fmt, body(value)) == PINNED_HUAWEI[label]
