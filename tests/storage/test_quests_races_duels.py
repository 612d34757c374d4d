"""Quests, races, duels, eligibility, competition validation and draft launch (docs/program-document.md, docs/api.md).

- Quests (``kind: quest``): steps in strict order; a step counts only what happens after it
  became current (the first step counts everything in its period); the reward is paid the
  moment the last step is done, once per period; a reversal that takes a done step back below
  its target reopens it, drops the later steps and takes the reward back.
- Races (``format: race``): finishers placed by the event time at which they reached the
  target (ties share a place), paid when the period closes.
- Duels (``format: duel``): exactly two entrants (or teams) ranked head to head.
- Eligibility: ``entrants``, ``teams`` (individual), and an ``eligible`` CEL condition over the
  participant, judged at scoring time for goals and when the period closes for rankings.
- Validation of the new shapes, with paths; launching a draft (API and CLI).

Engine tests run a :class:`World` in memory; storage tests run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections import defaultdict
from collections.abc import Iterator, Sequence
from copy import deepcopy
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from typer.testing import CliRunner

from levelup.challenges.closing import Closed, close_periods
from levelup.challenges.service import list_challenges
from levelup.cli.main import app
from levelup.engine.model import Effects, Event, ParticipantState
from levelup.engine.quests import current_step
from levelup.engine.world import World
from levelup.errors import Invalid
from levelup.events.ingest import ingest
from levelup.events.replay import replay
from levelup.participants import repository as participants
from levelup.programs import service as programs
from levelup.programs.compiled import CompiledProgram
from levelup.programs.document import Challenge
from levelup.programs.validation import load_document, validate_document
from levelup.runtime import Runtime
from levelup.storage import tables as t
from tests.api.test_mechanics_api import by_key
from tests.conftest import EXAMPLES, event

UTC = dt.UTC
NEW_YORK = ZoneInfo("America/New_York")
BREWHOUSE_TEXT = (EXAMPLES / "brewhouse-rewards.yaml").read_text()
ACME_TEXT = (EXAMPLES / "acme-sales.yaml").read_text()
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# A weekly quest next to brewhouse-rewards' welcome quest: two purchases, then a review, then one more
# purchase (the purchases of step 1 must not count toward step 3).
WEEKLY_QUEST = """\
  - key: regular
    kind: quest
    every: week
    steps:
      - {metric: purchases, target: 2, name: Two coffees}
      - {metric: reviews, target: 1}
      - {metric: purchases, target: 1, name: One more}
    reward: {beans: 30}
"""


def with_challenges(document: str, extra: str) -> str:
    """The document with ``extra`` challenges listed first."""
    changed = document.replace("challenges:\n", "challenges:\n" + extra, 1)
    assert changed != document
    return changed


CAFE_TEXT = with_challenges(BREWHOUSE_TEXT, WEEKLY_QUEST)
CAFE = CompiledProgram(load_document(CAFE_TEXT), 1)
BREWHOUSE = CompiledProgram(load_document(BREWHOUSE_TEXT), 1)
W47 = dt.datetime(2026, 11, 16, 9, 0, tzinfo=UTC)  # Monday of ISO week 2026-W47 (London = UTC in November)
W48 = W47 + dt.timedelta(weeks=1)


# --------------------------------------------------------------------------- quests in the engine


class Cafe:
    """A brewhouse world with made-up event ids; every event a minute after the one before."""

    def __init__(self, program: CompiledProgram = CAFE, start: dt.datetime = W47) -> None:
        self.program = program
        self.world = World(lambda _version: program)
        self.clock = start
        self._ids = itertools.count(1)
        self.effects: list[Effects] = []

    def _next(self, at: dt.datetime | None) -> dt.datetime:
        self.clock = at if at is not None else self.clock + dt.timedelta(minutes=1)
        return self.clock

    def send(self, kind: str, who: str = "ana", at: dt.datetime | None = None, **data: Any) -> Effects:
        when = self._next(at)
        effects = self.world.process(Event(f"e{next(self._ids)}", kind, who, when, data), self.program)
        self.effects.append(effects)
        return effects

    def profile(self, who: str = "ana", at: dt.datetime | None = None) -> Effects:
        return self.send("profile.completed", who, at)

    def purchase(self, who: str = "ana", at: dt.datetime | None = None) -> Effects:
        return self.send("purchase.completed", who, at, amount=4)

    def review(self, who: str = "ana", at: dt.datetime | None = None) -> Effects:
        return self.send("review.posted", who, at, text="nice")

    def reverse(self, target: Effects, at: dt.datetime | None = None) -> Effects:
        when = self._next(at)
        original = target.event
        reversal = Event(f"e{next(self._ids)}", "entry.reversed", original.participant, when, {}, original.id)
        effects = self.world.process(reversal, self.program)
        self.effects.append(effects)
        return effects

    def state(self, who: str = "ana") -> ParticipantState:
        return self.world.state(who)

    def quest(self, key: str, period: str, who: str = "ana") -> dict[str, object]:
        """What the participant sees of a quest, from the engine's state."""
        state = self.state(who)
        baselines = state.quests.get((key, period), ((0.0, 0),))
        shown = current_step(
            self.program.challenges[key], baselines, period, lambda m, p: state.metrics.get((m, p), 0.0)
        )
        return shown | {"paid": (key, period) in state.completions}

    def quest_ledger(self, key: str, who: str = "ana") -> list[tuple[str, int, str]]:
        """(currency, amount, kind) of every quest reward and reward taken back, in order."""
        return [
            (e.currency, e.amount, e.kind)
            for effects in self.effects
            if effects.event.participant == who
            for e in effects.ledger
            if e.key.startswith((f"challenge:{key}:", f"challenge-undone:{key}:"))
        ]


def test_welcome_quest_out_of_order_activity_does_not_complete_it() -> None:
    cafe = Cafe(BREWHOUSE)
    cafe.review()
    cafe.purchase()
    assert cafe.quest("welcome", "all") == {
        "step": 1,
        "of": 3,
        "name": "profile_done",
        "metric": "profile_done",
        "progress": 0,
        "target": 1,
        "completed": False,
        "paid": False,
    }
    done = cafe.profile()  # step 1 done; the earlier purchase and review count for nothing
    assert [tuple(b for b, _ in q.baselines) for q in done.quests] == [(0.0, 1.0)]
    assert cafe.quest("welcome", "all")["step"] == 2 and cafe.quest("welcome", "all")["progress"] == 0
    cafe.review()  # a review now is still out of order: step 2 wants a purchase
    assert cafe.quest("welcome", "all")["step"] == 2
    assert cafe.quest_ledger("welcome") == []
    assert cafe.state().completions == {}


def test_welcome_quest_in_order_pays_100_beans_exactly_once() -> None:
    cafe = Cafe(BREWHOUSE)
    cafe.profile()
    cafe.purchase()
    assert cafe.quest("welcome", "all") == {
        "step": 3,
        "of": 3,
        "name": "reviews",
        "metric": "reviews",
        "progress": 0,
        "target": 1,
        "completed": False,
        "paid": False,
    }
    finished = cafe.review()
    entries = [(e.currency, e.amount, e.kind) for e in finished.ledger if e.kind == "challenge"]
    assert entries == [("beans", 100, "challenge")]
    assert [(c.challenge, c.period, c.completed, c.reward) for c in finished.completions] == [
        ("welcome", "all", True, (("beans", 100),))
    ]
    assert "quest" in next(e.explain for e in finished.ledger if e.kind == "challenge")
    for _ in range(3):  # more of everything: no second reward
        cafe.profile()
        cafe.purchase()
        cafe.review()
    assert cafe.quest_ledger("welcome") == [("beans", 100, "challenge")]
    assert cafe.quest("welcome", "all") == {"step": 3, "of": 3, "completed": True, "paid": True}


def test_the_event_that_finishes_a_step_does_not_count_toward_a_later_one() -> None:
    """regular: 2 purchases, a review, 1 more purchase. The second purchase finishes step 1 only."""
    cafe = Cafe()
    cafe.purchase()
    assert cafe.quest("regular", "2026-W47")["progress"] == 1  # the first step counts from the period's start
    cafe.purchase()
    cafe.review()
    assert cafe.quest("regular", "2026-W47") == {
        "step": 3,
        "of": 3,
        "name": "One more",
        "metric": "purchases",
        "progress": 0,  # the two purchases of step 1 do not count toward step 3
        "target": 1,
        "completed": False,
        "paid": False,
    }
    assert cafe.quest_ledger("regular") == []
    cafe.purchase()
    assert cafe.quest_ledger("regular") == [("beans", 30, "challenge")]


