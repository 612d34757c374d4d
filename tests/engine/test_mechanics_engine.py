"""Game mechanics in the pure engine: levels, badges, challenges and streaks of acme-sales (docs/program-document.md).

No database: a :class:`World` runs events in order in memory, as live ingestion and replay
do. The program is examples/acme-sales.yaml (time zone America/New_York):

- levels on lifetime XP earned: Rookie 0, Closer 1,000, Legend 10,000; a reversal can lower one;
- top-closer: Bronze at 5 deals won in all, Gold at 50, once each;
- hot-week: 3 deals won in an ISO week (New York time), again each week;
- five-a-week: 100 coins the moment the 5th deal of an ISO week is won, once per week;
- daily-caller: a streak of days with ≥ 1 call (the ``calls`` metric counts every
  ``activity.logged`` of kind ``call``, whatever its duration), one missed day forgiven.

Badges follow the facts: a reversal that takes a held grade's criteria back below the
threshold revokes it, and earning it again grants it again. Streaks tolerate ``grace``
missed periods (not counted), late events repair them, and reversals do not break them.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from levelup.engine import streaks
from levelup.engine.model import BadgeChange, Completion, Effects, Event, LevelChange, ParticipantState
from levelup.engine.world import World
from levelup.errors import Invalid
from levelup.programs.compiled import CompiledProgram
from levelup.programs.validation import load_document
from tests.conftest import EXAMPLES

ACME = CompiledProgram(load_document((EXAMPLES / "acme-sales.yaml").read_text()), 1)
NEW_YORK = ZoneInfo("America/New_York")
UTC = dt.UTC
GRACE = 1  # daily-caller: one missed day forgiven
PROPERTY_SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ny(day: dt.date, hour: int = 12, minute: int = 0) -> dt.datetime:
    """A wall-clock time in New York on ``day``, as an instant in UTC."""
    return dt.datetime.combine(day, dt.time(hour, minute), NEW_YORK).astimezone(UTC)


def iso_week(day: dt.date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


class Game:
    """One acme-sales world and a few ways to feed it events; ids are made up in order."""

    def __init__(self) -> None:
        self.world = World(lambda _version: ACME)
        self._ids = itertools.count(1)

    def _id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    def process(self, event: Event) -> Effects:
        return self.world.process(event, ACME)

    def deal(self, at: dt.datetime, participant: str = "ana", amount: float = 12_000) -> Effects:
        return self.process(Event(self._id("won"), "deal.won", participant, at, {"amount": amount}))

    def call(self, at: dt.datetime, participant: str = "ana", duration: float = 120, kind: str = "call") -> Effects:
        return self.process(
            Event(self._id("call"), "activity.logged", participant, at, {"kind": kind, "duration_s": duration})
        )

    def reverse(self, target: Effects, at: dt.datetime, kind: str = "deal.reopened") -> Effects:
        original = target.event
        return self.process(Event(self._id("undo"), kind, original.participant, at, {}, reverses=original.id))

    def state(self, participant: str = "ana") -> ParticipantState:
        return self.world.state(participant)


def badge_changes(effects: Effects, badge: str) -> list[BadgeChange]:
    return [b for b in effects.badges if b.badge == badge]


def challenge_entries(effects: Effects) -> list[tuple[str, int]]:
    return [(e.currency, e.amount) for e in effects.ledger if e.kind == "challenge"]


def runs_of(days: Iterable[dt.date], grace: int = GRACE) -> list[list[dt.date]]:
    """Qualifying days cut into runs: two days stay in one run when at most ``grace`` days lie between them."""
    runs: list[list[dt.date]] = []
    for day in sorted(set(days)):
        if runs and (day - runs[-1][-1]).days <= grace + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return runs


def longest_run(days: Iterable[dt.date], grace: int = GRACE) -> int:
    return max((len(run) for run in runs_of(days, grace)), default=0)


def run_length_holding(day: dt.date, days: Iterable[dt.date], grace: int = GRACE) -> int:
    return next(len(run) for run in runs_of(days, grace) if day in run)


# --------------------------------------------------------------------------- levels


def test_level_up_at_exactly_1000_and_10000_xp_and_down_on_reversal() -> None:
    game = Game()
    start = dt.date(2026, 11, 2)
    first = game.deal(ny(start), amount=89_500)  # 100 + 895 = 995 XP
    assert [(e.currency, e.amount) for e in first.ledger if e.kind == "rule"] == [("xp", 995), ("coins", 89)]
    assert first.level is None  # still a Rookie
    short = game.call(ny(start, 13), duration=59)  # a call under a minute earns no XP
    assert short.ledger == [] and short.level is None
    call = game.call(ny(start, 14), duration=60)  # 5 XP: exactly 1,000
    assert call.level == LevelChange("Rookie", "Closer", True)
    assert game.state().position("xp").earned == 1_000
    big = game.deal(ny(start + dt.timedelta(days=1)), amount=890_000)  # 100 + 8,900 = 9,000 XP: exactly 10,000
    assert big.level == LevelChange("Closer", "Legend", True)
    assert game.deal(ny(start + dt.timedelta(days=2)), amount=1_000).level is None  # 10,110 XP: still a Legend

    down = game.reverse(big, ny(start + dt.timedelta(days=3)))  # back to 1,110 XP
    assert down.level == LevelChange("Legend", "Closer", False)
    assert game.state().position("xp").earned == 1_110
    assert game.reverse(call, ny(start + dt.timedelta(days=3), 13), kind="activity.deleted").level is None  # 1,105
    rookie = game.reverse(first, ny(start + dt.timedelta(days=3), 14))  # 110 XP
    assert rookie.level == LevelChange("Closer", "Rookie", False)


def test_one_event_can_climb_two_levels() -> None:
    game = Game()
    effects = game.deal(ny(dt.date(2026, 11, 2)), amount=1_000_000)  # 100 + 10,000 XP
    assert effects.level == LevelChange("Rookie", "Legend", True)


def test_coins_from_a_challenge_do_not_count_toward_the_xp_level() -> None:
    game = Game()
    monday = dt.date(2026, 11, 16)
    for i in range(5):  # 5 × 100 XP, and 100 coins for five-a-week
        game.deal(ny(monday + dt.timedelta(days=i)), amount=0.5)
    assert game.state().position("xp").earned == 500
    assert game.state().position("coins").earned == 100
    assert game.deal(ny(monday + dt.timedelta(days=5)), amount=50_000).level == LevelChange("Rookie", "Closer", True)


# --------------------------------------------------------------------------- badges


def test_top_closer_bronze_at_the_fifth_deal_and_gold_at_the_fiftieth_once_each() -> None:
    game = Game()
    start = dt.date(2025, 1, 6)
    changes: list[tuple[int, BadgeChange]] = []
    for i in range(60):  # one deal every other day: spans several weeks, months and a year end
        effects = game.deal(ny(start + dt.timedelta(days=2 * i), 15))
        changes += [(i + 1, b) for b in badge_changes(effects, "top-closer")]
    assert changes == [
        (5, BadgeChange("top-closer", "Bronze", "all", True)),
        (50, BadgeChange("top-closer", "Gold", "all", True)),
    ]
    assert {b for b in game.state().badges if b[0] == "top-closer"} == {
        ("top-closer", "Bronze", "all"),
        ("top-closer", "Gold", "all"),
    }


def test_top_closer_counts_each_participant_apart() -> None:
    game = Game()
    day = dt.date(2026, 11, 2)
    for i in range(4):
        assert badge_changes(game.deal(ny(day, 9 + i), participant="ana"), "top-closer") == []
        assert badge_changes(game.deal(ny(day, 9 + i), participant="bo"), "top-closer") == []
    assert badge_changes(game.deal(ny(day, 15), participant="bo"), "top-closer") == [
        BadgeChange("top-closer", "Bronze", "all", True)
    ]
    assert ("top-closer", "Bronze", "all") not in game.state("ana").badges


def test_hot_week_is_cut_in_new_york_time_granted_once_per_week_and_again_next_week() -> None:
    game = Game()
    # ISO week 2026-W47 runs Monday 16 to Sunday 22 November in New York
    assert badge_changes(game.deal(ny(dt.date(2026, 11, 16), 10)), "hot-week") == []
    assert badge_changes(game.deal(ny(dt.date(2026, 11, 18), 10)), "hot-week") == []
    sunday_night = ny(dt.date(2026, 11, 22), 23, 30)
    assert sunday_night == dt.datetime(2026, 11, 23, 4, 30, tzinfo=UTC)  # already Monday in UTC (week 48)
    third = game.deal(sunday_night)
    assert badge_changes(third, "hot-week") == [BadgeChange("hot-week", "Hot", "2026-W47", True)]
    assert badge_changes(game.deal(ny(dt.date(2026, 11, 19), 10)), "hot-week") == []  # once per week
    # 2026-W48: Monday 00:30 in New York is the first deal of the new week
    assert badge_changes(game.deal(ny(dt.date(2026, 11, 23), 0, 30)), "hot-week") == []
    assert badge_changes(game.deal(ny(dt.date(2026, 11, 24), 10)), "hot-week") == []  # only 2 in W48
    assert badge_changes(game.deal(ny(dt.date(2026, 11, 25), 10)), "hot-week") == [
        BadgeChange("hot-week", "Hot", "2026-W48", True)
    ]
    assert badge_changes(game.deal(ny(dt.date(2026, 11, 26), 10)), "hot-week") == []
    assert {b for b in game.state().badges if b[0] == "hot-week"} == {
        ("hot-week", "Hot", "2026-W47"),
        ("hot-week", "Hot", "2026-W48"),
    }


def test_a_reversal_below_a_threshold_revokes_the_badge_and_earning_it_again_grants_it_again() -> None:
    game = Game()
    mondays = [dt.date(2026, 9, 7) + dt.timedelta(weeks=i) for i in range(8)]  # one deal a week: no hot week
    deals = [game.deal(ny(day)) for day in mondays[:5]]
    assert badge_changes(deals[4], "top-closer") == [BadgeChange("top-closer", "Bronze", "all", True)]
    undo = game.reverse(deals[1], ny(mondays[5]))
    assert badge_changes(undo, "top-closer") == [BadgeChange("top-closer", "Bronze", "all", False)]
    assert ("top-closer", "Bronze", "all") not in game.state().badges
    again = game.deal(ny(mondays[6]))
    assert badge_changes(again, "top-closer") == [BadgeChange("top-closer", "Bronze", "all", True)]
    assert ("top-closer", "Bronze", "all") in game.state().badges
    assert badge_changes(game.deal(ny(mondays[7])), "top-closer") == []  # held: not granted twice


def test_a_reversal_that_stays_above_the_threshold_revokes_nothing() -> None:
    game = Game()
    monday = dt.date(2026, 11, 16)
    deals = [game.deal(ny(monday + dt.timedelta(days=i))) for i in range(4)]
    undo = game.reverse(deals[0], ny(monday + dt.timedelta(days=5)))  # 3 deals left this week: still hot
    assert undo.badges == []
    assert ("hot-week", "Hot", "2026-W47") in game.state().badges


def test_a_later_reversal_revokes_the_hot_week_of_the_reversed_deal_and_a_late_deal_restores_it() -> None:
    game = Game()
    monday = dt.date(2026, 3, 2)  # 2026-W10
    deals = [game.deal(ny(monday + dt.timedelta(days=i))) for i in range(3)]
    assert badge_changes(deals[2], "hot-week") == [BadgeChange("hot-week", "Hot", "2026-W10", True)]
    undo = game.reverse(deals[0], ny(dt.date(2026, 3, 18)))  # reversed two weeks later (2026-W12)
    assert badge_changes(undo, "hot-week") == [BadgeChange("hot-week", "Hot", "2026-W10", False)]
    assert ("hot-week", "Hot", "2026-W10") not in game.state().badges
    late = game.deal(ny(monday + dt.timedelta(days=4)))  # a late deal back in 2026-W10
    assert badge_changes(late, "hot-week") == [BadgeChange("hot-week", "Hot", "2026-W10", True)]


# --------------------------------------------------------------------------- five-a-week


def test_five_a_week_pays_100_coins_once_per_iso_week_at_the_fifth_deal_and_again_next_week() -> None:
    game = Game()
    w47 = [ny(dt.date(2026, 11, 16 + i), 10) for i in range(4)] + [ny(dt.date(2026, 11, 22), 23, 30)]
    w47 += [ny(dt.date(2026, 11, 22), 8), ny(dt.date(2026, 11, 20), 9)]  # the 6th and 7th deals of the week
    paid: list[tuple[int, list[tuple[str, int]], list[Completion]]] = []
    for i, at in enumerate(w47):
        effects = game.deal(at)
        if challenge_entries(effects) or effects.completions:
            paid.append((i + 1, challenge_entries(effects), effects.completions))
    # the 5th deal is Sunday 23:30 in New York, Monday in UTC: it still counts in 2026-W47
    assert paid == [(5, [("coins", 100)], [Completion("five-a-week", "2026-W47", 5.0, 5.0, True, (("coins", 100),))])]

    w48 = [ny(dt.date(2026, 11, 23) + dt.timedelta(days=i), 11) for i in range(6)]
    next_week: list[tuple[int, list[tuple[str, int]], list[str]]] = []
    for i, at in enumerate(w48):
        effects = game.deal(at)
        if challenge_entries(effects):
            next_week.append((i + 1, challenge_entries(effects), [c.period for c in effects.completions]))
    assert next_week == [(5, [("coins", 100)], ["2026-W48"])]
    coins = game.state().position("coins")
    assert coins.available == 13 * 12 + 2 * 100  # 12 coins a deal of 12,000, and two weekly rewards
    assert set(game.state().completions) == {("five-a-week", "2026-W47"), ("five-a-week", "2026-W48")}


def test_five_a_week_counts_each_participant_apart() -> None:
    game = Game()
    monday = dt.date(2026, 11, 16)
    for i in range(4):
        assert challenge_entries(game.deal(ny(monday + dt.timedelta(days=i)), participant="ana")) == []
        assert challenge_entries(game.deal(ny(monday + dt.timedelta(days=i)), participant="bo")) == []
    fifth = game.deal(ny(monday + dt.timedelta(days=4)), participant="bo")
    assert challenge_entries(fifth) == [("coins", 100)]
    assert fifth.event.participant == "bo"
    assert game.state("ana").completions == {}


def test_five_a_week_reward_entry_explains_itself() -> None:
    game = Game()
    monday = dt.date(2026, 11, 16)
    effects = [game.deal(ny(monday + dt.timedelta(days=i))) for i in range(5)][-1]
    (entry,) = [e for e in effects.ledger if e.kind == "challenge"]
    assert entry.currency == "coins" and entry.amount == 100
    assert "five-a-week" in entry.explain and "2026-W47" in entry.explain
    assert entry.at == effects.event.occurred_at


def test_a_reversal_below_the_target_takes_the_weekly_reward_back_and_the_fifth_deal_pays_again() -> None:
    """docs/architecture.md: a reversal that takes a goal back below its target takes its reward back."""
    game = Game()
    monday = dt.date(2026, 11, 16)
    deals = [game.deal(ny(monday + dt.timedelta(days=i))) for i in range(6)]
    assert challenge_entries(deals[4]) == [("coins", 100)]
    assert challenge_entries(game.reverse(deals[0], ny(monday + dt.timedelta(days=6)))) == []  # 5 left: kept
    undo = game.reverse(deals[1], ny(monday + dt.timedelta(days=7)))  # reversed the next week: 4 left in W47
    taken = [(e.currency, e.amount, e.kind) for e in undo.ledger if e.rule is None]
    assert taken == [("coins", -100, "reversal")]
    assert [(c.challenge, c.period, c.completed) for c in undo.completions] == [("five-a-week", "2026-W47", False)]
    assert ("five-a-week", "2026-W47") not in game.state().completions
    late = game.deal(ny(monday + dt.timedelta(days=3), 18))  # a late deal: the 5th of 2026-W47 again
    assert challenge_entries(late) == [("coins", 100)]
    assert game.state().position("coins").available == 5 * 12 + 100


# --------------------------------------------------------------------------- daily-caller streak


def streak_lengths(effects: Effects) -> list[tuple[int, int]]:
    return [(s.length, s.best) for s in effects.streaks if s.streak == "daily-caller"]


def best(game: Game, participant: str = "ana") -> int:
    return game.state(participant).streaks.get("daily-caller", ([], 0))[1]


def test_calls_of_any_length_count_for_the_streak_but_other_activities_do_not() -> None:
    game = Game()
    day = dt.date(2026, 11, 2)
    short = game.call(ny(day), duration=10)
    assert short.ledger == []  # no XP under a minute…
    assert streak_lengths(short) == [(1, 1)]  # …but it is a call
    assert streak_lengths(game.call(ny(day + dt.timedelta(days=1)), kind="email")) == []
    assert streak_lengths(game.deal(ny(day + dt.timedelta(days=1)))) == []
    assert streak_lengths(game.call(ny(day + dt.timedelta(days=2)), duration=0)) == [(2, 2)]  # the email day forgiven


def test_consecutive_days_extend_the_streak_and_a_day_counts_once() -> None:
    game = Game()
    day = dt.date(2026, 11, 2)
    assert streak_lengths(game.call(ny(day, 9))) == [(1, 1)]
    assert streak_lengths(game.call(ny(day, 17))) == []  # a second call the same day changes nothing
    assert streak_lengths(game.call(ny(day + dt.timedelta(days=1)))) == [(2, 2)]
    # 03:00 UTC on the 5th is 22:00 on the 4th in New York: the third day, not the fourth
    assert streak_lengths(game.call(dt.datetime(2026, 11, 5, 3, 0, tzinfo=UTC))) == [(3, 3)]
    assert streak_lengths(game.call(ny(day + dt.timedelta(days=2), 8))) == []  # the 4th again
    assert best(game) == 3


def test_one_missed_day_is_forgiven_and_not_counted_two_break_the_streak() -> None:
    game = Game()
    day = dt.date(2026, 11, 2)
    game.call(ny(day))
    game.call(ny(day + dt.timedelta(days=1)))
    assert streak_lengths(game.call(ny(day + dt.timedelta(days=3)))) == [(3, 3)]  # the 3rd missed: forgiven
    assert streak_lengths(game.call(ny(day + dt.timedelta(days=6)))) == [(1, 3)]  # 6th and 7th missed: broken
    assert streak_lengths(game.call(ny(day + dt.timedelta(days=7)))) == [(2, 3)]
    periods, best_days = game.state().streaks["daily-caller"]
    assert best_days == 3
    assert [run[2] for run in streaks.runs(periods, GRACE)] == [3, 2]


def test_a_late_call_filling_a_gap_merges_the_runs_and_updates_best() -> None:
    game = Game()
    day = dt.date(2026, 11, 2)
    for offset in (0, 1, 5, 6, 7):  # runs 2–3 Nov and 7–9 Nov, three days apart
        game.call(ny(day + dt.timedelta(days=offset)))
    periods, best_days = game.state().streaks["daily-caller"]
    assert [run[2] for run in streaks.runs(periods, GRACE)] == [2, 3] and best_days == 3
    late = game.call(ny(day + dt.timedelta(days=3)))  # the 5th: the 4th and 6th are single missed days
    assert streak_lengths(late) == [(6, 6)]
    periods, best_days = game.state().streaks["daily-caller"]
    assert [run[2] for run in streaks.runs(periods, GRACE)] == [6] and best_days == 6


def test_a_reversed_call_takes_its_day_out_of_the_streak() -> None:
    game = Game()
    day = dt.date(2026, 11, 2)
    calls = [game.call(ny(day + dt.timedelta(days=i))) for i in range(3)]
    undo = game.reverse(calls[1], ny(day + dt.timedelta(days=3), 8), kind="activity.deleted")
    # 3 Nov has no call left: it leaves the streak; with grace 1 the run 2–4 Nov holds, counting 2 days
    assert streak_lengths(undo) == [(0, 2)]
    periods, best_days = game.state().streaks["daily-caller"]
    assert [run[2] for run in streaks.runs(periods, GRACE)] == [2] and best_days == 2
    assert streak_lengths(game.call(ny(day + dt.timedelta(days=3)))) == [(3, 3)]


def test_a_call_after_reversing_a_days_only_call_does_not_count_that_day_twice() -> None:
    game = Game()
    day = dt.date(2026, 11, 2)
    calls = [game.call(ny(day + dt.timedelta(days=i))) for i in range(3)]  # three days: best 3
    game.reverse(calls[1], ny(day + dt.timedelta(days=1), 18), kind="activity.deleted")  # 3 Nov leaves
    game.call(ny(day + dt.timedelta(days=1), 19))  # 3 Nov qualifies again: it is still one day
    periods, best_days = game.state().streaks["daily-caller"]
    assert best_days == 3
    assert [run[2] for run in streaks.runs(periods, GRACE)] == [3]


# --------------------------------------------------------------------------- properties over random streams

START = dt.date(2026, 2, 20)  # 60 days from here span the New York spring-forward (8 March) and a month and quarter end
DAYS = 60  # well within the 1,000 periods a streak remembers (MAX_PERIODS)
PEOPLE = ("ana", "bo")


@dataclass(frozen=True)
class Fact:
    """What a generated event means, in plain terms: its kind, participant and New York day."""

    kind: str  # deal | call | email
    participant: str
    day: dt.date


@st.composite
def facts(draw: st.DrawFn, *, kinds: Sequence[str], max_size: int) -> list[tuple[Fact, Event]]:
    """Events in any order over 60 New York days; their instants are written in UTC or in New York time."""
    out: list[tuple[Fact, Event]] = []
    for i in range(draw(st.integers(0, max_size))):
        kind = draw(st.sampled_from(kinds))
        participant = draw(st.sampled_from(PEOPLE))
        day = START + dt.timedelta(days=draw(st.integers(0, DAYS - 1)))
        minute = draw(st.integers(0, 24 * 60 - 1))
        at = dt.datetime.combine(day, dt.time(minute // 60, minute % 60), NEW_YORK)
        if draw(st.booleans()):
            at = at.astimezone(UTC)
        if kind == "deal":
            event = Event(f"e{i}", "deal.won", participant, at, {"amount": draw(st.integers(0, 50_000))})
        else:
            data = {"kind": "call" if kind == "call" else "email", "duration_s": draw(st.integers(0, 600))}
            event = Event(f"e{i}", "activity.logged", participant, at, data)
        out.append((Fact(kind, participant, day), event))
    return out


@st.composite
def with_reversals(draw: st.DrawFn, *, kinds: Sequence[str], max_size: int) -> list[tuple[Fact | None, Event]]:
    """Like :func:`facts`, with reversals (None as fact) of earlier events, each reversed at most once."""
    stream: list[tuple[Fact | None, Event]] = list(draw(facts(kinds=kinds, max_size=max_size)))
    out: list[tuple[Fact | None, Event]] = []
    reversed_ids: set[str] = set()
    for fact, event in stream:
        out.append((fact, event))
        candidates = [e for f, e in out if f is not None and e.id not in reversed_ids]
        if candidates and draw(st.integers(0, 3)) == 0:
            target = draw(st.sampled_from(candidates))
            reversed_ids.add(target.id)
            day = START + dt.timedelta(days=draw(st.integers(0, DAYS - 1)))
            kind = "deal.reopened" if target.type == "deal.won" else "activity.deleted"
            at = ny(day, draw(st.integers(0, 23)))
            out.append((None, Event(f"undo-{target.id}", kind, target.participant, at, {}, reverses=target.id)))
    return out


@given(facts(kinds=("deal", "deal", "deal", "call"), max_size=90))
@PROPERTY_SETTINGS
def test_five_a_week_pays_once_per_participant_and_week_with_five_deals(stream: list[tuple[Fact, Event]]) -> None:
    game = Game()
    seen: Counter[tuple[str, str]] = Counter()
    fifth: set[tuple[str, str]] = set()
    paid: Counter[tuple[str, str]] = Counter()
    for fact, event in stream:
        effects = game.process(event)
        pair = (fact.participant, iso_week(fact.day))
        if fact.kind == "deal":
            seen[pair] += 1
            if seen[pair] == 5:
                fifth.add(pair)
        rewards = [e for e in effects.ledger if e.kind == "challenge"]
        for entry in rewards:
            assert (entry.currency, entry.amount) == ("coins", 100)
            paid[pair] += 1
            assert seen[pair] == 5 and fact.kind == "deal", "paid at the moment of the fifth deal of the week"
        assert [(c.challenge, c.period) for c in effects.completions] == [("five-a-week", pair[1])] * len(rewards)
    expected = {pair for pair, n in seen.items() if n >= 5}
    assert set(paid) == expected == fifth
    assert all(n == 1 for n in paid.values())
    for person in PEOPLE:
        assert set(game.state(person).completions) == {("five-a-week", w) for p, w in expected if p == person}


@given(with_reversals(kinds=("deal", "deal", "deal", "call"), max_size=80))
@PROPERTY_SETTINGS
def test_five_a_week_nets_100_coins_per_week_with_five_standing_deals(
    stream: list[tuple[Fact | None, Event]],
) -> None:
    game = Game()
    week_of: dict[str, tuple[str, str]] = {}
    net: Counter[tuple[str, str]] = Counter()
    for fact, event in stream:
        if fact is not None:
            week_of[event.id] = (fact.participant, iso_week(fact.day))
        effects = game.process(event)
        for entry in effects.ledger:
            if entry.rule is None:  # a goal's reward, or its reward taken back
                assert entry.currency == "coins" and abs(entry.amount) == 100
                (change,) = [c for c in effects.completions if c.completed == (entry.amount > 0)]
                net[(event.participant, change.period)] += entry.amount
    reversed_ids = {e.reverses for _, e in stream if e.reverses}
    standing = Counter(
        week_of[e.id] for f, e in stream if f is not None and f.kind == "deal" and e.id not in reversed_ids
    )
    assert {pair for pair, n in net.items() if n} == {pair for pair, n in standing.items() if n >= 5}
    assert all(n in (0, 100) for n in net.values())


def expected_badges(deals: Iterable[Fact]) -> set[tuple[str, str, str, str]]:
    """(participant, badge, grade, period) the documented rules say are held for these standing deals."""
    total: Counter[str] = Counter()
    weekly: Counter[tuple[str, str]] = Counter()
    for fact in deals:
        total[fact.participant] += 1
        weekly[(fact.participant, iso_week(fact.day))] += 1
    held = {(p, "hot-week", "Hot", week) for (p, week), n in weekly.items() if n >= 3}
    held |= {(p, "top-closer", "Bronze", "all") for p, n in total.items() if n >= 5}
    held |= {(p, "top-closer", "Gold", "all") for p, n in total.items() if n >= 50}
    return held


@given(facts(kinds=("deal", "deal", "deal", "call", "email"), max_size=120))
@PROPERTY_SETTINGS
def test_badges_are_granted_once_and_as_the_criteria_say(stream: list[tuple[Fact, Event]]) -> None:
    game = Game()
    granted: Counter[tuple[str, str, str, str]] = Counter()
    for _fact, event in stream:
        for change in game.process(event).badges:
            assert change.granted, "no reversal, no revocation"
            granted[(event.participant, change.badge, change.grade, change.period)] += 1
    assert all(n == 1 for n in granted.values()), "a badge grade is granted at most once per period"
    assert set(granted) == expected_badges(f for f, _ in stream if f.kind == "deal")
    held = {(p, *badge) for p in PEOPLE for badge in game.state(p).badges}
    assert held == set(granted)


@given(with_reversals(kinds=("deal", "deal", "deal", "call"), max_size=80))
@PROPERTY_SETTINGS
def test_badges_follow_reversals_grant_and_revoke_alternate(stream: list[tuple[Fact | None, Event]]) -> None:
    game = Game()
    history: dict[tuple[str, str, str, str], list[bool]] = defaultdict(list)
    for _fact, event in stream:
        for change in game.process(event).badges:
            history[(event.participant, change.badge, change.grade, change.period)].append(change.granted)
    for key, changes in history.items():
        assert changes == [i % 2 == 0 for i in range(len(changes))], f"{key}: granted and revoked must alternate"
    reversed_ids = {e.reverses for _, e in stream if e.reverses}
    standing = [f for f, e in stream if f is not None and f.kind == "deal" and e.id not in reversed_ids]
    held_now = {key for key, changes in history.items() if changes[-1]}
    assert held_now == expected_badges(standing)
    assert {(p, *badge) for p in PEOPLE for badge in game.state(p).badges} == held_now


@given(facts(kinds=("call", "call", "call", "email", "deal"), max_size=90))
@PROPERTY_SETTINGS
def test_streak_best_is_the_longest_run_with_grace_over_days_with_a_call(stream: list[tuple[Fact, Event]]) -> None:
    game = Game()
    days: dict[str, set[dt.date]] = defaultdict(set)
    for fact, event in stream:
        effects = game.process(event)
        first_call_of_day = fact.kind == "call" and fact.day not in days[fact.participant]
        if fact.kind == "call":
            days[fact.participant].add(fact.day)
        if first_call_of_day:
            length = run_length_holding(fact.day, days[fact.participant])
            assert streak_lengths(effects) == [(length, longest_run(days[fact.participant]))]
        else:
            assert effects.streaks == []
    for person in PEOPLE:
        assert best(game, person) == longest_run(days[person])
        periods, _ = game.state(person).streaks.get("daily-caller", ([], 0))
        expected = [(run[0].toordinal(), run[-1].toordinal(), len(run)) for run in runs_of(days[person])]
        assert list(streaks.runs(periods, GRACE)) == expected


@given(with_reversals(kinds=("call", "call", "call", "deal"), max_size=80))
@PROPERTY_SETTINGS
def test_streaks_follow_the_calls_left_after_reversals(stream: list[tuple[Fact | None, Event]]) -> None:
    game = Game()
    calls: dict[str, tuple[str, dt.date]] = {}  # live call event id → (participant, New York day)
    for fact, event in stream:
        game.process(event)
        if fact is not None and fact.kind == "call":
            calls[event.id] = (fact.participant, fact.day)
        elif fact is None and event.reverses is not None:
            calls.pop(event.reverses, None)
    days: dict[str, set[dt.date]] = defaultdict(set)  # days that still have a call
    for participant, day in calls.values():
        days[participant].add(day)
    for person in PEOPLE:
        assert best(game, person) == longest_run(days[person])


def test_a_world_remembers_only_the_events_it_is_told_a_reversal_may_name() -> None:
    """A simulation keeps the events reversed later itself and has its worlds remember none: a reversal of an
    event the world did not remember is unknown to it unless ``find_earlier`` hands it over."""
    at = dt.datetime(2026, 10, 5, 15, tzinfo=UTC)
    deal = Event("won-1", "deal.won", "ana", at, {"amount": 12_000})
    undo = Event("undo-1", "deal.reopened", "ana", at + dt.timedelta(hours=1), reverses="won-1")
    forgetful = World(lambda _version: ACME, remember=())
    forgetful.process(deal, ACME)
    with pytest.raises(Invalid, match="unknown"):
        forgetful.process(undo, ACME)
    told = World(lambda _version: ACME, remember={"won-1"})
    taken = sum(e.amount for e in told.process(deal, ACME).ledger)
    assert sum(e.amount for e in told.process(undo, ACME).ledger) == -taken < 0
