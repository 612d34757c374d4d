"""Properties of the pure engine over random event streams, with examples/acme-sales.yaml.

No database: a :class:`World` runs the events in order in memory, exactly as live
ingestion and replay do. Each property is checked against a plain-Python reading
of the documented rules (docs/program-document.md; ``Reference`` below), written from the program document and not from
the engine, so a change in the engine that drifts from the contract shows here.

Streams mix ``deal.won`` (int or float amounts, huge, negative, zero, missing or
not a number), ``activity.logged`` calls with durations around the 60 s threshold,
``task.completed`` with due/completed times in several UTC offsets, unknown types,
occurrence times in any order around the New York DST changes and calendar
boundaries, and reversals of earlier events (some of them invalid on purpose).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from levelup.engine.model import Effects, Event
from levelup.engine.positions import Position, apply, move
from levelup.engine.world import World
from levelup.errors import Invalid
from levelup.programs.compiled import CompiledProgram
from levelup.programs.validation import load_document
from tests.conftest import EXAMPLES

ACME_TEXT = (EXAMPLES / "acme-sales.yaml").read_text()
NEW_YORK = ZoneInfo("America/New_York")
UTC = dt.UTC
PARTICIPANTS = ("ana", "bo", "cy")
CURRENCIES = ("xp", "coins")
MAX_METRIC_VALUE = 1e15  # a sum metric's value an event (docs/program-document.md, Expressions)
MAX_AWARD = 10**12  # a computed amount beyond this is a failed award (the engine's documented bound)
RULES = ("call-logged", "follow-up-on-time", "deal-won")
CALL_CAP = 20  # acme-sales: call-logged, cap {max: 20, per: day}
EPSILON = 2.0**-52

PROPERTY_SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def acme() -> CompiledProgram:
    """A fresh compiled acme-sales program (version 1), built from the example document."""
    return CompiledProgram(load_document(ACME_TEXT), 1)


ACME = acme()  # compiled programs are immutable and shared read-only, as the runtime's cache shares them


# --------------------------------------------------------------------------- strategies

# Instants around which a New York calendar is easy to get wrong.
ANCHORS = (
    dt.datetime(2026, 3, 8, 7, 0, tzinfo=UTC),  # spring forward: 02:00 EST becomes 03:00 EDT (a 23-hour day)
    dt.datetime(2026, 11, 1, 4, 0, tzinfo=UTC),  # local midnight starting November (and October → November)
    dt.datetime(2026, 11, 1, 6, 0, tzinfo=UTC),  # fall back: 02:00 EDT becomes 01:00 EST (a 25-hour day)
    dt.datetime(2026, 4, 1, 4, 0, tzinfo=UTC),  # Q1 → Q2 in New York
    dt.datetime(2027, 1, 1, 5, 0, tzinfo=UTC),  # new year in New York (still 2026 in the ISO week calendar)
    dt.datetime(2026, 11, 20, 15, 4, 5, tzinfo=UTC),  # an ordinary afternoon
)
DISPLAY_ZONES = (
    UTC,
    NEW_YORK,
    dt.timezone(dt.timedelta(hours=-5)),
    dt.timezone(dt.timedelta(hours=-4)),
    dt.timezone(dt.timedelta(hours=5, minutes=30)),
    dt.timezone(dt.timedelta(hours=14)),
)

instants = st.builds(
    lambda anchor, minutes, seconds, zone: (anchor + dt.timedelta(minutes=minutes, seconds=seconds)).astimezone(zone),
    st.sampled_from(ANCHORS),
    st.one_of(st.integers(-6 * 60, 6 * 60), st.integers(-36 * 60, 36 * 60)),  # minutes: mostly close to the anchor
    st.integers(0, 59),
    st.sampled_from(DISPLAY_ZONES),
)

money = st.one_of(
    st.integers(-20_000, 2_000_000),
    st.integers(-200_000_000, 2_000_000_000).map(lambda cents: cents / 100),
)
huge_or_edge = st.one_of(
    st.integers(-(10**18), 10**18),
    st.floats(-1e15, 1e15, allow_nan=False, allow_infinity=False),
    st.sampled_from(
        [
            0,
            0.0,
            -0.0,
            -1,
            -10_000,  # xp = 0: no award
            -9_999,  # xp = 100 - 99.99 → 0: no award
            -9_900,  # xp = 1
            99.99,
            999,
            1000,  # coins = 1
            999.999,  # coins = 0
            12_000,
            12_000.5,
            10**14 - 10_000,  # xp exactly 10**12: still awarded
            10**14,  # xp = 10**12 + 100: beyond the bound, fails
            10**15,  # coins exactly 10**12
            10**15 + 1000,
            2**53 + 1,  # not a double: becomes 2**53
        ]
    ),
)
amounts = st.one_of(money, huge_or_edge)

deal_data = st.one_of(
    st.builds(lambda amount, deal: {"amount": amount, "deal_id": f"D-{deal}"}, amounts, st.integers(1, 99)),
    st.just({}),  # no amount: counts as a deal, no revenue, no award (a failed expression)
    st.just({"amount": "1200"}),  # not a number: likewise
)

durations = st.one_of(
    st.integers(0, 120),
    st.floats(58.0, 62.0, allow_nan=False),
    st.sampled_from([59, 59.5, 59.999, 60, 60.0, 60.001, 61]),
)
call_data = st.one_of(
    st.builds(
        lambda kind, duration: {"kind": kind, "duration_s": duration}, st.sampled_from(["call", "email"]), durations
    ),
    st.builds(lambda duration: {"kind": "call", "duration_s": duration}, durations),
    st.just({"kind": "call"}),  # a call without a duration: counted as a call, no award
    st.just({"duration_s": 300}),
)


def rfc3339(instant: dt.datetime, zone: dt.tzinfo, zulu: bool) -> str:
    text = instant.astimezone(zone).isoformat()
    return text.replace("+00:00", "Z") if zulu else text


@st.composite
def task_data(draw: st.DrawFn) -> dict[str, Any]:
    due = draw(instants)
    lateness = draw(st.one_of(st.sampled_from([-86_400, -3_600, -1, 0, 1, 3_600, 86_400]), st.integers(-7200, 7200)))
    completed = due + dt.timedelta(seconds=lateness)
    data = {
        "due_at": rfc3339(due, draw(st.sampled_from(DISPLAY_ZONES)), draw(st.booleans())),
        "completed_at": rfc3339(completed, draw(st.sampled_from(DISPLAY_ZONES)), draw(st.booleans())),
    }
    if draw(st.integers(0, 9)) == 0:
        del data[draw(st.sampled_from(["due_at", "completed_at"]))]  # a missing field: the condition is false
    return data


KINDS = {
    "deal.won": deal_data,
    "activity.logged": call_data,
    "task.completed": task_data(),
    "lead.created": st.just({"source": "web"}),  # types no rule or metric listens to
    "deal.lost": st.builds(lambda amount: {"amount": amount}, amounts),
}
REVERSAL_TYPES = ("deal.reopened", "activity.deleted")  # reversals are facts of types no rule listens to


@dataclass(frozen=True)
class Spend:
    """Not an event: what a redemption does to a position between events (a debit within the balance)."""

    participant: str
    currency: str
    share: float  # of the available balance, rounded down


Step = Event | Spend


@dataclass(frozen=True)
class Reverse:
    """A reversal of the ``which``-th latest event (0: the last one): refused if that is a reversal or reversed."""

    which: int
    twist: str  # "" | "other participant" | "unknown id": refused too
    type: str
    occurred_at: dt.datetime


def build(specs: Sequence[Event | Reverse | Spend], participants: Sequence[str]) -> list[Step]:
    """Number the events e0, e1… and point each reversal at its target (one with nothing before is dropped)."""
    steps: list[Step] = []
    events: list[Event] = []
    for i, spec in enumerate(specs):
        if isinstance(spec, Spend):
            steps.append(spec)
            continue
        if isinstance(spec, Event):
            event = dataclasses.replace(spec, id=f"e{i}")
        elif not events:
            continue
        else:
            target = events[-1 - spec.which % len(events)]
            participant, reverses = target.participant, target.id
            if spec.twist == "other participant":
                participant = next((p for p in participants if p != participant), participant)
            elif spec.twist == "unknown id":
                reverses = f"missing-{i}"
            event = Event(f"e{i}", spec.type, participant, spec.occurred_at, {}, reverses=reverses)
        steps.append(event)
        events.append(event)
    return steps


def streams(
    *,
    min_size: int = 10,
    max_size: int = 50,
    reversals: bool = True,
    spends: bool = False,
    participants: Sequence[str] = PARTICIPANTS,
) -> st.SearchStrategy[list[Step]]:
    """Events of every kind, with reversals of earlier ones (some refused on purpose) and, if asked, spends."""
    who = st.sampled_from(participants)
    new_events = [
        st.builds(lambda kind, p, when, data: Event("", kind, p, when, data), st.just(kind), who, instants, data)
        for kind, data in KINDS.items()
    ]
    reverse = st.builds(
        Reverse,
        st.one_of(st.integers(0, 2), st.integers(0, 100)),
        st.sampled_from(["", "", "", "", "", "", "", "", "other participant", "unknown id"]),
        st.sampled_from(REVERSAL_TYPES),
        instants,
    )
    spend = st.builds(Spend, who, st.sampled_from(CURRENCIES), st.one_of(st.just(1.0), st.floats(0, 1)))
    step = st.one_of(*new_events, *([reverse, reverse] if reversals else []), *([spend, spend] if spends else []))
    return st.lists(step, min_size=min_size, max_size=max_size).map(lambda specs: build(specs, participants))


# ------------------------------------------------------------- the reference: the documented rules in plain Python


def local_periods(instant: dt.datetime) -> tuple[str, ...]:
    """Day, ISO week, month, quarter, year and all-time keys of an instant, cut in New York."""
    day = instant.astimezone(NEW_YORK).date()
    year, week, _ = day.isocalendar()
    return (
        day.isoformat(),
        f"{year}-W{week:02d}",
        f"{day.year}-{day.month:02d}",
        f"{day.year}-Q{(day.month - 1) // 3 + 1}",
        str(day.year),
        "all",
    )


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def whole(value: float) -> int | None:
    """A computed amount is rounded down; zero or less awards nothing (nor does one beyond the bound)."""
    amount = math.floor(value)
    return amount if 0 < amount <= MAX_AWARD else None


@dataclass(frozen=True)
class Entry:
    currency: str
    amount: int
    kind: str
    rule: str | None


@dataclass
class Reference:
    """acme-sales as documented, event by event: which entries each event books."""

    accepted: dict[str, Event] = field(default_factory=dict)
    entries: dict[str, list[Entry]] = field(default_factory=dict)
    reversed_by: dict[str, str] = field(default_factory=dict)
    calls_awarded: Counter[tuple[str, str]] = field(default_factory=Counter)  # (participant, local day)

    def process(self, event: Event) -> list[Entry] | None:
        """The entries the event books, or None when the event must be refused (a bad reversal)."""
        booked: list[Entry] = []
        if event.reverses is not None:
            target = self.accepted.get(event.reverses)
            if (
                target is None
                or event.reverses in self.reversed_by
                or target.reverses is not None
                or target.participant != event.participant
            ):
                return None
            booked += [Entry(e.currency, -e.amount, "reversal", e.rule) for e in self.entries[target.id]]
            if any(e.rule == "call-logged" for e in self.entries[target.id]):
                self.calls_awarded[(target.participant, local_periods(target.occurred_at)[0])] -= 1
            self.reversed_by[target.id] = event.id
        booked += self._rules(event)
        self.accepted[event.id] = event
        self.entries[event.id] = booked
        return booked

    def _rules(self, event: Event) -> list[Entry]:
        data = event.data
        if event.type == "deal.won":
            amount = data.get("amount")
            if not is_number(amount):
                return []
            x = float(amount)  # JSON has one number type: CEL sees a double
            awards = [("xp", whole(100.0 + x / 100.0)), ("coins", whole(x / 1000.0))]
            return [Entry(c, a, "rule", "deal-won") for c, a in awards if a is not None]
        if event.type == "activity.logged":
            duration = data.get("duration_s")
            if data.get("kind") != "call" or not is_number(duration) or float(duration) < 60.0:
                return []
            day = (event.participant, local_periods(event.occurred_at)[0])
            if self.calls_awarded[day] >= CALL_CAP:
                return []
            self.calls_awarded[day] += 1
            return [Entry("xp", 5, "rule", "call-logged")]
        if event.type == "task.completed":
            if "completed_at" not in data or "due_at" not in data:
                return []
            completed = dt.datetime.fromisoformat(data["completed_at"])
            due = dt.datetime.fromisoformat(data["due_at"])
            return [Entry("xp", 10, "rule", "follow-up-on-time")] if completed <= due else []
        return []

    def standing(self) -> Iterable[Event]:
        """Accepted events that are not reversals and were not reversed: what metrics count."""
        return (e for e in self.accepted.values() if e.reverses is None and e.id not in self.reversed_by)


def expected_metrics(events: Iterable[Event]) -> dict[str, dict[tuple[str, str], list[float]]]:
    """Per participant, the values each (metric, period) adds up, straight from the program document."""
    out: dict[str, dict[tuple[str, str], list[float]]] = defaultdict(lambda: defaultdict(list))
    for event in events:
        values: list[tuple[str, float]] = []
        if event.type == "deal.won":
            values.append(("deals_won", 1.0))
            amount = event.data.get("amount")
            if is_number(amount) and abs(float(amount)) <= MAX_METRIC_VALUE:  # beyond: a problem, not counted
                values.append(("revenue", float(amount)))
        elif event.type == "activity.logged" and event.data.get("kind") == "call":
            values.append(("calls", 1.0))
        local_day = event.occurred_at.astimezone(NEW_YORK).date()
        ranges = [key for key, (first, last) in RANGES.items() if first <= local_day <= last]
        for metric, value in values:
            for period in (*local_periods(event.occurred_at), *ranges):
                out[event.participant][(metric, period)].append(value)
    return out


# one-off periods of the program: the october-blitz competition, 2026-10-01 to 2026-10-31 inclusive, in New York
RANGES = {"20261001-20261031": (dt.date(2026, 10, 1), dt.date(2026, 10, 31))}


def float_tolerance(values: Iterable[float], steps: int) -> float:
    """How far a float sum may drift from the exact one when these values are added and removed in ``steps`` steps.

    Each addition rounds by at most one ulp of a partial sum, and no partial sum
    exceeds the sum of the magnitudes. Counts are exact; only ``revenue`` needs this.
    """
    return steps * EPSILON * math.fsum(abs(v) for v in values) + 1e-9


def money_like(step: Step) -> bool:
    """Not a deal with an amount beyond a billion or finer than cents."""
    if not isinstance(step, Event) or not is_number(step.data.get("amount")):
        return True
    amount = step.data["amount"]
    return bool(abs(amount) < 1e9 and round(amount, 2) == amount)


# --------------------------------------------------------------------------- running a stream


@dataclass
class Run:
    world: World
    outcomes: list[Effects | Invalid]  # per event step, in order
    effects: list[Effects]
    spent: Counter[tuple[str, str]]  # (participant, currency) → points debited by spends
    opening: Counter[tuple[str, str]]  # (participant, currency) → what earlier entries summed to

    def ledger_sums(self) -> Counter[tuple[str, str]]:
        sums: Counter[tuple[str, str]] = Counter(self.opening)
        for effects in self.effects:
            for entry in effects.ledger:
                sums[(effects.event.participant, entry.currency)] += entry.amount
        for key, amount in self.spent.items():
            sums[key] -= amount
        return sums

    def metric_totals(self) -> dict[str, dict[tuple[str, str], float]]:
        """Per participant, (metric, period) → value: the fold of every event's metric deltas, as storage adds them."""
        totals: dict[str, dict[tuple[str, str], float]] = defaultdict(lambda: defaultdict(float))
        for effects in self.effects:
            for delta in effects.metrics:
                if delta.team is None:
                    totals[effects.event.participant][(delta.metric, delta.period)] += delta.delta
        return totals