def test_two_steps_on_the_same_metric_need_two_separate_events() -> None:
    document = with_challenges(
        BREWHOUSE_TEXT,
        "  - {key: twice, kind: quest, steps: [{metric: purchases, target: 1}, {metric: purchases, target: 1}],"
        " reward: {beans: 7}}\n",
    )
    cafe = Cafe(CompiledProgram(load_document(document), 1))
    first = cafe.purchase()
    assert [
        (q.challenge, tuple(b for b, _ in q.baselines), q.complete) for q in first.quests if q.challenge == "twice"
    ] == [("twice", (0.0, 1.0), False)]
    assert cafe.quest_ledger("twice") == []
    cafe.purchase()
    assert cafe.quest_ledger("twice") == [("beans", 7, "challenge")]


def test_weekly_quest_pays_once_a_week_and_starts_over_each_week() -> None:
    cafe = Cafe()
    for _ in range(2):  # week 47 done twice over: paid once
        cafe.purchase()
        cafe.purchase()
        cafe.review()
        cafe.purchase()
    assert cafe.quest_ledger("regular") == [("beans", 30, "challenge")]
    assert cafe.quest("regular", "2026-W47") == {"step": 3, "of": 3, "completed": True, "paid": True}
    # week 48 starts from nothing: the week-47 activity does not count
    cafe.purchase(at=W48)
    assert cafe.quest("regular", "2026-W48")["step"] == 1
    assert cafe.quest("regular", "2026-W48")["progress"] == 1
    cafe.purchase()
    cafe.review()
    cafe.purchase()
    assert cafe.quest_ledger("regular") == [("beans", 30, "challenge"), ("beans", 30, "challenge")]
    periods = [c.period for e in cafe.effects for c in e.completions if c.challenge == "regular"]
    assert periods == ["2026-W47", "2026-W48"]
    # a late week-47 event counts in week 47, which is already paid
    late = cafe.purchase(at=W47 + dt.timedelta(days=2))
    assert [e for e in late.ledger if e.kind == "challenge"] == []


def test_reversal_of_the_purchase_step_reopens_it_and_takes_the_reward_back() -> None:
    cafe = Cafe(BREWHOUSE)
    cafe.profile()
    bought = cafe.purchase()
    cafe.review()
    assert cafe.quest_ledger("welcome") == [("beans", 100, "challenge")]

    undone = cafe.reverse(bought)  # step 2 had 1 / 1: back to 0 / 1
    assert [(c.challenge, c.completed, c.reward) for c in undone.completions] == [("welcome", False, (("beans", 100),))]
    assert [(e.currency, e.amount, e.kind) for e in undone.ledger if e.key.startswith("challenge-undone:")] == [
        ("beans", -100, "reversal")
    ]
    assert cafe.quest("welcome", "all") == {
        "step": 2,
        "of": 3,
        "name": "purchases",
        "metric": "purchases",
        "progress": 0,
        "target": 1,
        "completed": False,
        "paid": False,
    }
    cafe.purchase()  # step 2 again; the review made before does not count for step 3 now
    assert cafe.quest("welcome", "all")["step"] == 3 and cafe.quest("welcome", "all")["progress"] == 0
    cafe.review()
    assert cafe.quest_ledger("welcome") == [
        ("beans", 100, "challenge"),
        ("beans", -100, "reversal"),
        ("beans", 100, "challenge"),
    ]
    # the profile's 50, the purchase left after the refund, and one reward net
    assert cafe.state().position("beans").available == 50 + 4 + 100


def test_reversal_of_the_first_step_reopens_the_whole_quest() -> None:
    cafe = Cafe(BREWHOUSE)
    joined = cafe.profile()
    cafe.purchase()
    cafe.review()
    cafe.reverse(joined)
    assert cafe.quest("welcome", "all")["step"] == 1
    assert cafe.state().quests[("welcome", "all")] == ((0.0, 0),)
    assert cafe.quest_ledger("welcome") == [("beans", 100, "challenge"), ("beans", -100, "reversal")]


def test_reversal_that_leaves_a_done_step_at_its_target_reopens_nothing() -> None:
    cafe = Cafe(BREWHOUSE)
    first = cafe.profile()
    cafe.profile()  # step 1 has 2 / 1
    cafe.purchase()
    cafe.review()
    undone = cafe.reverse(first)  # step 1: 1 / 1 — still done
    assert undone.quests == [] and undone.completions == []
    assert cafe.quest_ledger("welcome") == [("beans", 100, "challenge")]
    assert cafe.quest("welcome", "all") == {"step": 3, "of": 3, "completed": True, "paid": True}


def test_reversal_of_activity_from_before_a_step_began_does_not_reopen_it() -> None:
    """A step counts only what happened after it became current; refunding a purchase made before
    the profile was completed takes nothing from step 2 (the purchase after the profile did it)."""
    cafe = Cafe(BREWHOUSE)
    early = cafe.purchase()  # before the quest reached step 2: counts for nothing
    cafe.profile()
    cafe.purchase()  # step 2 done by this one
    cafe.review()
    assert cafe.quest_ledger("welcome") == [("beans", 100, "challenge")]
    undone = cafe.reverse(early)
    assert [e for e in undone.ledger if e.key.startswith("challenge-undone:")] == []
    assert cafe.quest("welcome", "all") == {"step": 3, "of": 3, "completed": True, "paid": True}


def test_a_purchase_after_the_step_began_completes_it_even_if_an_earlier_one_was_refunded() -> None:
    cafe = Cafe(BREWHOUSE)
    early = cafe.purchase()
    cafe.profile()  # step 2 (a purchase) is current from here
    cafe.reverse(early)  # the refunded purchase never counted toward step 2
    cafe.purchase()
    assert cafe.quest("welcome", "all")["step"] == 3


# --------------------------------------------------------------------------- quests: a reference model


@dataclasses.dataclass(frozen=True)
class Act:
    kind: str  # profile | purchase | review
    participant: str
    week: int  # 0: 2026-W47, 1: 2026-W48


@dataclasses.dataclass(frozen=True)
class Undo:
    which: int  # counted back among the acts not reversed yet


ACT_TYPES = {"profile": "profile.completed", "purchase": "purchase.completed", "review": "review.posted"}
ACT_METRICS = {"profile": "profile_done", "purchase": "purchases", "review": "reviews"}
WEEKS = ((W47, "2026-W47"), (W48, "2026-W48"))


@dataclasses.dataclass
class Fact:
    seq: int
    event_id: str
    participant: str
    metric: str
    week: int
    reversed: bool = False


class ReferenceQuests:
    """The quest rule written plainly, counting events rather than metric values.

    A step's progress is the number of live (not reversed) events on its metric, in the
    quest's period, that came after the step became current (for the first step: all of
    them). After every event the steps are checked in order: a step short of its target is
    the current one (later steps are forgotten); a step at its target lets the next one
    start now. The reward is paid when the last step is done and taken back when that stops.
    """

    def __init__(self, quests: Sequence[Challenge]) -> None:
        self.quests = quests
        self.facts: list[Fact] = []
        self.seq = 0
        self.starts: dict[tuple[str, str, str], list[int]] = {}  # (participant, quest, period) → step starts
        self.complete: set[tuple[str, str, str]] = set()
        self.paid: dict[tuple[str, str, str], int] = defaultdict(int)

    @staticmethod
    def period(quest: Challenge, week: int) -> str:
        return WEEKS[week][1] if quest.every == "week" else "all"

    def progress(self, key: tuple[str, str, str], step: int) -> int:
        participant, quest_key, period = key
        quest = next(q for q in self.quests if q.key == quest_key)
        metric = (quest.steps or [])[step].metric
        start = self.starts.get(key, [-1])[step]
        return sum(
            1
            for f in self.facts
            if not f.reversed
            and f.participant == participant
            and f.metric == metric
            and self.period(quest, f.week) == period
            and f.seq > start
        )

    def _settle(self, participant: str, week: int) -> None:
        for quest in self.quests:
            steps = quest.steps or []
            key = (participant, quest.key, self.period(quest, week))
            starts = self.starts.setdefault(key, [-1])
            i = 0
            while i < len(starts) and i < len(steps):
                if self.progress(key, i) < steps[i].target:
                    del starts[i + 1 :]
                    break
                if i + 1 == len(starts):
                    starts.append(self.seq)  # the next step starts after this event
                i += 1
            reward = int((quest.reward or {})["beans"])
            if len(starts) > len(steps) and key not in self.complete:
                self.complete.add(key)
                self.paid[key] += reward
            elif len(starts) <= len(steps) and key in self.complete:
                self.complete.discard(key)
                self.paid[key] -= reward

    def act(self, event_id: str, participant: str, kind: str, week: int) -> None:
        self.seq += 1
        self.facts.append(Fact(self.seq, event_id, participant, ACT_METRICS[kind], week))
        self._settle(participant, week)

    def undo(self, fact: Fact) -> None:
        self.seq += 1
        fact.reversed = True
        self._settle(fact.participant, fact.week)

    def view(self, key: tuple[str, str, str]) -> tuple[int, int | None, bool, int]:
        """(steps done, progress on the current step or None when complete, reward held, net reward)."""
        quest = next(q for q in self.quests if q.key == key[1])
        done = len(self.starts.get(key, [-1])) - 1
        progress = None if done >= len(quest.steps or []) else self.progress(key, done)
        return done, progress, key in self.complete, self.paid[key]


