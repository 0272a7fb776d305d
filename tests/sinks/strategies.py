"""Hypothesis strategies for one call's events, shared by the merge and the sink tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from consumer.model import CallEvent, Direction, HangupBy, Kind, Outcome

_T = datetime(2024, 3, 1, tzinfo=UTC)
# Few distinct times, so that ties (the hard case for determinism) are common.
_times = st.integers(min_value=0, max_value=2).map(lambda s: _T + timedelta(seconds=s))
_maybe_time = st.none() | _times
_CALL_KINDS = [k for k in Kind if k not in (Kind.JOB_COMPLETED, Kind.AGENT_SESSION)]


@st.composite
def call_event(draw: st.DrawFn, event_id: str) -> CallEvent:
    return CallEvent(
        event_id=event_id,
        provider="huawei_privacy",
        # Mostly a few kinds, so that same-kind same-time ties are common too.
        kind=draw(
            st.sampled_from([Kind.CALL_ENDED, Kind.CALL_RECORD]) | st.sampled_from(_CALL_KINDS)
        ),
        call_id="call-1",
        occurred_at=draw(_times),
        caller=draw(st.none() | st.sampled_from(["+861", "+862"])),
        callee=draw(st.none() | st.sampled_from(["+863", "+864"])),
        direction=draw(st.none() | st.sampled_from(list(Direction))),
        started_at=draw(_maybe_time),
        ringing_at=draw(_maybe_time),
        answered_at=draw(_maybe_time),
        ended_at=draw(_maybe_time),
        duration_seconds=draw(st.none() | st.integers(0, 3)),
        outcome=draw(st.none() | st.sampled_from(list(Outcome))),
        provider_status=draw(st.none() | st.sampled_from(["0", "17", "31"])),
        hangup_by=draw(st.none() | st.sampled_from(list(HangupBy))),
        recording_url=draw(st.none() | st.sampled_from(["https://a", "https://b"])),
        correlation_id=draw(st.none() | st.sampled_from(["x", "y"])),
        refs=draw(st.dictionaries(st.sampled_from(["icid", "job"]), st.sampled_from(["1", "2"]))),
    )


@st.composite
def call_events(draw: st.DrawFn) -> list[CallEvent]:
    size = draw(st.integers(min_value=1, max_value=8))
    return [draw(call_event(f"e{n}")) for n in range(size)]