def run(
    steps: Sequence[Step],
    program: CompiledProgram | None = None,
    after_each: Callable[[Run], None] | None = None,
    opening: dict[tuple[str, str], tuple[int, int]] | None = None,
) -> Run:
    """Feed the steps to a new World; ``after_each`` looks at the run after every step.

    ``opening`` gives positions (available, arrears) held before the stream, as
    loaded from storage: arrears come from a reversal of points already spent.
    """
    program = program or ACME
    outcome = Run(World(lambda _version: program), [], [], Counter(), Counter())
    for (participant, currency), (available, arrears) in (opening or {}).items():
        outcome.world.state(participant).positions[currency] = Position(available, arrears, available - arrears)
        outcome.opening[(participant, currency)] = available - arrears
    for step in steps:
        if isinstance(step, Spend):
            position = outcome.world.state(step.participant).position(step.currency)
            amount = math.floor(position.available * step.share)
            if amount > 0:
                apply(position, move(position, -amount, "redemption"))
                outcome.spent[(step.participant, step.currency)] += amount
        else:
            try:
                effects = outcome.world.process(step, program)
            except Invalid as refused:
                outcome.outcomes.append(refused)
            else:
                outcome.outcomes.append(effects)
                outcome.effects.append(effects)
        if after_each is not None:
            after_each(outcome)
    return outcome


