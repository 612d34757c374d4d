"""Held out of the whole program, a participant is shown nothing of the game (issue 12, item 8).

No rule and no challenge pays them (tests/engine/test_experiments.py), and the engine gives them no badge,
no streak and no level change either, granted or taken back, while their events count in every metric
exactly as a treated twin's do: the experiment compares the two groups on those metrics.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import yaml

from levelup.engine import scoring
from levelup.engine.experiments import held_out
from levelup.engine.model import Effects, Event
from levelup.engine.world import World
from levelup.programs.compiled import CompiledProgram
from levelup.programs.document import AppliesTo, Experiment
from levelup.programs.validation import validate_document
from tests.conftest import EXAMPLES

WHEN = dt.datetime(2026, 11, 16, 15, 0, tzinfo=dt.UTC)  # a Monday, 10:00 in New York
WHOLE_PROGRAM = {"key": "all", "holdout": 0.5, "applies_to": {"program": True}, "metric": "deals_won"}


def acme(*experiments: dict[str, Any], levels: dict[str, Any] | None = None, version: int = 1) -> CompiledProgram:
    doc = yaml.safe_load((EXAMPLES / "acme-sales.yaml").read_text())
    doc["experiments"] = list(experiments)
    if levels is not None:
        doc["levels"] = levels
    return CompiledProgram(validate_document(doc), version)


BY_DEALS = {"metric": "deals_won", "steps": [{"name": "Rookie", "at": 0}, {"name": "Closer", "at": 5}]}


def one(*, held: bool, salt: str = "all", share: float = 0.5) -> str:
    """The first id rep-0, rep-1, … that the whole-program experiment holds out (or not)."""
    trial = Experiment(key="all", holdout=share, applies_to=AppliesTo(program=True), metric="deals_won", salt=salt)
    return next(p for p in (f"rep-{i}" for i in range(10_000)) if held_out(trial, p) == held)


def events(participant: str) -> list[Event]:
    """Five deals over three days (Bronze top-closer at five, hot-week at three) and a call each day (a streak)."""
    out = []
    for day in range(3):
        at = WHEN + dt.timedelta(days=day)
        out.append(Event(f"call-{day}", "activity.logged", participant, at, {"kind": "call", "duration_s": 90}))
    for i in range(5):
        out.append(
            Event(f"deal-{i}", "deal.won", participant, WHEN + dt.timedelta(days=i // 2, hours=1), {"amount": 20000})
        )
    return sorted(out, key=lambda e: e.occurred_at)


def play(program: CompiledProgram, participant: str) -> tuple[World, list[Effects]]:
    world = World(lambda _v: program)
    return world, [world.process(e, program) for e in events(participant)]


def shown(effects: list[Effects]) -> tuple[int, int, int]:
    return (
        sum(len(e.badges) for e in effects),
        sum(len(e.streaks) for e in effects),
        sum(e.level is not None for e in effects),
    )


@pytest.mark.parametrize("levels", [None, BY_DEALS], ids=["levels-by-xp", "levels-by-metric"])
def test_held_out_of_the_program_no_badge_streak_or_level_and_the_same_metrics(levels: dict[str, Any] | None) -> None:
    program = acme(WHOLE_PROGRAM, levels=levels)
    out, treated = one(held=True), one(held=False)
    held_world, held_effects = play(program, out)
    in_world, in_effects = play(program, treated)
    held_state, in_state = held_world.state(out), in_world.state(treated)

    assert shown(held_effects) == (0, 0, 0)
    assert held_state.badges == set() and held_state.streaks == {}
    # the treated twin gets them as before: Bronze top-closer, hot-week, the streak, the level
    assert {(b.badge, b.grade) for e in in_effects for b in e.badges if b.granted} == {
        ("top-closer", "Bronze"),
        ("hot-week", "Hot"),
    }
    assert [s.length for e in in_effects for s in e.streaks] == [1, 2, 3]
    assert [(e.level.before, e.level.after) for e in in_effects if e.level] == [("Rookie", "Closer")]
    # every metric counts exactly as the twin's, event by event and in the end
    assert [(e.metrics, e.samples) for e in held_effects] == [(e.metrics, e.samples) for e in in_effects]
    assert held_state.metrics == in_state.metrics and held_state.metrics[("deals_won", "all")] == 5
    # and nothing pays them (no rule, no challenge)
    assert all(not e.ledger and not e.completions for e in held_effects)


def test_a_reversal_for_the_held_out_changes_nothing_of_the_kind() -> None:
    program = acme(WHOLE_PROGRAM, levels=BY_DEALS)
    out, treated = one(held=True), one(held=False)
    held_world, _ = play(program, out)
    in_world, _ = play(program, treated)
    undo_at = WHEN + dt.timedelta(days=2, hours=5)
    undo_call = Event("undo-call", "activity.reopened", out, undo_at, reverses="call-2")
    undo_deal = Event("undo-deal", "deal.reopened", out, undo_at, reverses="deal-4")
    held = [held_world.process(undo_call, program), held_world.process(undo_deal, program)]
    twin = [
        in_world.process(Event(e.id, e.type, treated, e.occurred_at, reverses=e.reverses), program)
        for e in (undo_call, undo_deal)
    ]
    assert shown(held) == (0, 0, 0) and held_world.state(out).badges == set()
    assert held_world.state(out).streaks == {}
    # the twin loses what the reversal takes back (the streak's last day, Bronze, the level)
    assert shown(twin) == (1, 1, 1)
    assert [(e.metrics, e.samples) for e in held] == [(e.metrics, e.samples) for e in twin]
    assert held_world.state(out).metrics == in_world.state(treated).metrics
    assert held_world.state(out).metrics[("deals_won", "all")] == 4


def test_it_is_the_version_scoring_the_event_that_holds_out() -> None:
    """Like challenge holdouts: a reversal scored by a version without the experiment judges as that version
    does, and one with it shows nothing, not even taking back a badge earned before the experiment began."""
    before, during = acme(levels=BY_DEALS, version=1), acme(WHOLE_PROGRAM, levels=BY_DEALS, version=2)
    out = one(held=True)
    world = World({1: before, 2: during}.__getitem__)
    earned = [world.process(e, before) for e in events(out)]
    assert shown(earned) == (2, 3, 1) and world.state(out).badges
    had = set(world.state(out).badges)
    undo = world.process(Event("undo", "deal.reopened", out, WHEN + dt.timedelta(days=3), reverses="deal-4"), during)
    assert shown([undo]) == (0, 0, 0) and world.state(out).badges == had
    assert world.state(out).metrics[("deals_won", "all")] == 4  # the metric still moves

    # held out at the events, back in the game when the experiment ends: a reversal has nothing to revoke
    world = World({1: during, 2: before}.__getitem__)
    for e in events(out):
        world.process(e, during)
    undo = world.process(Event("undo", "deal.reopened", out, WHEN + dt.timedelta(days=3), reverses="deal-4"), before)
    assert all(b.granted for b in undo.badges)  # no badge taken back: none was given
    # a level is the metric's value, not a grant: judged as anyone's, the drop below Closer is told
    assert undo.level is not None and (undo.level.before, undo.level.after) == ("Closer", "Rookie")
    # judged as anyone in the game from now on: four deals this week are a hot week, not yet Bronze
    assert world.state(out).badges == {("hot-week", "Hot", "2026-W47")}


def test_no_program_holdout_costs_no_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a whole-program experiment the engine never hashes the participant (one attribute test)."""

    def refuse(*_args: object) -> str | None:
        raise AssertionError("held_out_by called for a program without program holdouts")

    monkeypatch.setattr(scoring, "held_out_by", refuse)
    program = acme(levels=BY_DEALS)
    assert program.program_holdouts == ()
    _, effects = play(program, "ann")
    assert shown(effects) == (2, 3, 1)
