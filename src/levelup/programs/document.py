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

from pydantic import BaseModel, ConfigDict, Field, field_validator

KEY_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
PROGRAM_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
WINDOW_PATTERN = r"^(day|week|month|quarter|year|all|last_[1-9][0-9]{0,3}_days)$"
DURATION_PATTERN = r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$"
MAX_EXPRESSION_LENGTH = 1000

Key = Annotated[str, Field(pattern=KEY_PATTERN, description="identifier: lowercase letters, digits, _ . -")]
EventType = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$", max_length=100)]
Expression = Annotated[str, Field(min_length=1, max_length=MAX_EXPRESSION_LENGTH, description="a CEL expression")]
Window = Annotated[
    str, Field(pattern=WINDOW_PATTERN, description="day, week, month, quarter, year, all or last_N_days")
]
CalendarPeriod = Literal["day", "week", "month", "quarter", "year", "all"]
RepeatPeriod = Literal["day", "week", "month", "quarter", "year"]
Duration = Annotated[str, Field(pattern=DURATION_PATTERN, description="ISO 8601 duration: P365D, PT1H, P1DT12H")]
Amount = int | float | Expression
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

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Cap(Strict):
    max: int = Field(ge=1)
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
    at: int = Field(ge=0)


class Levels(Strict):
    currency: Key | None = None
    metric: Key | None = None
    steps: list[LevelStep] = Field(min_length=1, max_length=100)


class Criterion(Strict):
    metric: Key
    window: Window = "all"
    at_least: float


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
    at_least: float = 1
    grace: int = Field(default=0, ge=0, le=30)


class QuestStep(Strict):
    metric: Key
    target: float = Field(gt=0)
    name: str | None = Field(default=None, max_length=100)


class Prize(Strict):
    rank: int = Field(ge=1)
    award: Award


class Challenge(Strict):
    key: Key
    name: str | None = Field(default=None, max_length=100)
    kind: Literal["goal", "quest", "competition"] = "goal"
    metric: Key | None = None
    target: float | None = Field(default=None, gt=0)
    every: RepeatPeriod | None = None
    start: dt.date | None = None
    end: dt.date | None = Field(default=None, description="inclusive, in the program time zone")
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
    at: float = Field(ge=0)
    multiplier: dict[str, float] | None = None


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
    max: int = Field(ge=1)
    per: CalendarPeriod


class Requirement(Strict):
    tier: str | None = None
    level: str | None = None


class Reward(Strict):
    key: Key
    name: str = Field(min_length=1, max_length=200)
    cost: dict[str, int] = Field(min_length=1, max_length=1)
    stock: int | None = Field(default=None, ge=0)
    limit: Limit | None = None
    requires: Requirement | None = None
    starts: dt.date | None = None
    ends: dt.date | None = None


class KudosBudget(Strict):
    amount: int = Field(ge=1)
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
    key: Key
    kind: Literal["hubspot", "pipedrive", "salesforce", "zoho", "webhook"]
    secret: Setting | None = None
    fetch: SourceFetch | None = None
    events: list[SourceMapping] = Field(min_length=1, max_length=50)


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