def events_of(steps: Sequence[Step]) -> list[Event]:
    return [s for s in steps if isinstance(s, Event)]


def reverse_everything(steps: Sequence[Step], order: Sequence[int], when: dt.datetime) -> list[Step]:
    """The stream, then a reversal of every event still standing after it (in the given order)."""
    reference = Reference()
    for event in events_of(steps):
        reference.process(event)
    standing = list(reference.standing())
    assert len(standing) <= len(order)
    ordered = [standing[i] for i in order if i < len(standing)]
    return [
        *steps,
        *(Event(f"undo-{e.id}", "deal.reopened", e.participant, when, {}, reverses=e.id) for e in ordered),
    ]


# --------------------------------------------------------------------------- properties


def check_positions(outcome: Run) -> None:
    """Per participant and currency: sum of the ledger == available − arrears, both ≥ 0, never both > 0."""
    sums = outcome.ledger_sums()
    for participant, state in outcome.world.states.items():
        for currency, position in state.positions.items():
            where = (participant, currency, position)
            assert position.available >= 0, where
            assert position.arrears >= 0, where
            # credits pay arrears first: a position never holds both spendable points and a debt
            assert position.available == 0 or position.arrears == 0, where
            assert sums[(participant, currency)] == position.available - position.arrears, where
    held = {(p, c) for p, s in outcome.world.states.items() for c in s.positions}
    assert {k for k, v in sums.items() if v} <= held


