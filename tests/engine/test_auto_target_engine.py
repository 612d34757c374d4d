"""``target: auto`` in the pure engine: a goal is judged on the participant's own target for the period.

The shell freezes each target into ``ParticipantState.targets``; without one the document's fallback holds.
Checked against a plain count over random targets and deal streams; and the stretch itself by hand.
"""

from __future__ import annotations

import datetime as dt

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from levelup.engine.goals import target_for
from levelup.engine.model import Event, ParticipantState
from levelup.engine.world import World
from levelup.insights.targets import own_median, stretch
from levelup.programs.compiled import CompiledProgram
from levelup.programs.validation import validate_document
from tests.conftest import EXAMPLES

MONDAY = dt.datetime(2026, 11, 30, 15, tzinfo=dt.UTC)  # week 2026-W49 in New York


def program() -> CompiledProgram:
    doc = yaml.safe_load((EXAMPLES / "acme-sales.yaml").read_text())
    goal = next(c for c in doc["challenges"] if c["key"] == "five-a-week")
    goal["target"], goal["auto"] = "auto", {"fallback": 5}
    return CompiledProgram(validate_document(doc), 1)


ACME_AUTO = program()


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.none(), st.integers(1, 12)), st.integers(0, 15))
def test_the_goal_completes_on_the_deal_that_reaches_the_own_target(target: int | None, deals: int) -> None:
    state = ParticipantState("rep", targets={} if target is None else {("five-a-week", "2026-W49"): float(target)})
    world = World(lambda _v: ACME_AUTO, states={"rep": state})
    goal = ACME_AUTO.challenges["five-a-week"]
    assert target_for(goal, state, "2026-W49") == (5 if target is None else target)
    assert target_for(goal, state, "2026-W50") == 5  # another week: not frozen (yet): the fallback
    completed_on = None
    for i in range(deals):
        effects = world.process(Event(f"d{i}", "deal.won", "rep", MONDAY, {"amount": 1000}), ACME_AUTO)
        if any(c.challenge == "five-a-week" for c in effects.completions):
            completed_on = i + 1
    wanted = 5 if target is None else target
    assert completed_on == (wanted if deals >= wanted else None)


def test_the_stretch_by_hand() -> None:
    assert own_median([2, 4, 6, 8], 4) == 5 and own_median([1, 1, 1], 4) == 1  # a period without a row is 0
    assert own_median([3, 9], 8) is None  # fewer than 3 periods of history
    assert stretch(5, factor=1.1, floor=1, cap=None, fallback=9) == 6  # 5.5 rounded up
    assert stretch(3, factor=1.1, floor=1, cap=None, fallback=9) == 4  # 3.3000000000000003: no float noise → 4
    assert (
        stretch(10, factor=1.1, floor=1, cap=8, fallback=9) == 8
        and stretch(0, factor=2, floor=2, cap=8, fallback=9) == 2
    )
    assert stretch(None, factor=1.1, floor=1, cap=8, fallback=9) == 9
