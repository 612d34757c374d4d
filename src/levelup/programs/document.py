"""The program document (docs/program-document.md) as pydantic models.

Field names are the document's own, so the JSON Schema served at
``/api/v1/schema/program`` is generated from here and never drifts. These models
check shape only; cross references (unknown currency, unknown metric, CEL syntax)
are checked in :mod:`levelup.programs.validation`, which reports every error at once.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

KEY_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
PROGRAM_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
WINDOW_PATTERN = r"^(day|week|month|quarter|year|all|last_[1-9][0-9]{0,3}_days)$"
DURATION_PATTERN = r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$"
MAX_EXPRESSION_LENGTH = 1000
# bounds of the numbers a document may hold: each keeps every sum of them within a database integer
MAX_AMOUNT = 10**12  # an award, a cost, a kudos budget (what one ledger entry moves)
MAX_COUNT = 10**9  # caps, limits, stock, ranks
MAX_VALUE = 10**15  # thresholds and targets on metrics and levels (a metric moves at most that an event)
MAX_DURATION_DAYS = 36_500  # a hundred years
FIRST_DATE, LAST_DATE = dt.date(1900, 1, 1), dt.date(2999, 12, 31)  # the dates events may carry

Key = Annotated[str, Field(pattern=KEY_PATTERN, description="identifier: lowercase letters, digits, _ . -")]
EventType = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$", max_length=100)]
Expression = Annotated[str, Field(min_length=1, max_length=MAX_EXPRESSION_LENGTH, description="a CEL expression")]
Window = Annotated[
    str, Field(pattern=WINDOW_PATTERN, description="day, week, month, quarter, year, all or last_N_days")
]
CalendarPeriod = Literal["day", "week", "month", "quarter", "year", "all"]
RepeatPeriod = Literal["day", "week", "month", "quarter", "year"]


def _short_enough(text: str) -> str:
    if duration_seconds(text) > MAX_DURATION_DAYS * 86_400:
        raise ValueError(f"longer than {MAX_DURATION_DAYS} days")
    return text


def _in_range(day: dt.date) -> dt.date:
    if not FIRST_DATE <= day <= LAST_DATE:
        raise ValueError(f"must be from {FIRST_DATE} to {LAST_DATE}")
    return day


Duration = Annotated[
    str,
    Field(
        pattern=DURATION_PATTERN,
        description=f"ISO 8601 duration: P365D, PT1H, P1DT12H (at most {MAX_DURATION_DAYS} days)",
    ),
    AfterValidator(_short_enough),
]
Date = Annotated[dt.date, AfterValidator(_in_range)]
Count = Annotated[int, Field(ge=1, le=MAX_COUNT)]
PersonalField = Annotated[str, Field(pattern=r"^data(\.[A-Za-z_][A-Za-z0-9_]*){1,8}$", description="e.g. data.email")]
Value = Annotated[float, Field(ge=-MAX_VALUE, le=MAX_VALUE)]
Amount = (
    Annotated[int, Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT)]
    | Annotated[float, Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT)]
    | Expression
)
Award = dict[str, Amount]


def duration_seconds(text: str) -> int:
    """Seconds in an ISO 8601 duration of days/hours/minutes/seconds (already pattern-checked)."""
    match = re.match(DURATION_PATTERN, text)
    if match is None:
        raise ValueError(f"not an ISO 8601 duration: {text!r}")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


class Strict(BaseModel):
    """Unknown keys are errors: a typo must not silently disable a rule."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)


class Cap(Strict):
    max: Count
    per: CalendarPeriod


class Currency(Strict):
    key: Key
    name: str = Field(min_length=1, max_length=100)
    spendable: bool = False
    expires_after: Duration | None = Field(
        default=None, description="each credit expires this long after it was earned"
    )
    pending: Duration | None = Field(default=None, description="credits become spendable this long after")
    expires_after_inactivity: Duration | None = Field(
        default=None, description="all of a participant's credits expire once they have earned nothing for this long"
    )
    velocity: Cap | None = Field(
        default=None, description="anti-abuse: at most max of this currency earned from rules per period"
    )


class Metric(Strict):
    key: Key
    event: EventType
    if_: Expression | None = Field(default=None, alias="if")
    aggregate: Literal["count", "sum", "max", "distinct"]
    value: Expression | None = Field(default=None, description="what to sum, maximise or count distinctly")


class Rule(Strict):
    key: Key
    event: EventType
    if_: Expression | None = Field(default=None, alias="if")
    award: Award = Field(min_length=1, max_length=10)
    cap: Cap | None = None
    cooldown: Duration | None = Field(default=None, description="minimum event time between two awards")
    explain: str | None = Field(default=None, max_length=500)


