"""What the engine reads (an event, a participant's state) and what it returns (effects).

Plain data, no I/O: the storage shell loads a :class:`ParticipantState`, the
engine turns an :class:`Event` into :class:`Effects`, and the shell writes them.
Replay and simulation hold states in memory and never touch a database.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from levelup.engine.positions import Position, PositionDelta, apply

WHOLE = 1_000_000  # a refund's share of the event it reverses, in millionths (exact sums, no float drift)


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    participant: str
    occurred_at: dt.datetime
    data: Mapping[str, Any] = field(default_factory=dict)
    reverses: str | None = None
    seq: int = 0  # processing order (the event log's seq); a World numbers events that come without one
    share: int = WHOLE  # a reversal: the part of the reversed event it refunds, in millionths


@dataclass(frozen=True)
class BookedEntry:
    """A ledger entry an earlier event caused, as a reversal needs to see it."""

    key: str
    currency: str
    amount: int
    kind: str
    rule: str | None
    rule_version: int | None
    explain: str


@dataclass(frozen=True)
class ReversedEvent:
    """The earlier event a reversal cancels, with the program version and teams it was scored with."""

    event: Event
    program_version: int
    teams: tuple[str, ...]
    entries: tuple[BookedEntry, ...]
    refunded: int = 0  # the share of it earlier partial refunds took back, in millionths


@dataclass
class ParticipantState:
    """The slice of a participant's state the engine needs for the events at hand.

    ``metrics`` and ``counters`` are keyed ``(metric or rule, period key)``;
    absent means zero. A state loaded from storage holds only the periods the
    engine reads for the events at hand (``periods``); an in-memory state
    (replay, simulation) holds everything (``periods`` is None).
    """

    id: str
    name: str | None = None
    teams: tuple[str, ...] = ()
    attributes: Mapping[str, Any] = field(default_factory=dict)
    status: str = "active"
    tier: str | None = None
    positions: dict[str, Position] = field(default_factory=dict)
    metrics: dict[tuple[str, str], float] = field(default_factory=dict)
    counters: dict[tuple[str, str], int] = field(default_factory=dict)
    last_award: dict[str, dt.datetime] = field(default_factory=dict)
    periods: set[str] | None = None
    # tiers reviewed inside the stream (live ingestion): the qualifying value as of the batch's day and the
    # standing; None when the shell tracks no tiers (replay sets ``tier`` from what each event recorded)
    tier_value: float | None = None
    tier_standing: TierStanding | None = None
    referral: ReferralState | None = None  # the referral that brought this participant, if any
    bought: bool = False  # made a qualifying event of the referral program before (an existing customer)
    badges: set[tuple[str, str, str]] = field(default_factory=set)  # (badge, grade, period) held now
    # (challenge, period) completed → the reward paid for it
    completions: dict[tuple[str, str], tuple[tuple[str, int], ...]] = field(default_factory=dict)
    streaks: dict[str, tuple[list[int], int]] = field(default_factory=dict)  # key → (qualifying periods, best)
    # (quest, period) → per step begun: (its metric's value then, the seq of the event it began with)
    quests: dict[tuple[str, str], tuple[tuple[float, int], ...]] = field(default_factory=dict)
    # RFM segment assignments, oldest first: (effective from, segment); an event reads the one in force then
    segments: tuple[tuple[dt.datetime, str], ...] = ()
    # (target: auto goal, period) → this participant's target, frozen by the shell (goals.target_for)
    targets: dict[tuple[str, str], float] = field(default_factory=dict)

    def segment_at(self, moment: dt.datetime) -> str:
        """The segment in force at ``moment`` (the latest assignment effective by then), "" when none was."""
        if not self.segments:
            return ""
        at = bisect.bisect_right(self.segments, moment, key=lambda s: s[0])
        return self.segments[at - 1][1] if at else ""

    def view(self, moment: dt.datetime) -> dict[str, Any]:
        """The participant as CEL sees it (``participant``) for an event at ``moment``."""
        return {
            "id": self.id,
            "name": self.name or "",
            "teams": list(self.teams),
            "attributes": dict(self.attributes),
            "segment": self.segment_at(moment),
        }

    def position(self, currency: str) -> Position:
        found = self.positions.get(currency)
        if found is None:
            found = self.positions[currency] = Position()
        return found


class LedgerEffect(NamedTuple):
    key: str  # unique within the event: the event's seq and this make the idempotency key
    currency: str
    amount: int
    kind: str  # rule | reversal (later: challenge, prize, redemption, expiry, kudos)
    rule: str | None
    rule_version: int | None
    explain: str
    at: dt.datetime
    moved: int = 0  # what it did to the available balance (a credit's rest after paying arrears): lots follow it


class MetricDelta(NamedTuple):
    metric: str
    period: str
    delta: float
    team: str | None = None


class MetricSample(NamedTuple):
    """One value of a max or distinct metric on a local day (occurrences -1 undoes it)."""

    metric: str
    day: str
    value: float
    value_key: str
    occurrences: int
    team: str | None = None


class CounterDelta(NamedTuple):
    rule: str
    period: str
    delta: int
    last_at: dt.datetime | None = None


class BadgeChange(NamedTuple):
    badge: str
    grade: str
    period: str
    granted: bool  # False: revoked by a reversal


class Completion(NamedTuple):
    challenge: str
    period: str
    value: float
    target: float
    completed: bool = True  # False: a reversal took the value back below the target
    reward: tuple[tuple[str, int], ...] = ()  # what was paid for it (taken back if undone)


class QuestChange(NamedTuple):
    challenge: str
    period: str
    baselines: tuple[tuple[float, int], ...]  # see ParticipantState.quests; steps + 1 long once complete
    complete: bool


class StreakChange(NamedTuple):
    streak: str
    periods: list[int]  # the qualifying periods after the change
    best: int
    length: int  # of the run holding the changed period (0 when it stopped qualifying)


class TierStanding(NamedTuple):
    """A participant's tier as the reviews left it."""

    tier: str | None  # in force: the override while it lasts, else ``earned``
    earned: str | None  # what the last review decided from the window
    dropped_in: str | None  # the review period of the last one-step drop
    override: str | None = None  # an admin's override in force now