openings = st.dictionaries(  # what participants hold before the stream: spendable points or a debt, never both
    st.tuples(st.sampled_from(PARTICIPANTS[:2]), st.sampled_from(CURRENCIES)),
    st.one_of(
        st.builds(lambda n: (n, 0), st.integers(0, 500)),
        st.builds(lambda n: (0, n), st.integers(1, 500)),
    ),
    max_size=4,
)


@PROPERTY_SETTINGS
@given(streams(spends=True, participants=PARTICIPANTS[:2]), openings)
def test_balance_is_the_sum_of_the_ledger_and_never_negative(
    steps: list[Step], opening: dict[tuple[str, str], tuple[int, int]]
) -> None:
    """docs/architecture.md after the whole stream (spends between events make reversals run into arrears)."""
    check_positions(run(steps, opening=opening))


@PROPERTY_SETTINGS
@given(streams(spends=True, participants=PARTICIPANTS[:1]), openings)
def test_positions_hold_after_every_single_event(
    steps: list[Step], opening: dict[tuple[str, str], tuple[int, int]]
) -> None:
    """docs/architecture.md after every step, not just at the end."""
    run(steps, after_each=check_positions, opening=opening)


@PROPERTY_SETTINGS
@given(streams())
def test_awards_are_positive_whole_numbers_and_reversals_mirror_them(steps: list[Step]) -> None:
    """Award amounts are whole numbers, zero or less awards nothing; a reversal books the exact opposite."""
    outcome = run(steps)
    booked = {e.event.id: e.ledger for e in outcome.effects}
    for effects in outcome.effects:
        for entry in effects.ledger:
            assert type(entry.amount) is int, entry
            assert entry.amount != 0, entry
            assert entry.currency in CURRENCIES, entry
        rules = [e for e in effects.ledger if e.kind == "rule"]
        assert all(e.amount > 0 for e in rules), rules
        undone = [e for e in effects.ledger if e.kind == "reversal" and e.rule in RULES]
        if effects.event.reverses is None:
            assert undone == []
        else:  # every rule award of the reversed event, taken back exactly (other mechanics follow their own rules)
            original = [e for e in booked[effects.event.reverses] if e.kind == "rule"]
            assert sorted((e.currency, -e.amount, e.rule) for e in undone) == sorted(
                (e.currency, e.amount, e.rule) for e in original
            )


