"""A program version made ready for the engine: expressions compiled, rules indexed by event type.

Built once per (program, version) and shared read-only, so scoring an event does
no parsing and no lookups beyond a dict access.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import cached_property

from levelup.metrics.periods import GRAINS, ROLLING, grain_of, period_keys, range_key
from levelup.programs.document import Cap, Challenge, Experiment, ProgramDocument, Rule, duration_seconds
from levelup.rules.expressions import Expression

SEGMENT_READ = re.compile(r"participant\s*(\.\s*segment\b|\[\s*[\"']segment[\"']\s*\])")
PERIOD_WORDS = {
    "day": "a day",
    "week": "a week",
    "month": "a month",
    "quarter": "a quarter",
    "year": "a year",
}


@dataclass(frozen=True)
class CompiledAward:
    currency: str
    constant: int | None
    expression: Expression | None

    @property
    def source(self) -> str:
        return str(self.constant) if self.expression is None else self.expression.source


@dataclass(frozen=True)
class CompiledRule:
    key: str
    event: str
    condition: Expression | None
    awards: tuple[CompiledAward, ...]
    cap: Cap | None
    cooldown_s: int | None
    explain: str

    @cached_property
    def counted_grains(self) -> tuple[str, ...]:
        """Periods whose award counters this rule needs: its cap's, and ``all`` for a cooldown."""
        grains = [self.cap.per] if self.cap else []
        if self.cooldown_s is not None and "all" not in grains:
            grains.append("all")
        return tuple(grains)

    @cached_property
    def source(self) -> str:
        """How its problems and notes name it."""
        return f"rule:{self.key}"

    @cached_property
    def entry_keys(self) -> dict[str, str]:
        """Per currency, the key of its award's ledger entry within the event."""
        return {a.currency: f"rule:{self.key}:{a.currency}" for a in self.awards}


@dataclass(frozen=True)
class Kept:
    """The periods of one metric that something reads, so the only ones stored: grains (indexes in
    ``GRAINS``) and one-off challenge ranges, of participant rows and of team rows."""

    person: tuple[int, ...] = ()
    team: tuple[int, ...] = ()
    person_ranges: frozenset[str] = frozenset()
    team_ranges: frozenset[str] = frozenset()

    def holds(self, period: str, kind: str) -> bool:
        """Whether a stored row of this metric is one that is kept (``kind``: "p" or "t")."""
        if period in (self.person_ranges if kind == "p" else self.team_ranges):
            return True
        try:
            index = GRAINS.index(grain_of(period))
        except ValueError:
            return False
        return index in (self.person if kind == "p" else self.team)


@dataclass(frozen=True)
class CompiledMetric:
    key: str
    event: str
    condition: Expression | None
    aggregate: str
    value: Expression | None


def explain_rule(source: Rule, awards: tuple[CompiledAward, ...], currency_names: dict[str, str]) -> str:
    """The rule's own explanation, or a sentence generated from it (caps and cooldowns included)."""
    if source.explain:
        return source.explain
    amounts = " and ".join(f"{a.source} {currency_names.get(a.currency, a.currency)}" for a in awards)
    text = f"{amounts} for each {source.event} event"
    if source.if_:
        text += f" when {source.if_}"
    if source.cap:
        per = "in all" if source.cap.per == "all" else PERIOD_WORDS[source.cap.per]
        text += f", at most {source.cap.max} {'time' if source.cap.max == 1 else 'times'} {per}"
    if source.cooldown:
        text += f", at most once every {source.cooldown}"
    return text