def engine_view(cafe: Cafe, key: tuple[str, str, str], net: dict[tuple[str, str, str], int]) -> tuple[Any, ...]:
    participant, quest, period = key
    state = cafe.state(participant)
    baselines = state.quests.get((quest, period), ((0.0, 0),))
    shown = current_step(cafe.program.challenges[quest], baselines, period, lambda m, p: state.metrics.get((m, p), 0.0))
    progress = None if shown["completed"] else shown["progress"]
    return len(baselines) - 1, progress, (quest, period) in state.completions, net[key]


def run_against_reference(script: Sequence[Act | Undo]) -> None:
    cafe = Cafe()
    reference = ReferenceQuests(CAFE.quests)
    net: dict[tuple[str, str, str], int] = defaultdict(int)
    keys = [(p, q.key, ReferenceQuests.period(q, w)) for p in ("ana", "bo") for q in CAFE.quests for w in (0, 1)]
    for n, step in enumerate(script):
        if isinstance(step, Act):
            at = WEEKS[step.week][0] + dt.timedelta(minutes=n)
            effects = cafe.send(ACT_TYPES[step.kind], step.participant, at, amount=1, text="ok")
            reference.act(effects.event.id, step.participant, step.kind, step.week)
        else:
            live = [f for f in reference.facts if not f.reversed]
            if not live:
                continue
            fact = live[-1 - step.which % len(live)]
            at = WEEKS[fact.week][0] + dt.timedelta(minutes=n)
            reversal = Event(f"undo-{n}", "entry.reversed", fact.participant, at, {}, fact.event_id)
            effects = cafe.world.process(reversal, CAFE)
            cafe.effects.append(effects)
            reference.undo(fact)
        for entry in effects.ledger:
            kind, _, rest = entry.key.partition(":")
            if kind in ("challenge", "challenge-undone"):
                quest, period, _currency = rest.split(":")
                net[(effects.event.participant, quest, period)] += entry.amount
        for key in keys:
            assert engine_view(cafe, key, net) == reference.view(key), (n, step, key)


acts = st.builds(
    Act,
    st.sampled_from(["profile", "purchase", "purchase", "review", "review"]),
    st.sampled_from(["ana", "bo"]),
    st.sampled_from([0, 0, 1]),
)
undos = st.builds(Undo, st.integers(0, 30))


@PROPERTY_SETTINGS
@given(script=st.lists(acts, max_size=40))
def test_quests_follow_the_reference_rule_without_reversals(script: list[Act]) -> None:
    run_against_reference(script)


@PROPERTY_SETTINGS
@given(script=st.lists(st.one_of(acts, acts, acts, undos), max_size=40))
@example(script=[Act("purchase", "ana", 0), Act("profile", "ana", 0), Undo(1), Act("purchase", "ana", 0)])
def test_quests_follow_the_reference_rule_with_reversals(script: list[Act | Undo]) -> None:
    run_against_reference(script)


# --------------------------------------------------------------------------- quests over HTTP


def read_key(client: TestClient, admin: dict[str, str], program: str) -> dict[str, str]:
    response = client.post("/api/v1/keys", json={"role": "read", "programs": [program]}, headers=admin)
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['key']}"}


B = "/api/v1/programs/brewhouse-rewards"


@pytest.fixture
def brewhouse(client: TestClient, admin: dict[str, str], brewhouse_text: str) -> TestClient:
    response = client.put(B, content=brewhouse_text, headers={**admin, "Content-Type": "application/yaml"})
    assert response.status_code == 201, response.text
    return client


def cafe_event(event_id: str, kind: str, participant: str = "cus-1", **fields: Any) -> dict[str, Any]:
    data = {"purchase": {"amount": 4}, "review": {"text": "lovely flat white"}, "profile": {}}.get(kind, {})
    return event(
        event_id,
        ACT_TYPES.get(kind, kind),
        participant=participant,
        occurred_at=fields.pop("occurred_at", "2026-11-20T10:00:00Z"),
        data=data,
        **fields,
    )


def send(client: TestClient, headers: dict[str, str], *events: dict[str, Any]) -> None:
    response = client.post(f"{B}/events", json={"events": list(events)}, headers=headers)
    assert response.status_code == 200, response.text
    assert [r["status"] for r in response.json()["results"]] == ["accepted"] * len(events), response.text


def welcome_on_profile(client: TestClient, headers: dict[str, str], who: str = "cus-1") -> dict[str, Any]:
    response = client.get(f"{B}/participants/{who}", headers=headers)
    assert response.status_code == 200, response.text
    item: dict[str, Any] = by_key(response.json()["challenges"])["welcome"]
    return item


def welcome_you(client: TestClient, headers: dict[str, str], who: str = "cus-1") -> dict[str, Any]:
    response = client.get(f"{B}/challenges", params={"participant": who}, headers=headers)
    assert response.status_code == 200, response.text
    you: dict[str, Any] = by_key(response.json()["challenges"])["welcome"]["you"]
    return you


def quest_entries(client: TestClient, headers: dict[str, str], who: str = "cus-1") -> list[tuple[str, int, str]]:
    response = client.get(f"{B}/participants/{who}/ledger", headers=headers)
    assert response.status_code == 200, response.text
    return sorted(
        (e["kind"], e["amount"], e["explain"])
        for e in response.json()["entries"]
        if e["kind"] in ("challenge", "reversal") and "welcome" in e["explain"]
    )


def test_welcome_quest_over_http_shows_the_current_step_and_pays_once(
    brewhouse: TestClient, admin: dict[str, str]
) -> None:
    send(brewhouse, admin, cafe_event("r1", "review"), cafe_event("p1", "purchase"))  # out of order
    step_one = {"key": "welcome", "kind": "quest", "period": "all", "step": 1, "of": 3, "name": "profile_done"}
    assert welcome_on_profile(brewhouse, admin).items() >= (step_one | {"progress": 0, "completed": False}).items()
    send(brewhouse, admin, cafe_event("pr", "profile"))
    on_profile = welcome_on_profile(brewhouse, admin)
    assert {k: on_profile[k] for k in ("step", "of", "metric", "progress", "target", "completed")} == {
        "step": 2,
        "of": 3,
        "metric": "purchases",
        "progress": 0,  # the purchase made before the profile counts for nothing
        "target": 1,
        "completed": False,
    }
    you = welcome_you(brewhouse, admin)
    assert {k: you[k] for k in ("step", "of", "metric", "progress", "target", "completed")} == {
        "step": 2,
        "of": 3,
        "metric": "purchases",
        "progress": 0,
        "target": 1,
        "completed": False,
    }
    assert quest_entries(brewhouse, admin) == []

    send(brewhouse, admin, cafe_event("p2", "purchase"))
    assert welcome_you(brewhouse, admin)["step"] == 3
    assert welcome_on_profile(brewhouse, admin)["progress"] == 0  # the old review does not count for step 3
    send(brewhouse, admin, cafe_event("r2", "review"))
    assert welcome_on_profile(brewhouse, admin)["completed"] is True
    assert welcome_you(brewhouse, admin) == {"step": 3, "of": 3, "completed": True}
    entries = quest_entries(brewhouse, admin)
    assert [(kind, amount) for kind, amount, _ in entries] == [("challenge", 100)]

    send(brewhouse, admin, cafe_event("p3", "purchase"), cafe_event("r3", "review"), cafe_event("pr2", "profile"))
    assert [(kind, amount) for kind, amount, _ in quest_entries(brewhouse, admin)] == [("challenge", 100)]
    welcome_listed = by_key(brewhouse.get(f"{B}/challenges", headers=admin).json()["challenges"])["welcome"]
    assert welcome_listed["kind"] == "quest" and len(welcome_listed["steps"]) == 3