@PROPERTY_SETTINGS
@given(streams())
def test_ledger_matches_the_spec_reference(steps: list[Step]) -> None:
    """Every event books exactly what the documented reading of acme-sales says (amounts, caps, reversals, refusals)."""
    outcome = run(steps)
    reference = Reference()
    for event, result in zip(events_of(steps), outcome.outcomes, strict=True):
        expected = reference.process(event)
        if expected is None:
            assert isinstance(result, Invalid), (event, result)
            continue
        assert isinstance(result, Effects), (event, result)
        # challenges and prizes may add entries of their own: this checks those rules made (and their reversals)
        got = [Entry(e.currency, e.amount, e.kind, e.rule) for e in result.ledger if e.rule in RULES]
        assert got == expected, event


@PROPERTY_SETTINGS
@given(streams(participants=("ana",)))
def test_unknown_event_types_change_nothing(steps: list[Step]) -> None:
    """An event no rule or metric listens to is stored with no effect of its own."""
    for effects in run(steps).effects:
        if effects.event.reverses is None and effects.event.type in ("lead.created", "deal.lost"):
            assert effects.ledger == [] and effects.metrics == [] and effects.counters == [], effects
            assert effects.problems == [], effects
        if effects.event.reverses is not None:  # of a type no rule listens to: it only undoes
            assert [e for e in effects.ledger if e.kind == "rule"] == [] and effects.problems == [], effects
            assert all(m.delta <= 0 for m in effects.metrics if m.metric != "revenue"), effects  # counts go down


