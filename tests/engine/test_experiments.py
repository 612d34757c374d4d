"""Holdout experiments in the pure engine, and the statistics that compare their groups (issue 12, item 8).

The draw is a hash of the salt and the participant's id: stable, the share asked for, nested as the share
grows. A participant held out of a rule earns nothing from it (the event still counts in every metric); held
out of a challenge, it is not theirs (no completion, no reward); held out of the program, nothing pays.
The confidence interval is checked against Student's t table and a difference computed by hand.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from levelup.engine.experiments import draw, held_out
from levelup.engine.model import Event
from levelup.engine.world import World
from levelup.errors import Invalid
from levelup.insights.experiments import compare_one, t_quantile, welch
from levelup.programs.compiled import CompiledProgram
from levelup.programs.document import AppliesTo, Experiment
from levelup.programs.validation import validate_document
from tests.conftest import EXAMPLES

WHEN = dt.datetime(2026, 11, 20, 15, 0, tzinfo=dt.UTC)


def acme_with(*experiments: dict[str, Any]) -> CompiledProgram:
    doc = yaml.safe_load((EXAMPLES / "acme-sales.yaml").read_text())
    doc["experiments"] = list(experiments)
    return CompiledProgram(validate_document(doc), 1)


def experiment(holdout: float, salt: str = "s", **applies_to: Any) -> Experiment:
    return Experiment(key="x", holdout=holdout, applies_to=AppliesTo(**applies_to), metric="revenue", salt=salt)


def people(holdout: float, *, held: bool, salt: str = "s", n: int = 4) -> list[str]:
    """The first ``n`` ids rep-0, rep-1, … that are (or are not) held out at this share."""
    found = (f"rep-{i}" for i in range(10_000))
    return [p for p in found if held_out(experiment(holdout, salt, program=True), p) == held][:n]


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=40))
def test_the_draw_is_stable_and_in_the_unit_interval(salt: str, participant: str) -> None:
    first = draw(salt, participant)
    draw.cache_clear()
    assert draw(salt, participant) == first and 0 <= first < 1


@settings(max_examples=50, deadline=None)
@given(st.floats(0.01, 0.5), st.floats(0.0, 0.49), st.text(min_size=1, max_size=10))
def test_a_larger_holdout_keeps_everyone_already_held_out(small: float, more: float, participant: str) -> None:
    """Raising the share only adds participants to the holdout: nobody switches back and forth."""
    if held_out(experiment(small, program=True), participant):
        assert held_out(experiment(min(0.99, small + more), program=True), participant)


def test_the_share_held_out_is_the_share_asked_for() -> None:
    n, share = 20_000, 0.1
    held = sum(held_out(experiment(share, program=True), f"customer-{i}") for i in range(n))
    sigma = math.sqrt(n * share * (1 - share))
    assert abs(held - n * share) < 4 * sigma  # 2,000 ± 170
    other = sum(held_out(experiment(share, "another", program=True), f"customer-{i}") for i in range(n))
    both = sum(
        held_out(experiment(share, program=True), f"customer-{i}")
        and held_out(experiment(share, "another", program=True), f"customer-{i}")
        for i in range(n)
    )
    assert abs(other - n * share) < 4 * sigma and both < 2 * n * share * share  # a new salt draws new groups


def score(program: CompiledProgram, participant: str, n: int = 5) -> World:
    world = World(lambda _v: program)
    for i in range(n):
        world.process(Event(f"{participant}-{i}", "deal.won", participant, WHEN, {"amount": 5000}), program)
    return world


def test_held_out_of_a_rule_earns_nothing_from_it_but_every_metric_counts() -> None:
    program = acme_with({"key": "deal-bonus", "holdout": 0.5, "applies_to": {"rule": "deal-won"}, "metric": "revenue"})
    out, kept_in = people(0.5, held=True, salt="deal-bonus", n=1)[0], people(0.5, held=False, salt="deal-bonus", n=1)[0]
    held_world, in_world = score(program, out), score(program, kept_in)
    held_state, in_state = held_world.state(out), in_world.state(kept_in)
    assert in_state.positions["xp"].earned == 5 * 150 and in_state.positions["coins"].earned == 5 * 5 + 100
    assert "xp" not in held_state.positions or held_state.positions["xp"].earned == 0
    # five-a-week still pays the held-out one (only the rule is held out): 100 coins and nothing else
    assert held_state.positions["coins"].earned == 100
    assert held_state.metrics[("revenue", "2026-11")] == in_state.metrics[("revenue", "2026-11")] == 25_000
    assert held_state.badges == in_state.badges  # Bronze top-closer at 5 deals, hot-week
    effects = held_world.process(Event("late", "deal.won", out, WHEN, {"amount": 1}), program)
    assert effects.ledger == [] and effects.notes == [
        "rule deal-won: held out by experiment deal-bonus (scored silently)"
    ]


def test_held_out_of_a_challenge_it_is_not_theirs() -> None:
    program = acme_with(
        {"key": "goal", "holdout": 0.5, "applies_to": {"challenge": "five-a-week"}, "metric": "revenue"}
    )
    out, kept_in = people(0.5, held=True, salt="goal", n=1)[0], people(0.5, held=False, salt="goal", n=1)[0]
    held_state, in_state = score(program, out).state(out), score(program, kept_in).state(kept_in)
    assert in_state.completions == {("five-a-week", "2026-W47"): (("coins", 100),)}
    assert held_state.completions == {}
    assert held_state.positions["coins"].earned == 25 and in_state.positions["coins"].earned == 125  # the rule pays


def test_held_out_of_the_program_nothing_pays() -> None:
    program = acme_with({"key": "all", "holdout": 0.3, "applies_to": {"program": True}, "metric": "deals_won"})
    out = people(0.3, held=True, salt="all", n=1)[0]
    state = score(program, out).state(out)
    assert all(p.earned == 0 for p in state.positions.values()) and state.completions == {}
    assert state.metrics[("deals_won", "2026-W47")] == 5


def test_a_program_without_experiments_holds_nobody_out() -> None:
    program = acme_with()
    assert program.rule_holdouts == {} and program.challenge_holdouts == {}
    assert "experiments" not in {k for k, v in program.doc.model_dump().items() if v}


def test_experiments_are_checked_with_their_paths() -> None:
    doc = yaml.safe_load((EXAMPLES / "acme-sales.yaml").read_text())
    doc["experiments"] = [
        {"key": "a", "holdout": 0.1, "applies_to": {"rule": "nope"}, "metric": "revenue"},
        {"key": "b", "holdout": 0.1, "applies_to": {"rule": "deal-won", "program": True}, "metric": "nope"},
        {"key": "c", "holdout": 1.5, "applies_to": {"challenge": "five-a-week"}, "metric": "revenue"},
    ]
    with pytest.raises(Invalid) as shape:
        validate_document(doc)
    assert {e.path for e in shape.value.errors} == {"experiments[2].holdout"}  # references once the shape holds
    doc["experiments"][2]["holdout"] = 0.5
    with pytest.raises(Invalid) as references:
        validate_document(doc)
    assert {e.path: e.message for e in references.value.errors} == {
        "experiments[0].applies_to.rule": 'unknown rule "nope"',
        "experiments[1].applies_to": "give exactly one of rule, challenge or program: true",
        "experiments[1].metric": 'unknown metric "nope"',
    }


def test_the_t_quantile_matches_the_table() -> None:
    table = {1: 12.706, 2: 4.303, 3: 3.182, 5: 2.571, 10: 2.228, 30: 2.042, 1000: 1.962}
    for df, expected in table.items():
        assert math.isclose(t_quantile(df), expected, rel_tol=0.01), df


def test_welch_by_hand() -> None:
    """treated 1 2 3 4: mean 2.5, variance 5/3; held out 2 4 6: mean 4, variance 4.
    Standard error √(5/12 + 4/3) = √1.75; df = 1.75² / ((5/12)²/3 + (4/3)²/2) = 3.2347."""
    found = welch([1, 2, 3, 4], [2, 4, 6])
    assert found is not None
    assert found["difference"] == -1.5 and found["df"] == 3.23
    half = t_quantile(1.75**2 / ((5 / 12) ** 2 / 3 + (4 / 3) ** 2 / 2)) * math.sqrt(1.75)
    assert math.isclose(found["low"], -1.5 - half) and math.isclose(found["high"], -1.5 + half)
    assert found["real"] is False  # about ±4.2 around −1.5: zero is inside
    assert welch([1], [2, 3]) is None


def test_the_verdict_says_whether_the_difference_is_real() -> None:
    exp = experiment(0.5, "v", rule="deal-won")
    held = people(0.5, held=True, salt="v", n=30)
    rest = people(0.5, held=False, salt="v", n=30)
    values = {p: 10.0 + i % 3 for i, p in enumerate(held)} | {p: 20.0 + i % 3 for i, p in enumerate(rest)}
    found = compare_one(exp, values)
    assert found["treated"] == {"participants": 30, "mean": 21.0} and found["held_out"]["mean"] == 11.0
    assert found["difference"] == 10.0 and found["real"] is True and found["low"] > 9
    assert "the difference is real" in found["sentence"]
    same = compare_one(exp, {p: float(i % 5) for i, p in enumerate(held + rest)})
    assert same["real"] is False and "could be chance" in same["sentence"]