class LevelStep(Strict):
    name: str = Field(min_length=1, max_length=100)
    at: int = Field(ge=0, le=MAX_VALUE)


class Levels(Strict):
    currency: Key | None = None
    metric: Key | None = None
    steps: list[LevelStep] = Field(min_length=1, max_length=100)


class Criterion(Strict):
    metric: Key
    window: Window = "all"
    at_least: Value


class BadgeGrade(Strict):
    name: str = Field(min_length=1, max_length=100)
    when: list[Criterion] = Field(min_length=1, max_length=10)


class Badge(Strict):
    key: Key
    name: str = Field(min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=500)
    repeatable: RepeatPeriod | None = None
    grades: list[BadgeGrade] = Field(min_length=1, max_length=10)


class Streak(Strict):
    key: Key
    name: str | None = Field(default=None, max_length=100)
    metric: Key
    period: Literal["day", "week", "month"]
    at_least: Value = 1
    grace: int = Field(default=0, ge=0, le=30)


class QuestStep(Strict):
    metric: Key
    target: float = Field(gt=0, le=MAX_VALUE)
    name: str | None = Field(default=None, max_length=100)


class Prize(Strict):
    rank: Count
    award: Award


class AutoTarget(Strict):
    """How ``target: auto`` stretches each participant's own history into their target for a period."""

    periods: int = Field(default=8, ge=1, le=52, description="complete periods of history looked at")
    factor: float = Field(default=1.1, ge=1, le=3, description="the stretch: the median of those periods × this")
    floor: float = Field(default=1, gt=0, le=MAX_VALUE, description="no target below this")
    cap: float | None = Field(default=None, gt=0, le=MAX_VALUE, description="no target above this")
    fallback: float = Field(
        gt=0, le=MAX_VALUE, description="the target of someone without history (nor a team with history)"
    )


class Challenge(Strict):
    key: Key
    name: str | None = Field(default=None, max_length=100)
    kind: Literal["goal", "quest", "competition"] = "goal"
    metric: Key | None = None
    target_: Annotated[float, Field(gt=0, le=MAX_VALUE)] | Literal["auto"] | None = Field(
        default=None,
        alias="target",
        description="a number; or auto (a recurring individual goal): each participant's own, set as auto says",
    )
    auto: AutoTarget | None = Field(default=None, description="with target: auto, how each target is set")
    every: RepeatPeriod | None = None
    start: Date | None = None
    end: Date | None = Field(default=None, description="inclusive, in the program time zone")
    mode: Literal["individual", "team"] = "individual"
    format: Literal["ranking", "race", "duel"] = Field(
        default="ranking",
        description="competitions: ranked by value, the first to reach target (race), or two entrants head to head",
    )
    teams: list[Key] | None = None
    entrants: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None, max_length=1000, description="participant ids invited to an individual competition"
    )
    eligible: Expression | None = Field(
        default=None, description="CEL over participant (attributes, teams): who takes part"
    )
    reward: Award | None = None
    steps: list[QuestStep] | None = Field(default=None, max_length=20)
    prizes: list[Prize] | None = Field(default=None, max_length=100)
    draft: bool = False

    @property
    def target(self) -> float | None:
        """The one target everyone shares; None without one or with ``target: auto`` (see :attr:`auto_target`)."""
        return None if self.target_ == "auto" else self.target_

    @property
    def auto_target(self) -> bool:
        return self.target_ == "auto"


class Leaderboard(Strict):
    key: Key
    name: str | None = Field(default=None, max_length=100)
    metric: Key | None = None
    currency: Key | None = None
    window: Window = "all"
    by: Literal["participant", "team"] = "participant"
    normalize: str | None = Field(
        default=None,
        pattern=r"^participant\.attributes\.[A-Za-z_][A-Za-z0-9_]*$",
        description="divide each value by this participant attribute (fairness handicap)",
    )


class TierStep(Strict):
    name: str = Field(min_length=1, max_length=100)
    at: float = Field(ge=0, le=MAX_VALUE)
    multiplier: dict[str, Annotated[float, Field(ge=0, le=1000)]] | None = None


class Tiers(Strict):
    metric: Key
    window: Window = "last_365_days"
    steps: list[TierStep] = Field(min_length=1, max_length=20)
    demotion: Literal["rerate", "one_step"] = Field(
        default="rerate",
        description="rerate: the tier always follows the window; one_step: drop at most one tier per review period",
    )
    review: RepeatPeriod = Field(default="month", description="the review period of the one_step policy")


class Limit(Strict):
    max: Count
    per: CalendarPeriod


class Requirement(Strict):
    tier: str | None = None
    level: str | None = None