FALL_BACK_DAY = dt.datetime(2026, 11, 1, 4, tzinfo=UTC)  # local midnight; this New York day lasts 25 hours

calls_on_one_day = st.lists(
    st.builds(
        lambda second, who, duration: Event(
            "",
            "activity.logged",
            who,
            FALL_BACK_DAY + dt.timedelta(seconds=second),
            {"kind": "call", "duration_s": duration},
        ),
        st.integers(0, 25 * 3600 - 1),
        st.sampled_from(["ana", "ana", "ana", "bo"]),
        st.sampled_from([59.999, 60, 60.5, 90, 600]),
    ),
    min_size=22,
    max_size=60,
)


@PROPERTY_SETTINGS
@given(calls_on_one_day, st.lists(st.tuples(st.integers(0, 59), st.integers(0, 59)), max_size=15))
def test_call_cap_holds_per_participant_per_local_day(calls: list[Event], undo: list[tuple[int, int]]) -> None:
    """acme-sales: at most 20 call-logged awards per participant per New York day, net of reversals.

    All calls fall in the 25-hour local day of 2026-11-01, so the cap counts them
    all together; reversing an awarded call frees a slot for a later call.
    ``undo`` holds (call to reverse, after which call) pairs.
    """
    calls = [dataclasses.replace(c, id=f"c{i}") for i, c in enumerate(calls)]
    placed = [(i, 0, c) for i, c in enumerate(calls)]
    for target, after in undo:
        if target < len(calls):
            call = calls[target]
            reversal = Event(
                f"r{target}-{after}", "activity.deleted", call.participant, call.occurred_at, {}, reverses=call.id
            )
            placed.append((max(target, after), 1, reversal))
    steps = [event for _, _, event in sorted(placed, key=lambda p: (p[0], p[1]))]
    program = ACME
    world = World(lambda _version: program)
    net: Counter[str] = Counter()
    gross: Counter[str] = Counter()
    for event in steps:
        try:
            effects = world.process(event, program)
        except Invalid:
            assert event.reverses is not None  # a second reversal of the same call
            continue
        for entry in effects.ledger:
            assert entry.rule == "call-logged" and entry.currency == "xp" and abs(entry.amount) == 5
            net[event.participant] += 1 if entry.amount > 0 else -1
            gross[event.participant] += entry.amount > 0
        assert all(n <= CALL_CAP for n in net.values()), net
    if not undo:
        qualifying = Counter(c.participant for c in calls if c.data["duration_s"] >= 60)
        for participant, count in qualifying.items():
            assert gross[participant] == min(CALL_CAP, count), participant


@PROPERTY_SETTINGS
@given(streams(max_size=60))
def test_call_cap_in_random_streams(steps: list[Step]) -> None:
    """In any stream, the net call-logged awards of a participant on a local day never exceed 20."""
    outcome = run(steps)
    net: Counter[tuple[str, str]] = Counter()
    booked = {e.event.id: e.event for e in outcome.effects}
    for effects in outcome.effects:
        for entry in effects.ledger:
            if entry.rule != "call-logged":
                continue
            source = booked[effects.event.reverses] if entry.kind == "reversal" else effects.event
            assert effects.event.reverses is None or entry.kind == "reversal"
            net[(source.participant, local_periods(source.occurred_at)[0])] += 1 if entry.amount > 0 else -1
            assert all(0 <= n <= CALL_CAP for n in net.values()), net