def compile_award(award: dict[str, int | float | str]) -> tuple[CompiledAward, ...]:
    return tuple(
        CompiledAward(c, None, Expression.compile(a)) if isinstance(a, str) else CompiledAward(c, int(a // 1), None)
        for c, a in award.items()
    )


class CompiledProgram:
    """One immutable program version, ready to score events."""

    def __init__(self, doc: ProgramDocument, version: int) -> None:
        self.doc = doc
        self.version = version
        self.key = doc.program
        self.timezone = doc.timezone
        names = {c.key: c.name for c in doc.currencies}
        rules: list[CompiledRule] = []
        for source in doc.rules:
            awards = compile_award(source.award)
            rules.append(
                CompiledRule(
                    key=source.key,
                    event=source.event,
                    condition=Expression.compile(source.if_) if source.if_ else None,
                    awards=awards,
                    cap=source.cap,
                    cooldown_s=duration_seconds(source.cooldown) if source.cooldown else None,
                    explain=explain_rule(source, awards, names),
                )
            )
        self.rules = tuple(rules)
        self.metrics = tuple(
            CompiledMetric(
                key=m.key,
                event=m.event,
                condition=Expression.compile(m.if_) if m.if_ else None,
                aggregate=m.aggregate,
                value=Expression.compile(m.value) if m.value else None,
            )
            for m in doc.metrics
        )
        self.rules_by_event: dict[str, tuple[CompiledRule, ...]] = {}
        for rule in self.rules:
            self.rules_by_event[rule.event] = (*self.rules_by_event.get(rule.event, ()), rule)
        self.metrics_by_event: dict[str, tuple[CompiledMetric, ...]] = {}
        for metric in self.metrics:
            self.metrics_by_event[metric.event] = (*self.metrics_by_event.get(metric.event, ()), metric)
        self.rules_by_key = {r.key: r for r in self.rules}
        self.metrics_by_key = {m.key: m for m in self.metrics}
        self.currencies = {c.key: c for c in doc.currencies}
        self.challenge_rewards = {c.key: compile_award(c.reward) for c in doc.challenges if c.reward}
        self.challenges = {c.key: c for c in doc.challenges}
        self.eligibility = {c.key: Expression.compile(c.eligible) for c in doc.challenges if c.eligible}
        # holdout experiments by what they hold participants out of (the whole program: every rule and challenge)
        whole = tuple(e for e in doc.experiments if e.applies_to.program)
        self.program_holdouts = whole  # also keep their members from referral payments (referrals.service)
        self.rule_holdouts: dict[str, tuple[Experiment, ...]] = {
            r.key: found for r in doc.rules if (found := (*whole, *_aimed(doc, "rule", r.key)))
        }
        self.challenge_holdouts: dict[str, tuple[Experiment, ...]] = {
            c.key: found for c in doc.challenges if (found := (*whole, *_aimed(doc, "challenge", c.key)))
        }
        self._ranges_on: dict[dt.date, tuple[str, ...]] = {}

    @cached_property
    def counter_grains(self) -> frozenset[str]:
        """Calendar grains whose rule counters the engine reads (caps, cooldowns, currency velocity caps)."""
        grains = {g for rule in self.rules for g in rule.counted_grains}
        return frozenset(grains | {c.velocity.per for c in self.doc.currencies if c.velocity})

    @cached_property
    def metric_grains(self) -> frozenset[str]:
        """Calendar grains whose metric values the engine reads: badge windows, streaks, goals, levels."""
        grains = {c.window for b in self.doc.badges for g in b.grades for c in g.when}
        grains |= {s.period for s in self.doc.streaks}
        grains |= {c.every for c in self.goals + self.quests if c.every}
        grains |= {"all" for c in self.goals + self.quests if c.every is None and c.start is None}
        if self.doc.levels is not None and self.doc.levels.metric is not None:
            grains.add("all")
        return frozenset(g for g in grains if g in GRAINS)

    @cached_property
    def read_metrics(self) -> frozenset[str]:
        """Metrics whose values the engine reads (badges, streaks, goals, levels on a metric)."""
        found = {c.metric for b in self.doc.badges for g in b.grades for c in g.when}
        found |= {s.metric for s in self.doc.streaks} | {c.metric for c in self.goals if c.metric}
        found |= {step.metric for c in self.quests for step in c.steps or ()}
        if self.doc.levels is not None and self.doc.levels.metric is not None:
            found.add(self.doc.levels.metric)
        return frozenset(found)

    @cached_property
    def kept(self) -> dict[str, Kept]:
        """Per metric, the periods something reads: badges, streaks, goals, quests, competitions, levels,
        tiers and leaderboards (a rolling window sums days). Only those are stored: the others would
        be rows written on every event that nothing ever reads. A new version that reads more has its
        metrics rebuilt from the event log when it is applied (``programs.service.apply``)."""
        wanted: dict[tuple[str, str], set[str]] = {}

        def read(metric: str | None, window: str, kind: str = "p") -> None:
            if metric is not None:
                wanted.setdefault((metric, kind), set()).add("day" if ROLLING.match(window) else window)

        doc = self.doc
        for badge in doc.badges:
            for grade in badge.grades:
                for criterion in grade.when:
                    read(criterion.metric, criterion.window)
        for streak in doc.streaks:
            read(streak.metric, streak.period)
        for c in doc.challenges:
            period = range_key(c.start, c.end) if c.start and c.end and not c.every else c.every or "all"
            for metric in [c.metric, *(step.metric for step in c.steps or ())]:
                read(metric, period)  # a team member's own progress is shown too
                if c.mode == "team":
                    read(metric, period, "t")
                if c.kind == "competition" and c.format == "race":
                    read(metric, "day")  # who reached the target first, day by day
        if doc.levels is not None:
            read(doc.levels.metric, "all")
        if doc.tiers is not None:
            read(doc.tiers.metric, doc.tiers.window)
        for experiment in doc.experiments:
            read(experiment.metric, "day")  # compared between groups over any window of days
        for board in doc.leaderboards:
            read(board.metric, board.window, "t" if board.by == "team" else "p")
        out: dict[str, Kept] = {}
        for metric in sorted({m for m, _ in wanted}):
            person, team = wanted.get((metric, "p"), set()), wanted.get((metric, "t"), set())
            out[metric] = Kept(
                tuple(i for i, g in enumerate(GRAINS) if g in person),
                tuple(i for i, g in enumerate(GRAINS) if g in team),
                frozenset(person - set(GRAINS)),
                frozenset(team - set(GRAINS)),
            )
        return out

    @cached_property
    def has_mechanics(self) -> bool:
        return bool(self.doc.badges or self.doc.streaks or self.goals or self.quests or self.doc.levels)

    @cached_property
    def mechanics_state(self) -> frozenset[str]:
        """Which per-participant mechanics state the engine reads: badges, completions, streaks, quests."""
        kinds = {"badges"} if self.doc.badges else set()
        kinds |= {"completions"} if self.goals or self.quests else set()
        kinds |= {"streaks"} if self.doc.streaks else set()
        kinds |= {"quests"} if self.quests else set()
        return frozenset(kinds)

    @cached_property
    def goals(self) -> tuple[Challenge, ...]:
        """Targets the engine judges as events arrive: individual goals, and races (whose finishing
        order is settled when the period closes). Team goals and rankings settle at close only."""
        return tuple(
            c
            for c in self.doc.challenges
            if (c.kind == "goal" and c.mode == "individual") or (c.kind == "competition" and c.format == "race")
        )

    @cached_property
    def quests(self) -> tuple[Challenge, ...]:
        return tuple(c for c in self.doc.challenges if c.kind == "quest")

    @cached_property
    def ranges(self) -> tuple[tuple[str, dt.date, dt.date], ...]:
        """One-off challenge periods (``start``..``end``): metrics are also kept per range."""
        found = {(range_key(c.start, c.end), c.start, c.end) for c in self.doc.challenges if c.start and c.end}
        return tuple(sorted(found))

    def ranges_on(self, day: dt.date) -> tuple[str, ...]:
        """The keys of the one-off ranges holding local ``day``; remembered, as every event of the day asks."""
        found = self._ranges_on.get(day)
        if found is None:
            if len(self._ranges_on) >= 8192:
                self._ranges_on.clear()
            found = self._ranges_on[day] = tuple(key for key, start, end in self.ranges if start <= day <= end)
        return found

    @cached_property
    def challenge_reads(self) -> frozenset[str]:
        """Metrics the individual goals and quests judged at scoring time read: nothing to judge otherwise."""
        found = {c.metric for c in self.goals if c.metric} | {s.metric for q in self.quests for s in q.steps or ()}
        return frozenset(found)

    @cached_property
    def badge_metrics(self) -> frozenset[str]:
        """Metrics any badge reads (``badge_reads``, all together)."""
        return frozenset().union(*self.badge_reads.values())

    @cached_property
    def level_marks(self) -> tuple[float, ...]:
        """The levels' thresholds, sorted: the level's name can change only when a value crosses one."""
        return tuple(sorted(s.at for s in self.doc.levels.steps)) if self.doc.levels else ()

    @cached_property
    def badge_reads(self) -> dict[str, frozenset[str]]:
        """Per badge, the metrics its grades read: it is judged only after an event that moved one."""
        return {b.key: frozenset(c.metric for g in b.grades for c in g.when) for b in self.doc.badges}

    def state_periods(self, day: dt.date) -> set[str]:
        """Period keys the engine reads for an event on local ``day``: rule counters and metrics."""
        keys = period_keys(day)
        wanted = {keys[GRAINS.index(g)] for g in self.counter_grains | self.metric_grains}
        wanted.update(self.ranges_on(day))
        return wanted

    @cached_property
    def expressions_by_event(self) -> dict[str, tuple[Expression, ...]]:
        """Per event type, the expressions its rules, metrics and challenge rewards evaluate."""
        out: dict[str, tuple[Expression, ...]] = {}
        # a goal's or quest's reward is computed on whichever event completes it: it may read any of them
        rewards = [a.expression for awards in self.challenge_rewards.values() for a in awards]
        for event_type in {*self.rules_by_event, *self.metrics_by_event}:
            expressions = [r.condition for r in self.rules_by_event.get(event_type, ())] + rewards
            expressions += [a.expression for r in self.rules_by_event.get(event_type, ()) for a in r.awards]
            for m in self.metrics_by_event.get(event_type, ()):
                expressions += [m.condition, m.value]
            out[event_type] = tuple(e for e in expressions if e is not None)
        return out

    @cached_property
    def variables_by_event(self) -> dict[str, frozenset[str]]:
        """Per event type, the variables its expressions read: only those are given to CEL."""
        return {
            event_type: frozenset().union(*(e.variables for e in expressions))
            for event_type, expressions in self.expressions_by_event.items()
        }

    @cached_property
    def fields_by_event(self) -> dict[str, dict[str, frozenset[str] | None]]:
        """Per event type, the fields of ``data`` and ``participant`` its expressions read (None: it may read
        the whole value): the activation converts only those, the bulk of an event's scoring time otherwise."""
        out: dict[str, dict[str, frozenset[str] | None]] = {}
        for event_type, expressions in self.expressions_by_event.items():
            roots: dict[str, frozenset[str] | None] = {}
            for root in ("data", "participant"):
                reads = [e.fields_read(root) for e in expressions if root in e.variables]
                known = [r for r in reads if r is not None]
                roots[root] = frozenset().union(*known) if len(known) == len(reads) else None
            out[event_type] = roots
        return out

    @cached_property
    def reads_segment(self) -> bool:
        """Whether a condition or amount reads ``participant.segment``: only then are segment assignments
        loaded for scoring and refreshed by the segments job."""
        doc = self.doc
        sources = [r.if_ for r in doc.rules] + [a for r in doc.rules for a in r.award.values() if isinstance(a, str)]
        sources += [m.if_ for m in doc.metrics] + [m.value for m in doc.metrics] + [c.eligible for c in doc.challenges]
        return any(SEGMENT_READ.search(s) for s in sources if isinstance(s, str))

    def multiplier(self, tier: str | None, currency: str) -> float:
        """The earning multiplier a tier gives on a currency (1 without tiers)."""
        if tier is None or self.doc.tiers is None:
            return 1.0
        step = next((s for s in self.doc.tiers.steps if s.name == tier), None)
        return (step.multiplier or {}).get(currency, 1.0) if step else 1.0


def _aimed(doc: ProgramDocument, kind: str, key: str) -> tuple[Experiment, ...]:
    """The experiments holding participants out of one rule or challenge."""
    return tuple(e for e in doc.experiments if getattr(e.applies_to, kind) == key)
