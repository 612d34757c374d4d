"""Insight: simulate a draft over past events (admin), and the analytics (read)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from levelup.api.deps import AdminAccess, Offset, ReadAccess
from levelup.api.responses import Out, as_is
from levelup.api.routes.leaderboards import BoardEntry
from levelup.insights import common, engagement, fairness, gaming, possible, segments, targets
from levelup.insights import experiments as holdouts
from levelup.insights import simulate as sim
from levelup.programs.validation import validate_document

router = APIRouter(tags=["insights"])


class SimulateIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    document: dict[str, Any] = Field(description="the draft program document (JSON), as for PUT /programs/{program}")
    from_: AwareDatetime = Field(alias="from", description="first instant of the window (event time, inclusive)")
    to: AwareDatetime = Field(description="end of the window (exclusive); at most ten years after from")


class Window(Out):
    from_: str = Field(alias="from")
    to: str
    events: int = Field(description="stored events whose occurred_at lies in the window")


class BadgeCount(Out):
    badge: str
    grade: str
    holders: int = Field(description="participants holding it at the window's end")
    grants: int = Field(description="grants held (a repeatable badge counts once a period)")


class ChallengeCount(Out):
    challenge: str
    completions: int = Field(description="(participant, period) completions; a team goal: teams that reached it")


class BoardTop(Out):
    key: str
    period: str = Field(description="the board's period on the day of the window's last event")
    total: int
    entries: list[BoardEntry]


class PrizePaid(Out):
    challenge: str
    period: str
    rank: int | None = Field(description="null: a team goal reached")
    winner: str = Field(description="participant, or team (each member is paid)")
    awards: dict[str, int]


class Owed(Out):
    outstanding: int
    arrears: int


class Unsettled(Out):
    challenge: str
    period: str


class Scored(Out):
    events: int
    skipped: int = Field(description="reversals of events before the window: nothing to undo")
    totals: dict[str, int] = Field(description="per currency: what the window's events, rewards and prizes made")
    participants: dict[str, dict[str, int]] = Field(description="per participant: balance per currency")
    distribution: dict[str, dict[str, float]] = Field(
        description="per currency: p10, p25, p50, p75, p90, p99, min, max, mean of the balances"
    )
    badges: list[BadgeCount]
    challenges: list[ChallengeCount]
    leaderboards: list[BoardTop]
    prizes: list[PrizePaid] = Field(description="team goals and competitions closed in the window")
    unsettled: list[Unsettled] = Field(
        description="periods that end in the window but began before it: not settled, their totals here being "
        "only the window's share"
    )
    liability: dict[str, Owed] = Field(description="spendable currencies: points created, still held")


class Change(Out):
    kind: str = Field(description="total, liability, badge, challenge, leaderboard or participant")
    key: str
    before: float
    after: float
    text: str = Field(description='in plain words: "Dana: +1,200 XP", "top-closer Gold: 4 → 9 holders"')


class Simulation(Out):
    program: str
    version: int = Field(description="the version in force, scored as current")
    window: Window
    current: Scored
    draft: Scored
    changes: Annotated[list[Change], Field(max_length=sim.MAX_CHANGES)]


@router.post("/programs/{program}/simulate", response_model=Simulation)
def post_simulate(access: AdminAccess, body: SimulateIn) -> Response:
    """Score a draft document over the stored events of [from, to) beside the document in force, in
    memory, in one read-only transaction: nothing is written."""
    draft = validate_document(body.document, program=access.key)
    return as_is(Simulation, sim.run(access.runtime, access.key, draft, body.from_, body.to))


# ---------------------------------------------------------------------------- analytics (read role)

From = Annotated[AwareDatetime | None, Query(alias="from", description="window start (default: 13 weeks before to)")]
To = Annotated[AwareDatetime | None, Query(description="window end, exclusive (default: now)")]
AsOf = Annotated[AwareDatetime | None, Query(description="the instant recency is measured from (default: now)")]
Limit = Annotated[int, Query(ge=1, le=segments.MAX_LIST)]
MetricKey = Annotated[str | None, Query(max_length=64)]


class Span(Out):
    from_: str = Field(alias="from")
    to: str


class ActivePeriod(Out):
    period: str
    active: int = Field(description="participants with an event in the period")
    events: int
    awards: int = Field(description="positive entries paid by play (rules, challenges, prizes, referrals)")
    awards_per_active: float
    earned_nothing: float = Field(description="share of the active who were paid nothing in the period")


class Cohort(Out):
    cohort: str = Field(description="the ISO week of the first event")
    participants: int
    active_share: list[float] = Field(description="share of the cohort active in week 0, 1, 2… after (up to 12)")


class FirstAward(Out):
    newcomers: int = Field(description="participants whose first event is in the window")
    awarded: int = Field(description="of them, those paid at least once")
    median_days: float | None = Field(description="from first event to first award")


class ChallengeRate(Out):
    challenge: str
    kind: str
    completed_by: int = Field(description="participants who completed it in the window")
    rate: float = Field(description="completed_by over the window's active participants")
    periods_closed: int


class Engagement(Out):
    window: Span
    grain: Literal["day", "week", "month"]
    active: int
    earned_nothing: float = Field(description="share of the active paid nothing in the whole window")
    periods: list[ActivePeriod]
    retention: list[Cohort]
    first_award: FirstAward
    challenges: list[ChallengeRate]
    sentence: str


@router.get("/programs/{program}/insights/engagement", response_model=Engagement)
def get_engagement(
    access: ReadAccess,
    start: From = None,
    to: To = None,
    grain: Literal["day", "week", "month"] = "week",
) -> Response:
    """Active participants per day, week or month, awards per active participant, the share who earned
    nothing, week-over-week retention by cohort, time to the first award, challenge completion rates."""
    window = common.window(start, to)
    with access.runtime.db.read() as connection:
        record = access.record(connection)
        body = engagement.engagement(connection, record, access.compiled(connection, record), *window, grain)
    return as_is(Engagement, body)


class Shared(Out):
    participants: int
    gini: float = Field(description="0: equal shares; 1: one participant has everything")
    top10_share: float = Field(description="share of the total earned by the top 10% (at least one)")


class TeamShared(Shared):
    team: str


class TopOfPeriod(Out):
    period: str
    top: list[str]


class TopChurn(Out):
    periods: list[TopOfPeriod]
    repeat_share: float = Field(description="top-3 places held by someone in the top 3 the period before")
    sentence: str


class Never(Out):
    participants: int
    never_rewarded: int
    share: float
    sentence: str


class InflationMonth(Out):
    month: str
    events: int
    per_event: dict[str, float] = Field(description="per currency: awarded per event")


class Inflation(Out):
    months: list[InflationMonth]
    sentence: str


class Rarity(Out):
    badge: str
    grade: str
    holders: int
    share: float = Field(description="of everyone who ever played")
    sentence: str


class Fairness(Shared):
    metric: str | None
    currency: str | None
    period: str
    sentence: str = Field(description='e.g. "the top 10% (4 of 35 active) earned 64% of the XP in 2026-10"')
    teams: list[TeamShared]
    top3: TopChurn
    never_rewarded: Never
    inflation: Inflation
    badges: list[Rarity]


@router.get("/programs/{program}/insights/fairness", response_model=Fairness)
def get_fairness(
    access: ReadAccess,
    period: Annotated[str, Query(max_length=40, description="2026-10, 2026-W42, 2026-Q4, 2026 or all")],
    metric: MetricKey = None,
    currency: MetricKey = None,
) -> Response:
    """How a metric or a currency is shared among the period's active participants (overall and per team),
    who holds the top 3 period after period, who never earns, points per event over time, badge rarity."""
    with access.runtime.db.read() as connection:
        record = access.record(connection)
        compiled = access.compiled(connection, record)
        body = fairness.fairness(connection, record, compiled, period=period, metric=metric, currency=currency)
    return as_is(Fairness, body)


class Segment(Out):
    name: str
    participants: int
    share: float
    recency_days: float | None = Field(description="median days since the last event of the metric's type")
    frequency: float | None = Field(description="median number of such events")
    monetary: float | None = Field(description="median all-time value of the metric")


class Member(Out):
    id: str
    name: str | None
    recency_days: float
    frequency: int
    monetary: float


class Segments(Out):
    metric: str
    as_of: str
    participants: int
    segments: list[Segment]
    total: int | None = Field(
        default=None, description="with ?segment=: its members in all (`members` lists `limit` from `offset`)"
    )
    members: list[Member] | None = Field(
        default=None, description="with ?segment=: its members, biggest monetary first, ties by id"
    )
    sentence: str


@router.get("/programs/{program}/insights/segments", response_model=Segments)
def get_segments(
    access: ReadAccess,
    metric: MetricKey = None,
    as_of: AsOf = None,
    segment: Annotated[str | None, Query(max_length=40, description=", ".join(segments.SEGMENTS))] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Response:
    """RFM segments (Champions, Loyal, New, Potential, At risk, Lost, Hibernating) of the participants with an
    event of the metric's type (default: the first sum metric); ``?segment=`` lists its members, ``limit`` from
    ``offset`` of ``total`` (page with the same ``as_of`` to cover everyone once)."""
    with access.runtime.db.read() as connection:
        record = access.record(connection)
        compiled = access.compiled(connection, record)
        body = segments.rfm(
            connection,
            record,
            compiled,
            metric=metric,
            as_of=common.instant(as_of, "as_of"),
            segment=segment,
            limit=limit,
            offset=offset,
        )
    return as_is(Segments, body)


class AtRisk(Out):
    id: str
    name: str | None
    risk: float = Field(ge=0, le=1)
    days_since_last: float
    usual_gap_days: float
    events: int


class Churn(Out):
    as_of: str
    total: int = Field(description="everyone who played before as_of (`participants` lists `limit` from `offset`)")
    participants: list[AtRisk] = Field(description="riskiest first, ties by id")
    sentence: str


@router.get("/programs/{program}/insights/churn", response_model=Churn)
def get_churn(access: ReadAccess, as_of: AsOf = None, limit: Limit = 100, offset: Offset = 0) -> Response:
    """Churn risk in [0, 1]: the days since each participant's last event against their own usual gap;
    ``limit`` from ``offset`` of ``total`` (page with the same ``as_of`` to cover everyone once)."""
    with access.runtime.db.read() as connection:
        body = segments.churn(
            connection, access.record(connection), as_of=common.instant(as_of, "as_of"), limit=limit, offset=offset
        )
    return as_is(Churn, body)


class Suggested(Out):
    id: str
    name: str | None
    history: int = Field(description="periods with a value among those looked at")
    median: float | None = Field(description="the median the target stretches (own, or the team's)")
    target: int
    source: Literal["own", "team", "challenge"]


class Targets(Out):
    challenge: str
    metric: str
    target: float = Field(description="the challenge's own target")
    periods: list[str] = Field(description="the complete periods looked at, oldest first")
    factor: float
    floor: float
    cap: float
    total: int
    participants: list[Suggested] = Field(description="lowest target first")
    sentence: str


@router.get("/programs/{program}/insights/targets", response_model=Targets)
def get_targets(
    access: ReadAccess,
    challenge: Annotated[str, Query(max_length=64, description="a recurring individual goal")],
    as_of: AsOf = None,
    periods: Annotated[int, Query(ge=1, le=52)] = 8,
    factor: Annotated[float, Query(ge=1, le=3)] = 1.1,
    limit: Limit = 100,
) -> Response:
    """A suggested personal target for each participant on a recurring individual goal: the median of their
    last periods × ``factor`` between a floor and a cap (newcomers: their team's), so every rep has a reachable
    goal. A suggestion: the challenge's target is what the engine judges."""
    with access.runtime.db.read() as connection:
        record = access.record(connection)
        body = targets.targets(
            connection,
            record,
            access.compiled(connection, record),
            challenge=challenge,
            as_of=common.instant(as_of, "as_of"),
            periods=periods,
            factor=factor,
            limit=limit,
        )
    return as_is(Targets, body)


class Group(Out):
    participants: int
    mean: float | None = Field(description="the metric per participant over the window (0 without any)")


class Compared(Out):
    key: str
    applies_to: str = Field(description='"rule KEY", "challenge KEY" or "program"')
    metric: str
    holdout: float = Field(description="the share held out")
    salt: str
    treated: Group = Field(description="everyone else: they had what the holdout group was kept out of")
    held_out: Group
    difference: float | None = Field(description="treated mean − held-out mean; null below two in a group")
    low: float | None = Field(description="95% confidence interval of the difference (Welch's t)")
    high: float | None
    df: float | None = Field(description="Welch–Satterthwaite degrees of freedom")
    confidence: float
    method: Literal["welch"]
    real: bool | None = Field(description="the interval excludes zero; null: not enough participants")
    sentence: str


class Experiments(Out):
    window: dict[str, str]
    experiments: list[Compared]
    sentence: str


@router.get("/programs/{program}/insights/experiments", response_model=Experiments)
def get_experiments(
    access: ReadAccess,
    start: From = None,
    to: To = None,
    experiment: Annotated[str | None, Query(max_length=64, description="one experiment (default: all)")] = None,
) -> Response:
    """Holdout experiments of the document in force: each one's metric, the rest against the held out, over the
    participants active in the window, with a 95% interval and a plain verdict on whether the difference is real."""
    window = common.window(start, to)
    with access.runtime.db.read() as connection:
        record = access.record(connection)
        body = holdouts.experiments(connection, record, access.compiled(connection, record), *window, key=experiment)
    return as_is(Experiments, body)


# ---------------------------------------------------------------------------- anti-gaming flags (admin)


class FlagOut(Out):
    kind: Literal["burst", "near_cap", "repeated", "kudos_ring"]
    participants: list[str] = Field(description="one, or the two of a kudos ring")
    score: float = Field(ge=0, le=1, description="how strong the pattern is (docs/insights.md says how each is made)")
    sentence: str
    events: list[str] = Field(description="the events involved (at most 100): what a clawback takes back")
    kudos: list[int] = Field(description="a kudos ring: the kudos between the two (at most 100)")
    detail: dict[str, Any] = Field(description="the figures behind the sentence, per kind")


class Flags(Out):
    window: Span
    thresholds: gaming.Thresholds = Field(description="what each kind took: the defaults, or those asked for")
    total: int = Field(description="flags found; the first `limit` are listed")
    kinds: dict[str, int] = Field(description="flags found per kind")
    flags: list[FlagOut] = Field(description="highest score first")
    sentence: str


@router.get("/programs/{program}/insights/flags", response_model=Flags)
def get_flags(
    access: AdminAccess,
    tuned: Annotated[gaming.Thresholds, Query()],
    start: From = None,
    to: To = None,
    kind: Annotated[Literal["burst", "near_cap", "repeated", "kudos_ring"] | None, Query()] = None,
    limit: Limit = 100,
) -> Response:
    """Suspicious patterns in a window of event time, for admins: bursts far above a participant's own
    norm, awards kept just under a cap, identical data under different ids, kudos rings; each with the
    events (or kudos) involved, to review and claw back (``POST …/events/{id}/clawback``). Each threshold
    may be tuned for the request (``?burst_min=5&ring_share=0.4``), within its bounds."""
    window = common.window(start, to)
    with access.runtime.db.read() as connection:
        record = access.record(connection)
        compiled = access.compiled(connection, record)
        body = gaming.flags(
            connection, record, compiled, start=window[0], end=window[1], kind=kind, limit=limit, tuned=tuned
        )
    return as_is(Flags, body)


# ---------------------------------------------------------------------------- still possible (read)


class PrizeChance(Out):
    rank: int
    needed: float = Field(description="more of the metric to reach this rank or better (a race: its target)")
    chance: float = Field(ge=0, le=1, description="of getting there by the end at the participant's own pace")
    holds: bool = Field(description="at this rank or better now (a race: finished there)")


class Contender(Out):
    id: str
    value: float = Field(description="the competition's metric so far")
    events: int = Field(description="events of the metric's type since the competition began")
    per_day: float = Field(description="their pace: those events per day elapsed")
    prizes: list[PrizeChance]
    sentence: str


class PrizeHolder(Out):
    rank: int
    holder: str | None
    value: float | None


class OpenCompetition(Out):
    challenge: str
    format: Literal["ranking", "race", "duel"]
    mode: Literal["individual", "team"] = Field(description="team: the ids below are teams")
    metric: str
    period: str
    ends_at: str
    days_elapsed: float
    days_left: float
    entrants: int = Field(description="taking part with a value so far")
    prizes: list[PrizeHolder] = Field(description="who holds each prize rank now")
    participants: list[Contender] = Field(description="the board's first `limit`, or `participant`")


class Possible(Out):
    as_of: str
    competitions: list[OpenCompetition]
    sentence: str


@router.get("/programs/{program}/insights/possible", response_model=Possible)
def get_possible(
    access: ReadAccess,
    challenge: Annotated[str | None, Query(max_length=64, description="one individual competition")] = None,
    participant: Annotated[str | None, Query(max_length=200, description="only this participant (or team)")] = None,
    as_of: AsOf = None,
    limit: Limit = 100,
) -> Response:
    """For each open competition: what each participant (or team) needs for each prize rank (the gap to its
    current holder) and the chance of getting there by the end at their own pace."""
    with access.runtime.db.read() as connection:
        record = access.record(connection)
        body = possible.possible(
            connection,
            record,
            access.compiled(connection, record),
            as_of=common.instant(as_of, "as_of"),
            challenge=challenge,
            participant=participant,
            limit=limit,
        )
    return as_is(Possible, body)