class TierChange(NamedTuple):
    before: str | None
    after: str | None
    up: bool
    reason: str


class TierReview(NamedTuple):
    """A review made inside the stream: the qualifying value after the event and the standing it gives."""

    value: float
    standing: TierStanding
    change: TierChange | None


class ReferralState(NamedTuple):
    """The referral that brought a participant (the friend), as the engine follows it."""

    status: str  # waiting | qualified | paid | void
    referrer: str  # external id
    referral_event: str
    qualifying_event: str | None = None
    pay_after: dt.datetime | None = None


class ReferralChange(NamedTuple):
    referral: ReferralState  # after the event
    made: bool = False  # the referral was made by this event (else an existing one moved)


class LevelChange(NamedTuple):
    before: str
    after: str
    up: bool


class Problem(NamedTuple):
    """A rule or metric that could not be evaluated for this event; shown to the admin."""

    source: str  # "rule:<key>" or "metric:<key>"
    message: str


@dataclass(slots=True)
class Effects:
    event: Event
    program_version: int
    teams: tuple[str, ...]
    tier: str | None = None  # the participant's standing it was scored with, recorded with the event
    suspended: bool = False
    refunded: int = 0  # a reversal: the share of the reversed event refunded once it is applied (WHOLE: all)
    ledger: list[LedgerEffect] = field(default_factory=list)
    positions: dict[str, PositionDelta] = field(default_factory=dict)
    metrics: list[MetricDelta] = field(default_factory=list)
    samples: list[MetricSample] = field(default_factory=list)
    counters: list[CounterDelta] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    badges: list[BadgeChange] = field(default_factory=list)
    completions: list[Completion] = field(default_factory=list)
    streaks: list[StreakChange] = field(default_factory=list)
    quests: list[QuestChange] = field(default_factory=list)
    level: LevelChange | None = None
    tier_review: TierReview | None = None
    referral: ReferralChange | None = None
    qualifies: bool = False  # an event of the referral program's qualifying type: the participant is a customer

    def awards(self) -> list[dict[str, Any]]:
        """The response's ``awards``: what this event earned by rule."""
        return [{"currency": e.currency, "amount": e.amount, "rule": e.rule} for e in self.ledger if e.kind == "rule"]


def apply_effects(state: ParticipantState, effects: Effects, *, track_metrics: bool) -> None:
    """Fold an event's effects into the in-memory state, so the next event sees them.

    Metric values are folded only when the program reads them (``track_metrics``).
    """
    for currency, delta in effects.positions.items():
        apply(state.position(currency), delta)
    if effects.referral is not None:
        state.referral = effects.referral.referral
    state.bought = state.bought or effects.qualifies
    if effects.tier_review is not None:
        state.tier_value, state.tier_standing = effects.tier_review.value, effects.tier_review.standing
        state.tier = state.tier_standing.tier
    periods = state.periods
    for m in effects.metrics if track_metrics else ():
        if m.team is None and (periods is None or m.period in periods):
            key = (m.metric, m.period)
            state.metrics[key] = state.metrics.get(key, 0.0) + m.delta
    for b in effects.badges:
        (state.badges.add if b.granted else state.badges.discard)((b.badge, b.grade, b.period))
    for done in effects.completions:
        if done.completed:
            state.completions[(done.challenge, done.period)] = done.reward
        else:
            state.completions.pop((done.challenge, done.period), None)
    for st in effects.streaks:
        state.streaks[st.streak] = (st.periods, st.best)
    for q in effects.quests:
        state.quests[(q.challenge, q.period)] = q.baselines
    for c in effects.counters:
        key = (c.rule, c.period)
        state.counters[key] = state.counters.get(key, 0) + c.delta
        if c.last_at is not None and (c.rule not in state.last_award or c.last_at > state.last_award[c.rule]):
            state.last_award[c.rule] = c.last_at