@PROPERTY_SETTINGS
@given(streams(spends=False))
def test_same_stream_in_two_worlds_gives_identical_effects(steps: list[Step]) -> None:
    """Determinism: the engine has no clock, no randomness and no hidden state between worlds."""
    first, second = run(steps, acme()), run(steps, acme())
    assert first.effects == second.effects
    assert [type(o).__name__ + str(o) for o in first.outcomes] == [type(o).__name__ + str(o) for o in second.outcomes]
    assert first.world.states == second.world.states


@PROPERTY_SETTINGS
@given(streams(), st.permutations(range(60)), instants)
def test_reversing_every_event_brings_everything_back_to_zero(
    steps: list[Step], order: list[int], when: dt.datetime
) -> None:
    """docs/api.md: a reversal undoes the awards and metric contributions; undo all and nothing is left."""
    everything = reverse_everything(steps, order, when)
    outcome = run(everything)
    undo = len(everything) - len(steps)
    assert all(isinstance(o, Effects) for o in outcome.outcomes[len(outcome.outcomes) - undo :]), "a reversal refused"
    amounts = [float(e.data["amount"]) for e in events_of(steps) if is_number(e.data.get("amount"))]
    tolerance = float_tolerance(amounts, 2 * len(everything))
    for participant, state in outcome.world.states.items():
        for currency, position in state.positions.items():
            assert (position.available, position.arrears, position.earned) == (0, 0, 0), (participant, currency)
        for key, count in state.counters.items():
            assert count == 0, (participant, key)
    for participant, totals in outcome.metric_totals().items():
        for key, value in totals.items():
            assert abs(value) <= tolerance, (participant, key, value)


@PROPERTY_SETTINGS
@given(streams(), st.permutations(range(60)), instants)
def test_reversing_money_like_amounts_leaves_no_residue(steps: list[Step], order: list[int], when: dt.datetime) -> None:
    """With money-like amounts (cents, below a billion), the reversed revenue is back to 0 to the micro-unit."""
    steps = [s for s in steps if money_like(s)]
    outcome = run(reverse_everything(steps, order, when))
    for participant, totals in outcome.metric_totals().items():
        for key, value in totals.items():
            assert abs(value) < 1e-6, (participant, key, value)


@PROPERTY_SETTINGS
@given(streams(max_size=60))
def test_metric_totals_equal_a_plain_computation(steps: list[Step]) -> None:
    """deals_won, calls and revenue per New York day/week/month/quarter/year/all equal the plain sums of the stream."""
    outcome = run(steps)
    reference = Reference()
    for event in events_of(steps):
        reference.process(event)
    expected = expected_metrics(reference.standing())
    every = [float(e.data["amount"]) for e in events_of(steps) if is_number(e.data.get("amount"))]
    tolerance = float_tolerance(every, 2 * len(steps))
    totals = outcome.metric_totals()
    for participant in PARTICIPANTS:
        got = totals.get(participant, {})
        want = expected.get(participant, {})
        # every calendar period; a one-off period (a competition's range) where the engine keeps one
        for key in set(got) | {k for k in want if k[1] not in RANGES}:
            value = got.get(key, 0.0)
            if key[0] in ("deals_won", "calls"):
                assert value == len(want.get(key, [])), (participant, key)
            else:
                assert abs(value - math.fsum(want.get(key, []))) <= tolerance, (participant, key, value)


@PROPERTY_SETTINGS
@given(streams(max_size=60, reversals=True))
def test_revenue_per_local_month(steps: list[Step]) -> None:
    """The documented example: revenue per month = non-reversed deal.won amounts grouped by New York local month."""
    outcome = run(steps)
    reversed_ids = {e.event.reverses for e in outcome.effects if e.event.reverses}
    accepted = {e.event.id for e in outcome.effects}
    by_month: dict[tuple[str, str], list[float]] = defaultdict(list)
    for event in events_of(steps):
        if event.id in accepted and event.id not in reversed_ids and event.type == "deal.won":
            amount = event.data.get("amount")
            if is_number(amount) and abs(float(amount)) <= MAX_METRIC_VALUE:
                month = event.occurred_at.astimezone(NEW_YORK).strftime("%Y-%m")
                by_month[(event.participant, month)].append(float(amount))
    every = [float(e.data["amount"]) for e in events_of(steps) if is_number(e.data.get("amount"))]
    tolerance = float_tolerance(every, 2 * len(steps))
    got = {
        (participant, period): value
        for participant, totals in outcome.metric_totals().items()
        for (metric, period), value in totals.items()
        if metric == "revenue" and re.fullmatch(r"\d{4}-\d{2}", period)
    }
    for key in set(got) | set(by_month):
        assert abs(got.get(key, 0.0) - math.fsum(by_month.get(key, []))) <= tolerance, key