class Reward(Strict):
    key: Key
    name: str = Field(min_length=1, max_length=200)
    cost: dict[str, Annotated[int, Field(ge=1, le=MAX_AMOUNT)]] = Field(min_length=1, max_length=1)
    stock: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    limit: Limit | None = None
    requires: Requirement | None = None
    starts: Date | None = None
    ends: Date | None = None


class KudosBudget(Strict):
    amount: int = Field(ge=1, le=MAX_AMOUNT)
    per: RepeatPeriod


class Kudos(Strict):
    currency: Key
    budget: KudosBudget


class Referrals(Strict):
    """Refer-a-friend, hard to game: the referrer is paid only once the friend's first qualifying event
    (a purchase) has stood unrefunded for ``hold``; never for referring oneself, nor an existing customer."""

    event: EventType = Field(default="referral.made", description="sent for the referred participant")
    referrer: str = Field(
        default="referrer", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="the data field naming the referrer"
    )
    qualify: EventType = Field(default="purchase.completed", description="the friend's event that qualifies")
    award: Award = Field(min_length=1, max_length=5, description="constant amounts paid to the referrer")
    hold: Duration = Field(default="P30D", description="how long the qualifying event must stand unrefunded")


class Setting(Strict):
    """A secret or setting named, never held: the document says where the server finds it."""

    env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$", description="an environment variable")


class SourceFetch(Strict):
    object: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="the CRM object type, e.g. deal")
    properties: list[str] = Field(min_length=1, max_length=100)
    token: Setting
    base_url: Setting | None = Field(default=None, description="default: the vendor's public API")


class SourceMapping(Strict):
    """One event per matching item; every field but ``type`` is CEL over item, object and headers."""

    when: Expression = "true"
    type: EventType
    id: Expression
    participant: Expression
    occurred_at: Expression | None = None
    reverses: Expression | None = None
    data: dict[str, Expression] = Field(default_factory=dict, max_length=50)


class Source(Strict):
    """A CRM's deliveries (docs/integrations.md): ``secret`` is what checks them, per ``kind``."""

    key: Key
    kind: Literal["hubspot", "pipedrive", "salesforce", "zoho", "webhook"]
    secret: Setting | None = None
    organization: Setting | None = Field(
        default=None, description="salesforce: the organization id its Outbound Messages must carry"
    )
    fetch: SourceFetch | None = None
    events: list[SourceMapping] = Field(min_length=1, max_length=50)


class AppliesTo(Strict):
    """What an experiment holds participants out of: one rule, one challenge, or the whole program."""

    rule: Key | None = None
    challenge: Key | None = None
    program: bool = Field(default=False, description="true: the whole program (every rule and challenge)")


class Experiment(Strict):
    """A holdout: a stable random share of participants (by a hash of ``salt`` and their id) scored silently."""

    key: Key
    name: str | None = Field(default=None, max_length=100)
    holdout: float = Field(gt=0, lt=1, description="the share of participants held out, e.g. 0.1")
    applies_to: AppliesTo
    metric: Key = Field(description="what the groups are compared on (its value per participant)")
    salt: str | None = Field(
        default=None, min_length=1, max_length=100, description="default: the key; a new salt draws new groups"
    )


class ProgramDocument(Strict):
    program: str = Field(pattern=PROGRAM_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    timezone: str = "UTC"
    close_grace: Duration = Field(default="PT1H", description="how long after a period ends it closes")
    currencies: list[Currency] = Field(min_length=1, max_length=20)
    metrics: list[Metric] = Field(default_factory=list, max_length=100)
    rules: list[Rule] = Field(default_factory=list, max_length=500)
    levels: Levels | None = None
    badges: list[Badge] = Field(default_factory=list, max_length=200)
    streaks: list[Streak] = Field(default_factory=list, max_length=50)
    challenges: list[Challenge] = Field(default_factory=list, max_length=200)
    leaderboards: list[Leaderboard] = Field(default_factory=list, max_length=100)
    tiers: Tiers | None = None
    rewards: list[Reward] = Field(default_factory=list, max_length=1000)
    kudos: Kudos | None = None
    referrals: Referrals | None = None
    sources: list[Source] = Field(default_factory=list, max_length=20)
    personal: dict[EventType, list[PersonalField]] | None = Field(
        default=None,
        max_length=100,
        description="per event type, the data fields erasure deletes (e.g. [data.email]); scoring may not read them",
    )
    experiments: list[Experiment] = Field(default_factory=list, max_length=20)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    def currency(self, key: str) -> Currency | None:
        return next((c for c in self.currencies if c.key == key), None)

    def metric(self, key: str) -> Metric | None:
        return next((m for m in self.metrics if m.key == key), None)