def test_welcome_quest_over_http_is_reopened_by_a_refund(
    brewhouse: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    send(brewhouse, admin, cafe_event("pr", "profile"), cafe_event("p1", "purchase"), cafe_event("r1", "review"))
    balance = brewhouse.get(f"{B}/participants/cus-1", headers=admin).json()["balances"]["beans"]
    assert balance == 50 + 4 + 100  # profile, purchase, quest (the review's text is too short for beans)
    send(brewhouse, admin, cafe_event("refund-1", "purchase.refunded", reverses="p1"))
    assert [(kind, amount) for kind, amount, _ in quest_entries(brewhouse, admin)] == [
        ("challenge", 100),
        ("reversal", -100),
    ]
    on_profile = welcome_on_profile(brewhouse, admin)
    assert (on_profile["step"], on_profile["metric"], on_profile["completed"]) == (2, "purchases", False)
    assert brewhouse.get(f"{B}/participants/cus-1", headers=admin).json()["balances"]["beans"] == 50
    send(brewhouse, admin, cafe_event("p2", "purchase"), cafe_event("r2", "review"))
    assert welcome_on_profile(brewhouse, admin)["completed"] is True
    assert [(kind, amount) for kind, amount, _ in quest_entries(brewhouse, admin)] == [
        ("challenge", 100),
        ("challenge", 100),
        ("reversal", -100),
    ]
    assert replay(runtime, "brewhouse-rewards").mismatches == []


NOVEMBER_QUEST = """\
  - key: november
    kind: quest
    start: 2026-11-01
    end: 2026-11-30
    steps: [{metric: purchases, target: 2}, {metric: reviews, target: 1}]
    reward: {beans: 10}
"""


def test_a_dated_quest_counts_only_its_dates_across_requests(client: TestClient, admin: dict[str, str]) -> None:
    document = with_challenges(BREWHOUSE_TEXT, NOVEMBER_QUEST)
    response = client.put(B, content=document, headers={**admin, "Content-Type": "application/yaml"})
    assert response.status_code == 201, response.text
    october = "2026-10-31T12:00:00Z"  # the day before: counts for nothing
    send(client, admin, cafe_event("p0", "purchase", occurred_at=october))
    send(client, admin, cafe_event("p1", "purchase", occurred_at="2026-11-02T12:00:00Z"))
    send(client, admin, cafe_event("r1", "review", occurred_at="2026-11-03T12:00:00Z"))  # too soon: step 1 is 1 / 2
    send(client, admin, cafe_event("p2", "purchase", occurred_at="2026-11-04T12:00:00Z"))
    listed_now = client.get(f"{B}/challenges", params={"participant": "cus-1"}, headers=admin).json()
    november = by_key(listed_now["challenges"])["november"]
    assert november["period"] == "20261101-20261130"
    assert {k: november["you"][k] for k in ("step", "metric", "progress", "completed")} == {
        "step": 2,
        "metric": "reviews",
        "progress": 0,
        "completed": False,
    }
    send(client, admin, cafe_event("r2", "review", occurred_at="2026-11-30T23:30:00Z"))  # London: still 30 November
    entries = client.get(f"{B}/participants/cus-1/ledger", headers=admin).json()["entries"]
    assert [(e["kind"], e["amount"]) for e in entries if "november" in e["explain"]] == [("challenge", 10)]


def test_a_draft_quest_pays_nothing_until_launched(client: TestClient, admin: dict[str, str]) -> None:
    document = BREWHOUSE_TEXT.replace("    reward: {beans: 100}\n", "    reward: {beans: 100}\n    draft: true\n", 1)
    assert "draft: true" in document
    response = client.put(B, content=document, headers={**admin, "Content-Type": "application/yaml"})
    assert response.status_code == 201, response.text
    send(client, admin, cafe_event("pr", "profile"), cafe_event("p1", "purchase"), cafe_event("r1", "review"))
    assert quest_entries(client, admin) == []
    reader = read_key(client, admin, "brewhouse-rewards")
    assert "welcome" not in by_key(client.get(f"{B}/challenges", headers=reader).json()["challenges"])
    launched = client.post(f"{B}/challenges/welcome/launch", headers=admin)
    assert launched.status_code == 200, launched.text
    assert launched.json() == {"program": "brewhouse-rewards", "version": 2, "challenge": "welcome", "paid": 1}
    entries = quest_entries(client, admin)
    assert [(kind, amount) for kind, amount, _ in entries] == [("challenge", 100)]
    assert "paid at launch" in entries[0][2]
    assert "welcome" in by_key(client.get(f"{B}/challenges", headers=reader).json()["challenges"])


def test_replay_rebuild_restores_quest_progress(brewhouse: TestClient, admin: dict[str, str], runtime: Runtime) -> None:
    send(brewhouse, admin, cafe_event("pr", "profile"), cafe_event("p1", "purchase"))
    with runtime.db.write() as connection:
        assert connection.execute(t.quest_progress.delete()).rowcount == 1
    damaged = replay(runtime, "brewhouse-rewards")
    assert any(m.startswith("quest ") for m in damaged.mismatches), damaged.mismatches
    replay(runtime, "brewhouse-rewards", rebuild=True)
    assert replay(runtime, "brewhouse-rewards").ok
    assert welcome_on_profile(brewhouse, admin)["step"] == 3


# --------------------------------------------------------------------------- races, duels and eligibility (storage)

ARENA_TEXT = """\
program: arena
name: Arena
timezone: America/New_York
currencies:
  - {key: coins, name: Coins, spendable: true}
metrics:
  - {key: deals_won, event: deal.won, aggregate: count}
  - {key: revenue, event: deal.won, aggregate: sum, value: data.amount}
challenges:
  - key: race-to-3
    kind: competition
    format: race
    metric: deals_won
    target: 3
    start: 2026-10-01
    end: 2026-10-31
    prizes: [{rank: 1, award: {coins: 300}}, {rank: 2, award: {coins: 200}}, {rank: 3, award: {coins: 100}}]
  - key: weekly-race
    kind: competition
    format: race
    metric: deals_won
    target: 2
    every: week
    prizes: [{rank: 1, award: {coins: 30}}]
  - key: duel
    kind: competition
    format: duel
    metric: revenue
    entrants: [ann, bob]
    start: 2026-10-01
    end: 2026-10-31
    prizes: [{rank: 1, award: {coins: 500}}, {rank: 2, award: {coins: 50}}]
  - key: team-duel
    kind: competition
    format: duel
    mode: team
    teams: [east, west]
    metric: revenue
    start: 2026-10-01
    end: 2026-10-31
    prizes: [{rank: 1, award: {coins: 70}}]
  - key: east-region
    kind: competition
    metric: revenue
    eligible: participant.attributes.region == "east"
    start: 2026-10-01
    end: 2026-10-31
    prizes: [{rank: 1, award: {coins: 11}}, {rank: 2, award: {coins: 7}}]
  - key: invited
    kind: competition
    metric: revenue
    entrants: [ann, cat]
    start: 2026-10-01
    end: 2026-10-31
    prizes: [{rank: 1, award: {coins: 13}}, {rank: 2, award: {coins: 3}}]
  - key: east-members
    kind: competition
    metric: revenue
    teams: [east]
    start: 2026-10-01
    end: 2026-10-31
    prizes: [{rank: 1, award: {coins: 17}}, {rank: 2, award: {coins: 5}}]
  - key: east-race
    kind: competition
    format: race
    metric: deals_won
    target: 1
    eligible: participant.attributes.region == "east"
    start: 2026-10-01
    end: 2026-10-31
    prizes: [{rank: 1, award: {coins: 19}}]
"""
# October in New York ends 2026-11-01 04:00 UTC; the grace hour ends at 05:00.
BEFORE_CLOSE = dt.datetime(2026, 11, 1, 4, 30, tzinfo=UTC)
AFTER_CLOSE = dt.datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
OCTOBER = "20261001-20261031"
PEOPLE = {  # id → (teams, attributes)
    "ann": (["east"], {"region": "east"}),
    "bob": (["east"], {"region": "east"}),
    "cat": (["west"], {"region": "west"}),
    "dan": (["north"], {"region": "east"}),
}


def set_up(runtime: Runtime, document: str = ARENA_TEXT, people: dict[str, Any] | None = None) -> None:
    with runtime.db.write() as connection:
        record, _ = programs.apply(connection, load_document(document), actor="test")
        for who, (teams, attributes) in (people or PEOPLE).items():
            participants.set_profile(connection, record.id, who, name=who.title(), teams=teams, attributes=attributes)


def deal(event_id: str, who: str, when: str, amount: float = 1000) -> dict[str, Any]:
    """A deal won at ``when``: an October day ("10-05") at 15:00 UTC, or a full RFC 3339 time."""
    occurred = when if "T" in when else f"2026-{when}T15:00:00Z"
    return event(event_id, participant=who, occurred_at=occurred, data={"amount": amount})


def won(runtime: Runtime, *events: dict[str, Any], program: str = "arena") -> None:
    outcomes = ingest(runtime, program, list(events))
    assert [o.status for o in outcomes] == ["accepted"] * len(events), outcomes


def paid(runtime: Runtime, challenge: str) -> dict[str, int]:
    """What closing paid for ``challenge``, per participant."""
    with runtime.db.read() as connection:
        rows = connection.execute(
            text(
                "SELECT p.external_id, l.kind, sum(l.amount) FROM ledger_entries l "
                "JOIN participants p ON p.id = l.participant_id "
                "WHERE l.idempotency_key LIKE :prefix GROUP BY p.external_id, l.kind"
            ),
            {"prefix": f"close:{challenge}:%"},
        ).all()
    assert {r[1] for r in rows} <= {"prize"}
    return {r[0]: int(r[2]) for r in rows}


def closed_result(runtime: Runtime, challenge: str, period: str = OCTOBER) -> dict[str, Any]:
    with runtime.db.read() as connection:
        result: dict[str, Any] = connection.execute(
            select(t.closed_periods.c.result).where(
                t.closed_periods.c.challenge == challenge, t.closed_periods.c.period == period
            )
        ).scalar_one()
    return result


def listed(runtime: Runtime, now: dt.datetime = BEFORE_CLOSE, program: str = "arena") -> dict[str, dict[str, Any]]:
    with runtime.db.read() as connection:
        record = programs.find(connection, program)
        body = list_challenges(
            connection, record, runtime.programs.compiled(connection, record), include_drafts=True, now=now
        )
    return by_key(body["challenges"])


def settled(closed: Sequence[Closed], challenge: str) -> list[tuple[str, int]]:
    """(period, entries booked) of the periods of ``challenge`` a closing run settled."""
    return [(c.period, c.paid) for c in closed if c.challenge == challenge]


def race_order(runtime: Runtime, challenge: str = "race-to-3") -> list[tuple[int, str]]:
    return [(s["rank"], s["id"]) for s in listed(runtime)[challenge]["standings"]]


def test_race_places_finishers_by_the_event_time_they_reached_the_target(runtime: Runtime) -> None:
    set_up(runtime)
    won(runtime, deal("a1", "ann", "10-02"), deal("a2", "ann", "10-03"), deal("a3", "ann", "10-09"))  # 3rd on 9 Oct
    won(runtime, deal("c1", "cat", "10-07"), deal("c2", "cat", "10-07"), deal("c3", "cat", "10-07"))  # on 7 Oct
    won(runtime, deal("b1", "bob", "10-02"), deal("b2", "bob", "10-04"), deal("b3", "bob", "10-05"))  # on 5 Oct
    won(runtime, deal("d1", "dan", "10-01"), deal("d2", "dan", "10-01"))  # two deals: not a finisher
    standings = listed(runtime)["race-to-3"]["standings"]
    assert [(s["rank"], s["id"]) for s in standings] == [(1, "bob"), (2, "cat"), (3, "ann")]
    reached = [dt.datetime.fromisoformat(str(s["reached_at"]).replace("Z", "+00:00")) for s in standings]
    assert reached == [dt.datetime(2026, 10, d, 15, 0, tzinfo=UTC) for d in (5, 7, 9)]

    assert settled(close_periods(runtime, now=BEFORE_CLOSE), "race-to-3") == []  # within the grace hour
    assert paid(runtime, "race-to-3") == {}
    assert settled(close_periods(runtime, now=AFTER_CLOSE), "race-to-3") == [(OCTOBER, 3)]
    assert paid(runtime, "race-to-3") == {"bob": 300, "cat": 200, "ann": 100}
    ranking = closed_result(runtime, "race-to-3")["ranking"]
    assert [(r["rank"], r["id"]) for r in ranking] == [(1, "bob"), (2, "cat"), (3, "ann")]
    assert ranking[0]["reached_at"].startswith("2026-10-05T15:00:00")
    assert settled(close_periods(runtime, now=AFTER_CLOSE), "race-to-3") == []  # closing twice pays once
    close_periods(runtime, now=AFTER_CLOSE + dt.timedelta(days=30))
    assert paid(runtime, "race-to-3") == {"bob": 300, "cat": 200, "ann": 100}


def test_race_finishers_at_the_same_instant_share_a_place(runtime: Runtime) -> None:
    set_up(runtime)
    same = "2026-10-08T12:00:00Z"
    won(runtime, *(deal(f"a{i}", "ann", d) for i, d in enumerate(("10-01", "10-02", same))))
    won(runtime, *(deal(f"b{i}", "bob", d) for i, d in enumerate(("10-03", "10-04", same))))
    won(runtime, *(deal(f"c{i}", "cat", "10-09") for i in range(3)))
    assert race_order(runtime) == [(1, "ann"), (1, "bob"), (3, "cat")]
    close_periods(runtime, now=AFTER_CLOSE)
    assert paid(runtime, "race-to-3") == {"ann": 300, "bob": 300, "cat": 100}


def test_a_late_event_before_the_close_changes_the_race_order_and_after_it_does_not(runtime: Runtime) -> None:
    set_up(runtime)
    won(runtime, *(deal(f"a{i}", "ann", "10-20") for i in range(3)))  # ann reaches 3 on 20 Oct
    won(runtime, *(deal(f"b{i}", "bob", "10-25") for i in range(3)))
    assert race_order(runtime) == [(1, "ann"), (2, "bob")]
    # dan's deals of early October arrive late, but before the close: he reached 3 on 7 October
    won(runtime, deal("d1", "dan", "10-05"), deal("d2", "dan", "10-06"), deal("d3", "dan", "10-07"))
    assert race_order(runtime) == [(1, "dan"), (2, "ann"), (3, "bob")]
    close_periods(runtime, now=AFTER_CLOSE)
    assert paid(runtime, "race-to-3") == {"dan": 300, "ann": 200, "bob": 100}
    # cat's late deals arrive after the close: they count in the metric but not in the prizes paid
    won(runtime, deal("c1", "cat", "10-01"), deal("c2", "cat", "10-01"), deal("c3", "cat", "10-01"))
    assert race_order(runtime)[0] == (1, "cat")  # the standings show it …
    assert settled(close_periods(runtime, now=AFTER_CLOSE + dt.timedelta(hours=1)), "race-to-3") == []
    assert paid(runtime, "race-to-3") == {"dan": 300, "ann": 200, "bob": 100}  # … the prizes paid stand


def test_race_reach_time_follows_event_time_when_a_participants_own_events_arrive_out_of_order(
    runtime: Runtime,
) -> None:
    """ann's deals are on 2, 3 and 20 October: in event time she reached 3 deals on 20 October, after
    bob (9 October), whatever order her deals arrived in."""
    set_up(runtime)
    won(runtime, deal("b1", "bob", "10-07"), deal("b2", "bob", "10-08"), deal("b3", "bob", "10-09"))
    won(runtime, deal("a3", "ann", "10-20"), deal("a1", "ann", "10-02"))  # the 20 October deal arrives first
    won(runtime, deal("a2", "ann", "10-03"))  # a late deal makes three
    standings = listed(runtime)["race-to-3"]["standings"]
    assert [(s["id"], str(s["reached_at"])[:10]) for s in standings] == [("bob", "2026-10-09"), ("ann", "2026-10-20")]
    close_periods(runtime, now=AFTER_CLOSE)
    assert paid(runtime, "race-to-3") == {"bob": 300, "ann": 200}


def test_a_reversal_before_the_close_removes_a_race_finisher(runtime: Runtime) -> None:
    set_up(runtime)
    won(runtime, *(deal(f"b{i}", "bob", f"10-0{i + 1}") for i in range(3)))
    won(runtime, *(deal(f"a{i}", "ann", "10-15") for i in range(3)))
    assert race_order(runtime) == [(1, "bob"), (2, "ann")]
    won(runtime, event("b-undo", "deal.reopened", participant="bob", occurred_at="2026-10-20T12:00:00Z", reverses="b0"))
    assert race_order(runtime) == [(1, "ann")]
    close_periods(runtime, now=AFTER_CLOSE)
    assert paid(runtime, "race-to-3") == {"ann": 300}
    assert [r["id"] for r in closed_result(runtime, "race-to-3")["ranking"]] == ["ann"]


def test_a_weekly_race_closes_each_week_once(runtime: Runtime) -> None:
    set_up(runtime)
    won(
        runtime,
        deal("a1", "ann", "10-06"),
        deal("a2", "ann", "10-07"),  # ann: 2 in week 41 on 7 Oct
        deal("b1", "bob", "10-05"),
        deal("b2", "bob", "10-08"),  # bob: on 8 Oct
        deal("b3", "bob", "10-13"),
        deal("b4", "bob", "10-13"),  # bob: 2 in week 42
        deal("c1", "cat", "10-12"),  # cat: 1 in week 42
    )
    week42_closes = dt.datetime(2026, 10, 19, 5, 0, tzinfo=UTC)  # Monday 19 Oct 00:00 New York, + 1 hour
    closed = close_periods(runtime, now=week42_closes - dt.timedelta(minutes=1))
    assert settled(closed, "weekly-race") == [("2026-W41", 1)]
    assert paid(runtime, "weekly-race") == {"ann": 30}
    assert settled(close_periods(runtime, now=week42_closes), "weekly-race") == [("2026-W42", 1)]
    assert paid(runtime, "weekly-race") == {"ann": 30, "bob": 30}
    assert settled(close_periods(runtime, now=week42_closes), "weekly-race") == []
    assert paid(runtime, "weekly-race") == {"ann": 30, "bob": 30}


def test_race_standings_over_http_show_rank_id_and_reached_at(
    runtime: Runtime, client: TestClient, admin: dict[str, str]
) -> None:
    set_up(runtime)
    won(runtime, *(deal(f"b{i}", "bob", "10-05") for i in range(3)), *(deal(f"a{i}", "ann", "10-09") for i in range(3)))
    response = client.get("/api/v1/programs/arena/challenges", headers=admin)
    assert response.status_code == 200, response.text
    race = by_key(response.json()["challenges"])["race-to-3"]
    assert (race["kind"], race["format"], race["period"]) == ("competition", "race", OCTOBER)
    assert [{k: s[k] for k in ("rank", "id")} for s in race["standings"]] == [
        {"rank": 1, "id": "bob"},
        {"rank": 2, "id": "ann"},
    ]
    assert [s["reached_at"][:19] for s in race["standings"]] == ["2026-10-05T15:00:00", "2026-10-09T15:00:00"]


def test_a_duel_ranks_only_its_two_entrants(runtime: Runtime) -> None:
    set_up(runtime)
    won(runtime, deal("a1", "ann", "10-05", 9000), deal("b1", "bob", "10-05", 5000), deal("c1", "cat", "10-05", 50000))
    assert [(s["rank"], s["id"]) for s in listed(runtime)["duel"]["standings"]] == [(1, "ann"), (2, "bob")]
    close_periods(runtime, now=AFTER_CLOSE)
    assert paid(runtime, "duel") == {"ann": 500, "bob": 50}  # cat sold more but is not in the duel


def test_a_tied_duel_shares_the_first_prize(runtime: Runtime) -> None:
    set_up(runtime)
    won(runtime, deal("a1", "ann", "10-05", 5000), deal("b1", "bob", "10-06", 5000), deal("d1", "dan", "10-06", 9e6))
    assert [(s["rank"], s["id"]) for s in listed(runtime)["duel"]["standings"]] == [(1, "ann"), (1, "bob")]
    close_periods(runtime, now=AFTER_CLOSE)
    assert paid(runtime, "duel") == {"ann": 500, "bob": 500}


def test_a_team_duel_pays_each_member_of_the_winning_team_only(runtime: Runtime) -> None:
    set_up(runtime)
    won(
        runtime,
        deal("a1", "ann", "10-05", 3000),
        deal("b1", "bob", "10-05", 3000),  # east: 6,000
        deal("c1", "cat", "10-05", 5000),  # west: 5,000
        deal("d1", "dan", "10-05", 100000),  # north: bigger, but not in the duel
    )
    standings = listed(runtime)["team-duel"]["standings"]
    assert [(s["rank"], s["id"], s["value"]) for s in standings] == [(1, "east", 6000), (2, "west", 5000)]
    close_periods(runtime, now=AFTER_CLOSE)
    assert paid(runtime, "team-duel") == {"ann": 70, "bob": 70}


def test_eligible_competition_ranks_and_pays_only_who_qualifies_when_the_period_closes(runtime: Runtime) -> None:
    set_up(runtime)
    won(
        runtime,
        deal("c1", "cat", "10-05", 90000),  # west: not eligible
        deal("a1", "ann", "10-05", 30000),
        deal("b1", "bob", "10-05", 20000),
        deal("d1", "dan", "10-05", 10000),
    )
    assert [s["id"] for s in listed(runtime)["east-region"]["standings"]] == ["ann", "bob", "dan"]
    with runtime.db.write() as connection:  # ann moves west before the period closes
        record = programs.find(connection, "arena")
        participants.set_profile(connection, record.id, "ann", name=None, teams=None, attributes={"region": "west"})
    assert [(s["rank"], s["id"]) for s in listed(runtime)["east-region"]["standings"]] == [(1, "bob"), (2, "dan")]
    close_periods(runtime, now=AFTER_CLOSE)
    assert paid(runtime, "east-region") == {"bob": 11, "dan": 7}
    assert [r["id"] for r in closed_result(runtime, "east-region")["ranking"]] == ["bob", "dan"]


def test_entrants_of_an_individual_competition_are_the_only_ones_ranked(runtime: Runtime) -> None:
    set_up(runtime)
    won(runtime, deal("a1", "ann", "10-05", 100), deal("b1", "bob", "10-05", 9000), deal("c1", "cat", "10-05", 500))
    assert [(s["rank"], s["id"]) for s in listed(runtime)["invited"]["standings"]] == [(1, "cat"), (2, "ann")]
    close_periods(runtime, now=AFTER_CLOSE)
    assert paid(runtime, "invited") == {"cat": 13, "ann": 3}


def test_teams_of_an_individual_competition_restrict_it_to_their_members(runtime: Runtime) -> None:
    set_up(runtime)
    won(runtime, deal("a1", "ann", "10-05", 100), deal("b1", "bob", "10-05", 900), deal("c1", "cat", "10-05", 5000))
    assert [(s["rank"], s["id"]) for s in listed(runtime)["east-members"]["standings"]] == [(1, "bob"), (2, "ann")]
    close_periods(runtime, now=AFTER_CLOSE)
    assert paid(runtime, "east-members") == {"bob": 17, "ann": 5}


def test_an_ineligible_participant_never_finishes_an_eligible_only_race(runtime: Runtime) -> None:
    set_up(runtime)
    won(runtime, deal("c1", "cat", "10-02"), deal("a1", "ann", "10-03"))
    assert [s["id"] for s in listed(runtime)["east-race"]["standings"]] == ["ann"]
    close_periods(runtime, now=AFTER_CLOSE)
    assert paid(runtime, "east-race") == {"ann": 19}


# --------------------------------------------------------------------------- eligibility of goals

EAST_GOAL = ACME_TEXT.replace(
    "every: week, mode: individual, reward: {coins: 100}}",
    "every: week, mode: individual, reward: {coins: 100}, eligible: 'participant.attributes.region == \"east\"'}",
)
NOVEMBER_WEEK = [dt.datetime(2026, 11, 16 + d, 17, 0, tzinfo=UTC) for d in range(7)]  # 2026-W47 in New York


def test_an_ineligible_participant_never_completes_a_goal_judged_at_scoring_time() -> None:
    assert EAST_GOAL != ACME_TEXT
    program = CompiledProgram(load_document(EAST_GOAL), 1)
    world = World(lambda _version: program)
    world.state("ana").attributes = {"region": "west"}
    completions = []
    for i in range(6):
        effects = world.process(Event(f"w{i}", "deal.won", "ana", NOVEMBER_WEEK[i], {"amount": 1000}), program)
        completions += [c for c in effects.completions if c.challenge == "five-a-week"]
    assert completions == []
    world.state("ana").attributes = {"region": "east"}  # judged when each event is scored
    effects = world.process(Event("w6", "deal.won", "ana", NOVEMBER_WEEK[6], {"amount": 1000}), program)
    assert [(c.challenge, c.period, c.value) for c in effects.completions] == [("five-a-week", "2026-W47", 7)]
    assert [(e.currency, e.amount) for e in effects.ledger if e.kind == "challenge"] == [("coins", 100)]
    no_attributes = World(lambda _version: program)  # a missing attribute is not eligible
    for i in range(5):
        done = no_attributes.process(Event(f"n{i}", "deal.won", "bo", NOVEMBER_WEEK[i], {"amount": 1000}), program)
        assert done.completions == []


def test_an_ineligible_participant_gets_no_goal_reward_and_does_not_see_the_goal(
    runtime: Runtime, client: TestClient, admin: dict[str, str]
) -> None:
    set_up(runtime, EAST_GOAL, {"west-rep": (["west"], {"region": "west"}), "east-rep": (["east"], {"region": "east"})})
    deals = [
        deal(f"{who}-{i}", who, NOVEMBER_WEEK[i].isoformat(), 1000)
        for who in ("west-rep", "east-rep")
        for i in range(5)
    ]
    won(runtime, *deals, program="acme-sales")
    with runtime.db.read() as connection:
        done = connection.execute(
            select(t.challenge_completions.c.challenge, t.participants.c.external_id).join(
                t.participants, t.participants.c.id == t.challenge_completions.c.participant_id
            )
        ).all()
    assert [tuple(r) for r in done] == [("five-a-week", "east-rep")]
    west = client.get("/api/v1/programs/acme-sales/participants/west-rep", headers=admin).json()
    assert "five-a-week" not in {c["key"] for c in west["challenges"]}
    assert west["balances"]["coins"] == 5  # the deals' own coins, no challenge reward


# --------------------------------------------------------------------------- validation

BASE: dict[str, Any] = {
    "program": "checks",
    "name": "Checks",
    "timezone": "UTC",
    "currencies": [{"key": "coins", "name": "Coins", "spendable": True}],
    "metrics": [{"key": "deals", "event": "deal.won", "aggregate": "count"}],
}
OCT = {"start": "2026-10-01", "end": "2026-10-31"}
PRIZES = {"prizes": [{"rank": 1, "award": {"coins": 5}}]}
RANKING = {"key": "c", "kind": "competition", "metric": "deals", **OCT, **PRIZES}
STEPS = {"steps": [{"metric": "deals", "target": 1}]}

INVALID_CHALLENGES: list[tuple[str, dict[str, Any], str, str]] = [
    ("race without target", {**RANKING, "format": "race"}, "challenges[0].target", "a race needs a target"),
    ("target on a ranking", {**RANKING, "target": 5}, "challenges[0].target", "only a race has a target"),
    ("reward on a competition", {**RANKING, "reward": {"coins": 5}}, "challenges[0].reward", "prizes, not a reward"),
    ("duel with one entrant", {**RANKING, "format": "duel", "entrants": ["a"]}, "challenges[0].entrants", "two"),
    ("duel with no entrants", {**RANKING, "format": "duel"}, "challenges[0].entrants", "two"),
    ("duel with three", {**RANKING, "format": "duel", "entrants": ["a", "b", "c"]}, "challenges[0].entrants", "two"),
    ("duel with one twice", {**RANKING, "format": "duel", "entrants": ["a", "a"]}, "challenges[0].entrants", "two"),
    (
        "team duel with one team",
        {**RANKING, "format": "duel", "mode": "team", "teams": ["east"]},
        "challenges[0].teams",
        "two",
    ),
    (
        "team duel with three teams",
        {**RANKING, "format": "duel", "mode": "team", "teams": ["a", "b", "c"]},
        "challenges[0].teams",
        "two",
    ),
    ("team race", {**RANKING, "format": "race", "target": 3, "mode": "team"}, "challenges[0].mode", "individual"),
    (
        "team quest",
        {"key": "c", "kind": "quest", "mode": "team", **STEPS, "reward": {"coins": 5}},
        "challenges[0].mode",
        "a quest is individual",
    ),
    (
        "entrants on a team competition",
        {**RANKING, "mode": "team", "entrants": ["a"]},
        "challenges[0].entrants",
        "team competition",
    ),
    (
        "eligible on a team goal",
        {"key": "c", "metric": "deals", "target": 3, "mode": "team", "eligible": "true"},
        "challenges[0].eligible",
        "individual",
    ),
    (
        "eligible on a team competition",
        {**RANKING, "mode": "team", "eligible": 'participant.attributes.region == "east"'},
        "challenges[0].eligible",
        "individual",
    ),
    (
        "format on a goal",
        {"key": "c", "metric": "deals", "target": 3, "format": "race"},
        "challenges[0].format",
        "only a competition",
    ),
    (
        "format on a quest",
        {"key": "c", "kind": "quest", **STEPS, "format": "duel"},
        "challenges[0].format",
        "only a competition",
    ),
    (
        "entrants on a goal",
        {"key": "c", "metric": "deals", "target": 3, "entrants": ["a"]},
        "challenges[0].entrants",
        "only a competition",
    ),
    (
        "bad CEL in eligible",
        {"key": "c", "metric": "deals", "target": 3, "eligible": "participant.attributes.region =="},
        "challenges[0].eligible",
        "CEL syntax error",
    ),
    (
        "bad CEL in a competition's eligible",
        {**RANKING, "eligible": "participant.attributes.(region"},
        "challenges[0].eligible",
        "CEL syntax error",
    ),
]


@pytest.mark.parametrize(
    ("challenge", "path", "message"),
    [pytest.param(c, p, m, id=name) for name, c, p, m in INVALID_CHALLENGES],
)
def test_invalid_challenge_shapes_are_reported_with_their_path(
    challenge: dict[str, Any], path: str, message: str
) -> None:
    document = deepcopy(BASE) | {"challenges": [challenge]}
    with pytest.raises(Invalid) as caught:
        validate_document(document)
    errors = {(e.path, e.message) for e in caught.value.errors}
    assert any(p == path and message in m for p, m in errors), errors


VALID_CHALLENGES: list[tuple[str, dict[str, Any]]] = [
    ("race", {**RANKING, "format": "race", "target": 3}),
    (
        "weekly race",
        {**{k: v for k, v in RANKING.items() if k not in OCT}, "format": "race", "target": 3, "every": "week"},
    ),
    ("duel", {**RANKING, "format": "duel", "entrants": ["a", "b"]}),
    ("team duel", {**RANKING, "format": "duel", "mode": "team", "teams": ["east", "west"]}),
    ("entrants", {**RANKING, "entrants": ["a", "b", "c"]}),
    ("eligible ranking", {**RANKING, "eligible": 'participant.attributes.region == "east"'}),
    ("eligible goal", {"key": "c", "metric": "deals", "target": 3, "eligible": '"vip" in participant.teams'}),
    ("quest", {"key": "c", "kind": "quest", **STEPS, "reward": {"coins": 5}, "every": "week"}),
    ("individual ranking in teams", {**RANKING, "teams": ["east"]}),
]


@pytest.mark.parametrize("challenge", [pytest.param(c, id=name) for name, c in VALID_CHALLENGES])
def test_valid_challenge_shapes_are_accepted(challenge: dict[str, Any]) -> None:
    doc = validate_document(deepcopy(BASE) | {"challenges": [challenge]})
    assert doc.challenges[0].key == "c"


def test_put_program_lists_every_challenge_error_with_its_path(client: TestClient, admin: dict[str, str]) -> None:
    document = deepcopy(BASE) | {
        "challenges": [
            {**RANKING, "key": "r", "format": "race"},
            {**RANKING, "key": "d", "format": "duel", "entrants": ["a"]},
            {"key": "g", "metric": "deals", "target": 2, "eligible": "participant.attributes.region =="},
        ]
    }
    response = client.put("/api/v1/programs/checks", json=document, headers=admin)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    paths = {e["path"]: e["message"] for e in response.json()["errors"]}
    assert "challenges[0].target" in paths and "challenges[1].entrants" in paths
    assert paths["challenges[2].eligible"].startswith("CEL syntax error")
    assert client.get("/api/v1/programs/checks", headers=admin).status_code == 404  # nothing applied


# --------------------------------------------------------------------------- launching a draft

A = "/api/v1/programs/acme-sales"
TRIAL = "  - {key: trial, name: Trial, metric: deals_won, target: 2, reward: {coins: 50}, draft: true}\n"
WEEKLY_TRIAL = "  - {key: weekly-trial, metric: deals_won, target: 2, every: week, reward: {coins: 20}, draft: true}\n"
DRAFTS = with_challenges(ACME_TEXT, TRIAL + WEEKLY_TRIAL)


@pytest.fixture
def drafted(client: TestClient, admin: dict[str, str]) -> TestClient:
    response = client.put(A, content=DRAFTS, headers={**admin, "Content-Type": "application/yaml"})
    assert response.status_code == 201, response.text
    return client


def coins_for(client: TestClient, headers: dict[str, str], who: str, challenge: str) -> list[tuple[str, int, str]]:
    response = client.get(f"{A}/participants/{who}/ledger", headers=headers)
    assert response.status_code == 200, response.text
    return sorted(
        (e["kind"], e["amount"], e["explain"])
        for e in response.json()["entries"]
        if e["currency"] == "coins" and e["kind"] in ("challenge", "reversal") and challenge in e["explain"]
    )


def post_deals(client: TestClient, headers: dict[str, str], *events: dict[str, Any]) -> None:
    response = client.post(f"{A}/events", json={"events": list(events)}, headers=headers)
    assert response.status_code == 200, response.text
    assert [r["status"] for r in response.json()["results"]] == ["accepted"] * len(events), response.text


def test_launching_a_draft_pays_its_completions_and_takes_it_live(drafted: TestClient, admin: dict[str, str]) -> None:
    reader = read_key(drafted, admin, "acme-sales")
    post_deals(drafted, admin, deal("a1", "ann", "11-02"), deal("a2", "ann", "11-03"), deal("b1", "bob", "11-03"))
    assert "trial" not in by_key(drafted.get(f"{A}/challenges", headers=reader).json()["challenges"])
    assert by_key(drafted.get(f"{A}/challenges", headers=admin).json()["challenges"])["trial"]["draft"] is True
    assert coins_for(drafted, admin, "ann", "Trial") == []  # reached in draft: nothing paid

    denied = drafted.post(f"{A}/challenges/trial/launch", headers=reader)
    assert denied.status_code == 403, denied.text
    response = drafted.post(f"{A}/challenges/trial/launch", headers=admin)
    assert response.status_code == 200, response.text
    assert response.json() == {"program": "acme-sales", "version": 2, "challenge": "trial", "paid": 1}
    shown = drafted.get(A, headers=admin).json()
    assert shown["version"] == 2
    document = shown["document"]
    trial = next(c for c in document["challenges"] if c["key"] == "trial")
    assert not trial.get("draft", False)
    assert "weekly-trial" in {c["key"] for c in document["challenges"] if c.get("draft")}
    entries = coins_for(drafted, admin, "ann", "Trial")
    assert [(kind, amount) for kind, amount, _ in entries] == [("challenge", 50)]
    assert "paid at launch" in entries[0][2]
    assert coins_for(drafted, admin, "bob", "Trial") == []  # one deal: not reached
    assert "trial" in by_key(drafted.get(f"{A}/challenges", headers=reader).json()["challenges"])

    again = drafted.post(f"{A}/challenges/trial/launch", headers=admin)
    assert again.status_code == 409, again.text
    assert again.headers["content-type"].startswith("application/problem+json")
    assert again.json()["status"] == 409
    missing = drafted.post(f"{A}/challenges/no-such-thing/launch", headers=admin)
    assert missing.status_code == 404, missing.text
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert drafted.get(A, headers=admin).json()["version"] == 2  # neither made a version

    post_deals(drafted, admin, deal("b2", "bob", "11-04"))  # live now: paid the moment it is reached
    assert [(kind, amount) for kind, amount, _ in coins_for(drafted, admin, "bob", "Trial")] == [("challenge", 50)]
    assert [(kind, amount) for kind, amount, _ in coins_for(drafted, admin, "ann", "Trial")] == [("challenge", 50)]


def ny_week(moment: dt.datetime) -> str:
    year, week, _ = moment.astimezone(NEW_YORK).isocalendar()
    return f"{year}-W{week:02d}"


@pytest.fixture
def same_week() -> Iterator[dt.datetime]:
    """Now; skips the test if a New York week boundary passed while it ran."""
    start = dt.datetime.now(UTC)
    yield start
    if ny_week(dt.datetime.now(UTC)) != ny_week(start):
        pytest.skip("a New York week boundary passed during the test")


def test_launch_pays_completions_of_the_current_period_only(
    drafted: TestClient, admin: dict[str, str], same_week: dt.datetime
) -> None:
    old = (same_week - dt.timedelta(days=14)).isoformat()
    post_deals(
        drafted,
        admin,
        deal("old-1", "ann", old),
        deal("old-2", "ann", old),  # ann reached it two weeks ago
        event("new-1", participant="bob", data={"amount": 1000}, occurred_at=same_week.isoformat()),
        event("new-2", participant="bob", data={"amount": 1000}, occurred_at=same_week.isoformat()),
    )
    response = drafted.post(f"{A}/challenges/weekly-trial/launch", headers=admin)
    assert response.status_code == 200, response.text
    assert response.json()["paid"] == 1
    assert [(k, a) for k, a, _ in coins_for(drafted, admin, "bob", "weekly-trial")] == [("challenge", 20)]
    assert coins_for(drafted, admin, "ann", "weekly-trial") == []  # an ended period was not open then


def test_a_launch_payment_stands_like_a_prize_after_a_reversal_and_replay_agrees(
    drafted: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    post_deals(drafted, admin, deal("a1", "ann", "11-02"), deal("a2", "ann", "11-03"))
    assert drafted.post(f"{A}/challenges/trial/launch", headers=admin).status_code == 200
    assert replay(runtime, "acme-sales").mismatches == []
    post_deals(drafted, admin, event("undo", "deal.reopened", participant="ann", reverses="a2", data={}))
    # documented policy (challenges/launch.py): paid outside scoring, like a prize, so replay can reproduce it
    assert [(k, a) for k, a, _ in coins_for(drafted, admin, "ann", "Trial")] == [("challenge", 50)]
    assert replay(runtime, "acme-sales").mismatches == []  # replay gives what live processing gave


def test_cli_launch(runtime: Runtime, db_url: str) -> None:
    set_up(runtime, DRAFTS, {})
    won(runtime, deal("a1", "ann", "11-02"), deal("a2", "ann", "11-03"), program="acme-sales")
    runner = CliRunner()
    result = runner.invoke(app, ["launch", "acme-sales", "trial", "--database", db_url])
    assert result.exit_code == 0, result.output
    assert "launched as version 2" in result.output and "1 completions paid" in result.output
    with runtime.db.read() as connection:
        rows = connection.execute(
            select(t.ledger_entries.c.kind, t.ledger_entries.c.amount, t.ledger_entries.c.explain).where(
                t.ledger_entries.c.idempotency_key.like("launch:trial:%")
            )
        ).all()
        record = programs.find(connection, "acme-sales")
        document = programs.document_of(connection, record)
    assert [(r[0], r[1]) for r in rows] == [("challenge", 50)] and "paid at launch" in rows[0][2]
    assert record.version == 2
    assert not next(c for c in document["challenges"] if c["key"] == "trial").get("draft", False)
    twice = runner.invoke(app, ["launch", "acme-sales", "trial", "--database", db_url])
    assert twice.exit_code != 0
    unknown = runner.invoke(app, ["launch", "acme-sales", "nope", "--database", db_url])
    assert unknown.exit_code != 0