W47_MONDAY = dt.datetime(2026, 11, 16, 5, tzinfo=UTC)  # 00:00 EST on Monday 2026-11-16, the start of 2026-W47

deals_and_reversals = st.lists(
    st.one_of(
        st.builds(  # a deal by ana or bo somewhere from the Sunday before W47 to the end of W48 (New York time)
            lambda who, hours: Event("", "deal.won", who, W47_MONDAY + dt.timedelta(hours=hours), {"amount": 1000}),
            st.sampled_from(PARTICIPANTS[:2]),
            st.integers(-24, 14 * 24 - 1),
        ),
        st.integers(0, 8),  # reverse the n-th latest event (refused when it is a reversal or reversed already)
    ),
    min_size=5,
    max_size=40,
)


@PROPERTY_SETTINGS
@given(deals_and_reversals)
def test_weekly_goal_reward_is_held_once_per_week_it_is_met(plan: list[Event | int]) -> None:
    """five-a-week: 100 coins once per ISO week with 5 deals; a reversal below the target takes them back.

    Whatever the order of deals and reversals, what a participant holds from the
    goal is 100 coins for each New York week in which 5 or more deals still stand.
    """
    steps: list[Event] = []
    for i, item in enumerate(plan):
        if isinstance(item, Event):
            steps.append(dataclasses.replace(item, id=f"e{i}"))
        elif steps:
            target = steps[-1 - item % len(steps)]
            steps.append(Event(f"e{i}", "deal.reopened", target.participant, target.occurred_at, {}, target.id))
    outcome = run(steps)
    reference = Reference()
    for event in steps:
        reference.process(event)
    weeks = Counter((e.participant, local_periods(e.occurred_at)[1]) for e in reference.standing())
    for participant in PARTICIPANTS[:2]:
        held = sum(
            entry.amount
            for effects in outcome.effects
            if effects.event.participant == participant
            for entry in effects.ledger
            if entry.currency == "coins" and entry.rule not in RULES
        )
        met = sum(1 for (who, _week), n in weeks.items() if who == participant and n >= 5)
        assert held == 100 * met, (participant, dict(weeks))


@pytest.mark.parametrize(
    ("instant", "day", "month"),
    [
        ("2026-11-01T03:59:59Z", "2026-10-31", "2026-10"),  # 23:59:59 EDT on Halloween
        ("2026-11-01T04:00:00Z", "2026-11-01", "2026-11"),  # local midnight
        ("2026-11-01T05:30:00Z", "2026-11-01", "2026-11"),  # 01:30 EDT
        ("2026-11-01T06:30:00Z", "2026-11-01", "2026-11"),  # 01:30 EST: the same wall time again
        ("2026-11-02T04:59:59Z", "2026-11-01", "2026-11"),  # 23:59:59 EST: the 25th hour of the day
        ("2026-11-02T05:00:00Z", "2026-11-02", "2026-11"),
        ("2026-03-08T04:59:59Z", "2026-03-07", "2026-03"),  # 23:59:59 EST
        ("2026-03-08T07:00:00Z", "2026-03-08", "2026-03"),  # 03:00 EDT, right after the skipped hour
        ("2027-01-01T04:59:59Z", "2026-12-31", "2026-12"),
    ],
)
def test_periods_are_cut_in_new_york(instant: str, day: str, month: str) -> None:
    """Anchors for the properties above: a deal counts on the day and month a New Yorker would say."""
    when = dt.datetime.fromisoformat(instant)
    program = ACME
    effects = World(lambda _version: program).process(Event("d", "deal.won", "ana", when, {"amount": 1000}), program)
    periods = {m.period for m in effects.metrics if m.metric == "revenue"}
    assert day in periods and month in periods
    assert local_periods(when)[0] == day and local_periods(when)[2] == month
