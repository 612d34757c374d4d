"""Segments in the pure engine: ``participant.segment`` is the assignment in force at the event's time.

The shell hands each state its assignments with their effective times (``ParticipantState.segments``); an
event reads the latest one effective by its ``occurred_at`` ("" before any), in rule conditions and in a
challenge's ``eligible``. Checked against a plain loop over random assignments and events.
"""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from levelup.engine.model import Event, ParticipantState
from levelup.engine.world import World
from levelup.insights.segments import SEGMENT_KEYS
from levelup.programs.compiled import CompiledProgram
from levelup.programs.validation import validate_document

START = dt.datetime(2011, 1, 1, tzinfo=dt.UTC)
PROGRAM = CompiledProgram(
    validate_document(
        {
            "program": "shop",
            "name": "Shop",
            "currencies": [{"key": "beans", "name": "Beans"}],
            "metrics": [{"key": "purchases", "event": "purchase.completed", "aggregate": "count"}],
            "rules": [
                {"key": "base", "event": "purchase.completed", "award": {"beans": 1}},
                {
                    "key": "come-back",
                    "event": "purchase.completed",
                    "if": 'participant.segment == "at-risk"',
                    "award": {"beans": 10},
                },
            ],
            "challenges": [
                {
                    "key": "win-back",
                    "metric": "purchases",
                    "target": 1,
                    "every": "month",
                    "eligible": "participant['segment'] in ['at-risk', 'hibernating']",
                    "reward": {"beans": 100},
                }
            ],
        }
    ),
    1,
)

hours = st.integers(0, 24 * 90)


def in_force(assignments: list[tuple[int, str]], hour: int) -> str:
    """The plain reading: the last assignment at or before the hour."""
    found = ""
    for at, segment in sorted(assignments):
        if at <= hour:
            found = segment
    return found


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(hours, st.sampled_from(SEGMENT_KEYS)), max_size=6, unique_by=lambda a: a[0]),
    st.lists(hours, min_size=1, max_size=12),
)
def test_an_event_reads_the_segment_in_force_at_its_time(assignments: list[tuple[int, str]], events: list[int]) -> None:
    state = ParticipantState("c1", segments=tuple((START + dt.timedelta(hours=h), s) for h, s in sorted(assignments)))
    world = World(lambda _v: PROGRAM, states={"c1": state})
    paid_months: set[str] = set()
    for i, hour in enumerate(events):
        when = START + dt.timedelta(hours=hour)
        effects = world.process(Event(f"e{i}", "purchase.completed", "c1", when), PROGRAM)
        segment = in_force(assignments, hour)
        assert state.segment_at(when) == segment
        by_rule = {e.rule: e.amount for e in effects.ledger if e.kind == "rule"}
        assert by_rule == ({"base": 1, "come-back": 10} if segment == "at-risk" else {"base": 1})
        month = when.strftime("%Y-%m")
        won = [c for c in effects.completions if c.challenge == "win-back"]
        if segment in ("at-risk", "hibernating") and month not in paid_months:
            assert [c.period for c in won] == [month] and won[0].reward == (("beans", 100),)
            paid_months.add(month)
        else:
            assert won == []


def test_segments_are_read_only_where_a_document_reads_them() -> None:
    assert PROGRAM.reads_segment
    plain = CompiledProgram(
        validate_document({"program": "p", "name": "P", "currencies": [{"key": "xp", "name": "XP"}]}), 1
    )
    assert not plain.reads_segment
    assert ParticipantState("x").segment_at(START) == ""
