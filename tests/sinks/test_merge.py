"""The calls merge rule: authority, gap filling, and independence of order and duplication."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.model import CallEvent, Kind, Outcome
from consumer.sinks.merge import MergeState, merge_call, shapes_call
from consumer.sinks.sql import dumps
from tests.sinks import reference
from tests.sinks.scenarios import SCENARIOS, Scenario, at, event
from tests.sinks.strategies import call_events

# --- rules --------------------------------------------------------------------------------------


def test_the_final_record_wins_over_the_hangup_event() -> None:
    # Given a hangup event that says busy and a final record that says no answer, earlier
    ended = event("call.ended", "huawei_voice", "c", 30, outcome="busy", provider_status="17")
    record = event("call.record", "huawei_voice", "c", 20, outcome="no_answer", provider_status="x")
    # When they merge, Then the record is authoritative for outcome and status
    row = merge_call([ended, record])
    assert row is not None
    assert (row.outcome, row.provider_status) == (Outcome.NO_ANSWER, "x")


def test_other_events_fill_what_the_record_lacks() -> None:
    # Given a record without ringing time or numbers, and the status events that have them
    record = event("call.record", "huawei_privacy", "c", 20, outcome="answered")
    ringing = event("call.ringing", "huawei_privacy", "c", 3, ringing_at=at(3), caller="+861")
    # When they merge, Then the gaps are filled from the other events
    row = merge_call([record, ringing])
    assert row is not None
    assert (row.outcome, row.ringing_at, row.caller) == (Outcome.ANSWERED, at(3), "+861")


def test_a_lifecycle_event_implies_its_time() -> None:
    # Given status events that do not repeat their own time in the *_at field
    events = [
        event("call.initiated", "moor7", "c", 0),
        event("call.ringing", "moor7", "c", 2),
        event("call.answered", "moor7", "c", 5),
        event("call.ended", "moor7", "c", 9),
    ]
    # When they merge, Then each marks its moment with occurred_at
    row = merge_call(events)
    assert row is not None
    assert (row.started_at, row.ringing_at, row.answered_at, row.ended_at) == (
        at(0),
        at(2),
        at(5),
        at(9),
    )


def test_the_recording_event_wins_for_the_recording_url() -> None:
    # Given a record with one URL and a recording event with another
    record = event("call.record", "moor7", "c", 10, recording_url="https://cdr")
    ready = event("recording.ready", "moor7", "c", 11, recording_url="https://ready")
    # When they merge, Then the dedicated recording event's URL is kept
    row = merge_call([record, ready])
    assert row is not None
    assert row.recording_url == "https://ready"


def test_within_one_kind_the_later_event_wins() -> None:
    # Given two hangup events of one call (a re-push with a later, better status)
    first = event("call.ended", "huawei_privacy", "c", 10, outcome="unknown")
    second = event("call.ended", "huawei_privacy", "c", 11, outcome="rejected")
    # When they merge, Then the later one decides
    row = merge_call([second, first])
    assert row is not None
    assert row.outcome is Outcome.REJECTED


def test_agent_states_and_loose_events_shape_no_call() -> None:
    # Given an agent state carrying the call id, and a job completion without one
    agent = event("agent.status", "moor7", "c", 5, outcome="busy")
    job = event("job.completed", "aliyun_outbound_bot", None, 5)
    # Then neither takes part in a calls row
    assert not shapes_call(agent)
    assert not shapes_call(job)
    assert merge_call([agent, job]) is None
    # And an agent state next to a real event does not change it
    ringing = event("call.ringing", "moor7", "c", 1)
    row = merge_call([ringing, agent])
    assert row is not None
    assert (row.outcome, row.event_count, row.last_event_kind) == (None, 1, Kind.CALL_RINGING)


def test_events_of_two_calls_are_refused() -> None:
    # Given events of two different calls, When merged together, Then the mistake is named
    with pytest.raises(ValueError, match="several calls"):
        merge_call([event("call.ringing", "moor7", "a", 1), event("call.ringing", "moor7", "b", 1)])


def test_refs_merge_with_the_record_winning_conflicts() -> None:
    # Given refs from a status event and a record that disagree on one key
    status = event("call.initiated", "huawei_privacy", "c", 0, refs={"a": "status", "s": "1"})
    record = event("call.record", "huawei_privacy", "c", 9, refs={"a": "record", "icid": "i"})
    # When they merge, Then all keys are kept and the record wins the conflict
    row = merge_call([record, status])
    assert row is not None
    assert row.refs == {"a": "record", "s": "1", "icid": "i"}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_scenarios_merge_as_expected(scenario: Scenario) -> None:
    # Given each provider's realistic sequence, When merged, Then the row is the expected one
    row = merge_call(scenario.events)
    assert row is not None
    for name, expected in scenario.expected.items():
        assert getattr(row, name) == expected, name


# --- order and duplication ----------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(events=call_events(), data=st.data())
def test_merge_ignores_order_and_duplicates(events: list[CallEvent], data: st.DataObject) -> None:
    # Given one call's distinct events, and the same events reordered with some repeated
    repeats = data.draw(st.lists(st.sampled_from(events), max_size=6))
    delivered = data.draw(st.permutations(events + repeats))
    # When both are merged, Then the rows are identical
    assert merge_call(delivered) == merge_call(events)


def test_exact_ties_are_broken_by_event_id() -> None:
    # Given two hangups of one call at the same second that disagree
    a = event("call.ended", "moor7", "c", 5, outcome="busy")
    b = event("call.ended", "moor7", "c", 5, outcome="rejected")
    # When merged in either order, Then the same one wins
    assert merge_call([a, b]) == merge_call([b, a])


def test_two_different_copies_of_one_event_id_merge_alike_in_any_order() -> None:
    # Given two events that share an id but not their content (a format bug)
    a = event("call.ended", "moor7", "c", 5, outcome="busy")
    b = a.model_copy(update={"outcome": Outcome.REJECTED})
    # When merged in either order, Then the same copy is chosen
    assert merge_call([a, b]) == merge_call([b, a])


# --- the incremental merge ----------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(events=call_events(), data=st.data())
def test_folding_in_any_order_through_storage_is_the_full_recompute(
    events: list[CallEvent], data: st.DataObject
) -> None:
    # Given one call's distinct events that shape it, in a random order
    shaping = [one for one in events if shapes_call(one)]
    order = data.draw(st.permutations(shaping))
    # When they are folded one by one, the state stored as JSON and read back in between
    state = MergeState()
    for one in order:
        if data.draw(st.booleans()):
            state = MergeState.from_json(json.loads(dumps(state.to_json())))
        state.fold(one)
    # Then the row is the one the sort-based recompute makes of all of them
    expected = reference.recompute(events)
    assert merge_call(events) == expected
    if expected is None:
        assert not shaping
        return
    assert state.row("huawei_privacy", "call-1") == expected


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_folding_each_scenario_is_the_full_recompute(scenario: Scenario) -> None:
    # Given each provider's realistic sequence (each event once, as the sink folds only new
    # ones), When folded from last to first
    distinct = {e.event_id: e for e in scenario.events if shapes_call(e)}
    state = MergeState()
    for one in reversed(list(distinct.values())):
        state.fold(one)
    call = scenario.events[0]
    # Then the row is the recomputed one
    assert state.row(call.provider, call.call_id or "") == reference.recompute(scenario.events)


def test_a_damaged_state_is_refused() -> None:
    # Given stored states that are not a version-1 merge state, Then reading them says so
    with pytest.raises(ValueError, match="merge state"):
        MergeState.from_json({"v": 2})
    with pytest.raises(ValueError, match="merge candidate"):
        MergeState.from_json({"v": 1, "n": 1, "k": [], "s": {"caller": "x"}, "r": {}, "l": None})
    with pytest.raises(IndexError):
        MergeState.from_json(
            {"v": 1, "n": 1, "k": [], "s": {"caller": [0, "x"]}, "r": {}, "l": None}
        )
