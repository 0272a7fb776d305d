"""Which events name a recording, and when two namings are one recording."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer import testing
from consumer.archive.extract import HUAWEI_OBJECT, LINK, _named, recordings
from consumer.formats import parse
from tests.sinks.scenarios import event

SAMPLES = Path(testing.__file__).parent / "samples"


def test_every_format_that_carries_a_recording_names_it() -> None:
    # Given the bundled samples that carry a recording, in each shape
    cases = {
        "aliyun.voice_record_report.story.json": "aliyun.voice_record_report",
        "aliyun.outbound_bot.recording_ready.json": "aliyun.outbound_bot",
        "huawei.privacy_number.fee.json": "huawei.privacy_number",
        "moor7.event.cdr.json": "moor7.event",
    }
    found: dict[str, list[tuple[str, str]]] = {}
    for name, fmt in cases.items():
        body = (SAMPLES / name).read_bytes()
        events = [item.event for item in parse(fmt, body)]
        # When their events are read
        found[fmt] = [(w.kind, w.source) for e in events for w in recordings(e)]
    # Then each names its recording: a link, or recordDomain/recordObjectName
    assert found["aliyun.voice_record_report"] == [
        (LINK, "https://vms-record.example.invalid/100002233401.mp3")
    ]
    assert found["huawei.privacy_number"] == [(HUAWEI_OBJECT, "****.com/****.wav")]
    # (the sample's mkvUrl equals its url: one recording)
    assert found["aliyun.outbound_bot"] == [(LINK, "https://a.wav")]
    assert [kind for kind, _ in found["moor7.event"]] == [LINK]


def test_a_re_signed_link_is_the_same_recording_another_path_is_not() -> None:
    # Given one call's link signed twice, and another file
    base = "https://r.example.aliyuncs.com/a/1.mp3"

    def key(url: str, call: str = "c1") -> str:
        (wanted,) = recordings(event("recording.ready", "aliyun_vms", call, 1, recording_url=url))
        return wanted.key

    # Then the query does not matter, the path and the call do
    assert key(base + "?Expires=1&Signature=x") == key(base + "?Expires=2&Signature=y") == key(base)
    assert key(base) != key(base.replace("1.mp3", "2.mp3"))
    assert key(base) != key(base, call="c2")


def test_what_is_not_an_http_link_names_nothing() -> None:
    # Given recording fields that are not http(s) links
    for url in ("ftp://x.example/a.mp3", "no link", "https://", "file:///etc/passwd"):
        named = event("recording.ready", "aliyun_vms", "c1", 1, recording_url=url)
        # Then no recording is named
        assert recordings(named) == []


def test_an_outbound_bot_mkv_url_of_its_own_is_a_second_recording() -> None:
    # Given a RecordingReady whose mkvUrl differs from its url
    ready = event(
        "recording.ready",
        "aliyun_outbound_bot",
        "c1",
        1,
        recording_url="https://r.example.aliyuncs.com/1.wav",
        extras={"mkv_url": "https://r.example.aliyuncs.com/1.mkv"},
    )
    # Then both are named
    assert [w.source.rsplit(".", 1)[1] for w in recordings(ready)] == ["wav", "mkv"]


_EXTRA_NAMES = st.sampled_from(
    ["mkv_url", "recordDomain", "recordObjectName", "stateDesc", "eventType", "url"]
)
_EXTRA_VALUES = st.one_of(
    st.none(),
    st.integers(),
    st.sampled_from(["", "https://h.example/a.wav?sig=1", "http://h/b.mp3", "d.com", "o.wav"]),
    st.text(max_size=8),
)


@settings(max_examples=300, deadline=None)
@given(
    url=st.one_of(st.none(), st.sampled_from(["https://h.example/a.wav", "ftp://x/y", ""])),
    extras=st.dictionaries(_EXTRA_NAMES, _EXTRA_VALUES, max_size=4),
)
def test_the_no_recording_shortcut_agrees_with_the_full_reading(
    url: str | None, extras: dict[str, object]
) -> None:
    # Given any event, with or without a link and the extras that may name a recording
    e = event("call.ended", "huawei_privacy", "c-1", 1.0, recording_url=url, extras=extras)
    # Then what recordings() says is what the full reading (without its shortcut) says
    assert recordings(e) == _named(e)
