"""The rules of the game: one event, one participant's state, one program version → effects.

Pure: no clock, no I/O, no mutation of its inputs. Live ingestion, replay and
simulation all call :func:`score`, which is why they agree.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import math
from collections.abc import Mapping
from typing import Any

from levelup.engine import badges, goals, quests, referrals, streaks
from levelup.engine.clawback import CLAWBACK
from levelup.engine.experiments import held_out_by, kept_out
from levelup.engine.levels import level_name
from levelup.engine.model import (
    WHOLE,
    Completion,
    CounterDelta,
    Effects,
    Event,
    LedgerEffect,
    LevelChange,
    MetricDelta,
    MetricSample,
    ParticipantState,
    Problem,
    ReversedEvent,
    StreakChange,
    TierReview,
)
from levelup.engine.positions import Position, PositionDelta, apply, move
from levelup.engine.tiers import counts_in_window, rerate
from levelup.metrics.periods import GRAINS, local_date, period_key, period_keys
from levelup.programs.compiled import CompiledAward, CompiledProgram, CompiledRule, Kept
from levelup.rules.expressions import Activation, condition_holds, whole_amount

#: A sum or count metric takes values up to this size an event, so its totals stay finite and exact
#: enough for any real history (docs/program-document.md, Expressions: Bounds).
MAX_METRIC_VALUE = 1e15


def activation_for(program: CompiledProgram, state: ParticipantState, event: Event) -> Activation:
    """The event and participant as CEL sees them, limited to what this event type's expressions read."""
    wanted = program.variables_by_event.get(event.type, frozenset())
    variables: dict[str, Any] = {}
    if "id" in wanted:
        variables["id"] = event.id
    if "type" in wanted:
        variables["type"] = event.type
    if "data" in wanted:
        variables["data"] = event.data
    if "occurred_at" in wanted:
        variables["occurred_at"] = event.occurred_at
    if "participant" in wanted:
        variables["participant"] = state.view(event.occurred_at)
    return Activation(variables, program.fields_by_event.get(event.type))


def metric_contributions(
    program: CompiledProgram,
    event: Event,
    teams: tuple[str, ...],
    activation: Activation,
    effects: Effects,
    kept: Mapping[str, Kept] | None = None,
    day: dt.date | None = None,
) -> None:
    """What the event adds to each metric, in every period holding its time, for it and its teams; with
    ``kept``, only in the periods kept (``CompiledProgram.kept``: the others are never read). ``day``: the
    event's local date, when the caller has it."""
    metrics = program.metrics_by_event.get(event.type)
    if not metrics:
        return
    if day is None:
        day = local_date(event.occurred_at, program.timezone)
    keys = period_keys(day)
    ranges = program.ranges_on(day)
    periods: tuple[str, ...] = (*keys, *ranges)
    subjects: tuple[str | None, ...] = (None, *teams)
    for metric in metrics:
        holds, problem = condition_holds(metric.condition, activation)
        if problem:
            effects.problems.append(Problem(f"metric:{metric.key}", problem))
        if not holds:
            continue
        value: Any = 1.0
        if metric.value is not None:
            try:
                value = metric.value.evaluate(activation)
            except Exception as exc:
                effects.problems.append(Problem(f"metric:{metric.key}", f"value failed: {exc}"))
                continue
        if metric.aggregate in ("count", "sum"):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                effects.problems.append(Problem(f"metric:{metric.key}", f"value {value!r} is not a number"))
                continue
            if abs(value) > MAX_METRIC_VALUE:
                effects.problems.append(
                    Problem(f"metric:{metric.key}", f"value {value} is beyond ±{MAX_METRIC_VALUE:g}")
                )
                continue
            if kept is None:
                effects.metrics.extend(
                    MetricDelta(metric.key, period, float(value), team) for team in subjects for period in periods
                )
                continue
            wanted = kept.get(metric.key)
            if wanted is None:
                continue
            number = float(value)
            for team in subjects if wanted.team or wanted.team_ranges else (None,):
                grains, in_ranges = (
                    (wanted.person, wanted.person_ranges) if team is None else (wanted.team, wanted.team_ranges)
                )
                effects.metrics.extend([MetricDelta(metric.key, keys[i], number, team) for i in grains])
                if in_ranges and ranges:
                    effects.metrics.extend([MetricDelta(metric.key, r, number, team) for r in ranges if r in in_ranges])
        else:
            number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
            if metric.aggregate == "max" and (number != value or not math.isfinite(number)):
                effects.problems.append(Problem(f"metric:{metric.key}", f"value {value!r} is not a number"))
                continue
            try:
                value_key = json.dumps(value, sort_keys=True, default=str)[:200]
            except TypeError:  # a CEL map whose keys mix types ({1: 'a', 'b': 2}) has no order to write it in
                effects.problems.append(Problem(f"metric:{metric.key}", f"value {value!r} has keys of mixed types"))
                continue
            effects.samples.extend(
                MetricSample(metric.key, periods[0], number, value_key, 1, team) for team in subjects
            )


class _Scratch(dict[str, Position]):
    """The event's positions as its entries move them, each copied from the state's on first use; what they
    moved is read off them once the event is scored (:func:`_moved`)."""

    __slots__ = ("held",)

    def __init__(self, held: Mapping[str, Position]) -> None:
        super().__init__()
        self.held = held

    def __missing__(self, currency: str) -> Position:
        had = self.held.get(currency)
        position = self[currency] = Position(had.available, had.arrears, had.earned) if had else Position()
        return position


def _book(
    effects: Effects,
    scratch: _Scratch,
    key: str,
    currency: str,
    amount: int,
    kind: str,
    rule: str | None,
    rule_version: int | None,
    explain: str,
    at: dt.datetime,
) -> None:
    """Append an entry and move the scratch position, so later entries of this event see it."""
    position = scratch[currency]
    delta = move(position, amount, kind)
    apply(position, delta)
    effects.ledger.append(LedgerEffect(key, currency, amount, kind, rule, rule_version, explain, at, delta.available))


def _moved(scratch: _Scratch) -> dict[str, PositionDelta]:
    """Per currency the event's entries moved, what they did to the position (the engine never moves pending)."""
    out = {}
    for currency, now in scratch.items():
        was = scratch.held.get(currency) or Position()
        out[currency] = PositionDelta(now.available - was.available, now.arrears - was.arrears, now.earned - was.earned)
    return out


def _amounts(
    awards: tuple[CompiledAward, ...],
    activation: Activation,
    effects: Effects,
    source: str,
    program: CompiledProgram | None = None,
    tier: str | None = None,
) -> list[tuple[str, int]]:
    """Whole positive amounts per currency, times the ``tier``'s multiplier in ``program`` when given (rule
    awards); a failing expression awards nothing and is recorded."""
    out = []
    for award in awards:
        try:
            base = (
                whole_amount(award.expression.evaluate(activation))
                if award.expression is not None
                else int(award.constant or 0)
            )
        except Exception as exc:
            effects.problems.append(Problem(source, f"award {award.currency} failed: {exc}"))
            continue
        amount = math.floor(base * program.multiplier(tier, award.currency)) if program is not None else base
        if amount > 0:
            out.append((award.currency, amount))
    return out


def _blocked(rule: CompiledRule, state: ParticipantState, event: Event, periods: tuple[str, ...]) -> str | None:
    if rule.cap is not None:
        period = periods[GRAINS.index(rule.cap.per)]
        if state.counters.get((rule.key, period), 0) >= rule.cap.max:
            return f"rule {rule.key}: cap of {rule.cap.max} per {rule.cap.per} reached ({period})"
    if rule.cooldown_s is not None and rule.key in state.last_award:
        gap = abs((event.occurred_at - state.last_award[rule.key]).total_seconds())
        if gap < rule.cooldown_s:
            return f"rule {rule.key}: cooldown of {rule.cooldown_s}s since the last award"
    return None


def _apply_rules(
    program: CompiledProgram,
    state: ParticipantState,
    event: Event,
    activation: Activation,
    effects: Effects,
    scratch: _Scratch,
    day: dt.date,
) -> None:
    rules = program.rules_by_event.get(event.type)
    if not rules:
        return
    if state.status != "active":
        effects.notes.append(f"participant is {state.status}: no awards")
        return
    periods = period_keys(day)
    for rule in rules:
        holds, problem = condition_holds(rule.condition, activation)
        if problem:
            effects.problems.append(Problem(rule.source, problem))
        if not holds:
            continue
        blocked = _blocked(rule, state, event, periods)
        if blocked:
            effects.notes.append(blocked)
            continue
        holdouts = program.rule_holdouts.get(rule.key) if program.rule_holdouts else None
        if holdouts and (experiment := held_out_by(holdouts, state.id)) is not None:
            effects.notes.append(f"rule {rule.key}: held out by experiment {experiment} (scored silently)")
            continue
        awarded = _within_velocity(
            program,
            state,
            effects,
            periods,
            _amounts(rule.awards, activation, effects, rule.source, program, state.tier),
        )
        for currency, amount in awarded:
            _book(
                effects,
                scratch,
                rule.entry_keys[currency],
                currency,
                amount,
                "rule",
                rule.key,
                program.version,
                rule.explain,
                event.occurred_at,
            )
        if awarded:
            for grain in rule.counted_grains:
                last = event.occurred_at if grain == "all" and rule.cooldown_s is not None else None
                effects.counters.append(CounterDelta(rule.key, periods[GRAINS.index(grain)], 1, last))


def velocity_key(currency: str) -> str:
    """The rule-counter row that holds how much of ``currency`` rules credited in a period."""
    return f"velocity:{currency}"


def _within_velocity(
    program: CompiledProgram,
    state: ParticipantState,
    effects: Effects,
    periods: tuple[str, ...],
    amounts: list[tuple[str, int]],
) -> list[tuple[str, int]]:
    """Clip rule awards to the currency's velocity cap (value per period, not count): what is over is noted."""
    out = []
    for currency, amount in amounts:
        cap = program.currencies[currency].velocity
        if cap is None:
            out.append((currency, amount))
            continue
        key = (velocity_key(currency), periods[GRAINS.index(cap.per)])
        used = state.counters.get(key, 0) + sum(c.delta for c in effects.counters if (c.rule, c.period) == key)
        allowed = max(0, min(amount, cap.max - used))
        if allowed < amount:
            effects.notes.append(
                f"velocity cap of {cap.max} {currency} per {cap.per} reached ({key[1]}): {amount - allowed} not awarded"
            )
        if allowed:
            effects.counters.append(CounterDelta(key[0], key[1], allowed))
            out.append((currency, allowed))
    return out


def _reverse(
    reversed_event: ReversedEvent,
    original: CompiledProgram,
    state: ParticipantState,
    event: Event,
    effects: Effects,
    scratch: _Scratch,
    kept: Mapping[str, Kept] | None,
) -> None:
    """Undo an earlier event, or a share of it (a partial refund), with compensating records: never by deleting.

    A share takes back ``floor(amount × refunded after) − floor(amount × refunded before)`` of each
    award, so partial refunds that add up to the whole take back exactly what was awarded, and
    scales ``sum`` metrics; counts, maxima and distinct values (and rule caps) are undone only by
    the refund that completes the whole.
    """
    before = event.reverses
    done, now = reversed_event.refunded, reversed_event.refunded + event.share
    whole = now == WHOLE
    what = (
        "clawback"  # an admin took it back (levelup.events.clawback), audited: the ledger says so
        if event.type == CLAWBACK
        else "reversal"
        if event.share == WHOLE
        else f"refund of {event.share / WHOLE:.6g}"
    )
    # rule awards are undone here; a goal's reward follows its completion (see _settle_goal)
    for entry in (e for e in reversed_event.entries if e.kind == "rule"):
        amount = entry.amount * now // WHOLE - entry.amount * done // WHOLE
        if amount == 0:
            continue
        _book(
            effects,
            scratch,
            f"reversal:{entry.key}",
            entry.currency,
            -amount,
            "reversal",
            entry.rule,
            entry.rule_version,
            f"{what} of event {before}: {entry.explain}",
            event.occurred_at,
        )
    undone = Effects(reversed_event.event, original.version, reversed_event.teams)
    old = reversed_event.event
    metric_contributions(original, old, reversed_event.teams, activation_for(original, state, old), undone, kept)
    scale = event.share / WHOLE
    for m in undone.metrics:
        if original.metrics_by_key[m.metric].aggregate == "sum":
            effects.metrics.append(MetricDelta(m.metric, m.period, -m.delta * scale, m.team))
        elif whole:
            effects.metrics.append(MetricDelta(m.metric, m.period, -m.delta, m.team))
    if not whole:
        return
    effects.samples.extend(
        MetricSample(s.metric, s.day, s.value, s.value_key, -s.occurrences, s.team) for s in undone.samples
    )
    periods = period_keys(local_date(old.occurred_at, original.timezone))
    for entry in (e for e in reversed_event.entries if e.kind == "rule"):
        cap = original.currencies[entry.currency].velocity if entry.currency in original.currencies else None
        if cap is not None:  # the whole award leaves the velocity budget of the period it was earned in
            effects.counters.append(
                CounterDelta(velocity_key(entry.currency), periods[GRAINS.index(cap.per)], -entry.amount)
            )
    for rule_key in dict.fromkeys(e.rule for e in reversed_event.entries if e.kind == "rule" and e.rule):
        rule = original.rules_by_key.get(rule_key)
        for grain in rule.counted_grains if rule else ():
            effects.counters.append(CounterDelta(rule_key, periods[GRAINS.index(grain)], -1))


def score(
    program: CompiledProgram,
    state: ParticipantState,
    event: Event,
    reversed_event: ReversedEvent | None = None,
    original: CompiledProgram | None = None,
    today: dt.date | None = None,
    kept: Mapping[str, Kept] | None = None,
) -> Effects:
    """Everything one event causes for its participant. ``original`` is the version a reversed event was
    scored with (default: ``program``); ``today`` (the local date the batch is received) is the day tier
    windows are judged on (None: tiers are not reviewed); ``kept``: the metric periods stored (the
    version in force decides, for a reversal too, so what is undone is what was stored; None: all)."""
    referrals.check(program.doc.referrals, event)
    effects = Effects(event, program.version, state.teams, state.tier, state.status == "suspended")
    scratch = _Scratch(state.positions)
    activation = activation_for(program, state, event)
    day = local_date(event.occurred_at, program.timezone)  # once: each part below reads it
    if reversed_event is not None:
        _reverse(reversed_event, original or program, state, event, effects, scratch, kept)
        effects.refunded = reversed_event.refunded + event.share
    undone_count = len(effects.metrics)
    metric_contributions(program, event, state.teams, activation, effects, kept, day)
    _apply_rules(program, state, event, activation, effects, scratch, day)
    if program.metric_grains or program.ranges:
        _mechanics(program, state, event, reversed_event, activation, effects, scratch, day, undone_count)
    if today is not None:
        _review_tier(program, state, effects, today)
    if program.doc.referrals is not None:
        effects.referral = referrals.progress(program.doc.referrals, state, event, effects.refunded)
        effects.qualifies = event.type == program.doc.referrals.qualify
    if scratch:
        effects.positions = _moved(scratch)
    return effects


def _review_tier(program: CompiledProgram, state: ParticipantState, effects: Effects, today: dt.date) -> None:
    """Re-rate the tier after an event that moved its metric, so the next event earns with the new multiplier."""
    tiers = program.doc.tiers
    if tiers is None or state.tier_standing is None or state.tier_value is None:
        return
    moved = [m for m in effects.metrics if m.team is None and m.metric == tiers.metric]
    if not moved:
        return
    value = state.tier_value + sum(m.delta for m in moved if counts_in_window(tiers, m.period, today))
    standing, change = rerate(tiers, value, state.tier_standing, today)
    effects.tier_review = TierReview(value, standing, change)


def _settle_goal(
    program: CompiledProgram,
    change: Completion,
    event: Event,
    activation: Activation,
    effects: Effects,
    scratch: _Scratch,
    *,
    paying: bool,
) -> Completion:
    """Pay a goal's reward (none for a draft), or take back what was paid when a reversal undoes it."""
    challenge = program.challenges[change.challenge]
    name = challenge.name or challenge.key
    if not change.completed:
        for currency, amount in change.reward:
            _book(
                effects,
                scratch,
                f"challenge-undone:{challenge.key}:{change.period}:{currency}",
                currency,
                -amount,
                "reversal",
                None,
                program.version,
                f"challenge {name} ({change.period}) undone by event {event.id}",
                event.occurred_at,
            )
        return change
    if challenge.draft or not paying:
        return change  # a draft is scored silently, a suspended participant earns nothing: completion, no reward
    paid = _amounts(program.challenge_rewards.get(challenge.key, ()), activation, effects, f"challenge:{challenge.key}")
    for currency, amount in paid:
        _book(
            effects,
            scratch,
            f"challenge:{challenge.key}:{change.period}:{currency}",
            currency,
            amount,
            "challenge",
            None,
            program.version,
            f"quest {name} complete ({change.period})"
            if challenge.kind == "quest"
            else f"challenge {name}: {change.target:g} reached ({change.period})",
            event.occurred_at,
        )
    return change._replace(reward=tuple(paid))


def _mechanics(
    program: CompiledProgram,
    state: ParticipantState,
    event: Event,
    reversed_event: ReversedEvent | None,
    activation: Activation,
    effects: Effects,
    scratch: _Scratch,
    day: dt.date,
    undone_count: int = 0,
) -> None:
    """Goals, badges, streaks and levels, judged on metric values after this event
    (``effects.metrics[:undone_count]`` are a reversal's undoing of the reversed event).

    Each of goals, quests, badges and streaks is judged only when a metric it reads moved (``touched``);
    so metrics none of them reads are left out of ``own``, and an event that moves none skips them all.

    A participant a holdout experiment keeps out of the whole program (in this version, the one scoring the
    event, as for challenge holdouts) is shown nothing: no badge, no streak, no level change, granted or
    taken back (so a reversal has nothing to undo that was never granted); their metrics count as before."""
    silent = kept_out(program.program_holdouts, state.id)
    read = program.read_metrics
    own: dict[tuple[str, str], float] = {}
    for m in effects.metrics:
        if m.team is None and m.metric in read:
            key = (m.metric, m.period)
            own[key] = own.get(key, 0.0) + m.delta

    def after(metric: str, period: str) -> float:
        return state.metrics.get((metric, period), 0.0) + own.get((metric, period), 0.0)

    touched = {metric for metric, _ in own}
    if touched:
        days: tuple[dt.date, ...] = (day,)
        if reversed_event is not None:
            days = tuple(dict.fromkeys((day, local_date(reversed_event.event.occurred_at, program.timezone))))
        # the state's own dicts, copied on the first change only (most events change none of them)
        completions = state.completions
        progress = state.quests
        undone: dict[tuple[str, str], float] = {}  # what a reversal took off each metric
        for m in effects.metrics[:undone_count] if undone_count else ():
            if m.team is None:
                undone[(m.metric, m.period)] = undone.get((m.metric, m.period), 0.0) + m.delta
        challenged = not touched.isdisjoint(program.challenge_reads)
        for when in days if challenged else ():
            undo = reversed_event is not None
            done = goals.evaluate(
                program.goals,
                program.eligibility,
                state,
                completions,
                when,
                after,
                touched,
                may_undo=undo,
                holdouts=program.challenge_holdouts,
                moment=event.occurred_at,
            )
            for change in quests.evaluate(
                program.quests,
                program.eligibility,
                state,
                progress,
                when,
                after,
                touched,
                event.seq,
                undone,
                reversed_event.event.seq if reversed_event is not None else None,
                holdouts=program.challenge_holdouts,
                moment=event.occurred_at,
            ):
                effects.quests.append(change)
                progress = progress if progress is not state.quests else dict(progress)
                progress[(change.challenge, change.period)] = change.baselines
                paid = completions.get((change.challenge, change.period))
                steps_done, steps = len(change.baselines) - 1, len(program.challenges[change.challenge].steps or ())
                if change.complete and paid is None:
                    done.append(Completion(change.challenge, change.period, steps_done, steps))
                elif not change.complete and paid is not None:
                    done.append(
                        Completion(change.challenge, change.period, steps_done, steps, completed=False, reward=paid)
                    )
            for goal in done:
                settled = _settle_goal(
                    program, goal, event, activation, effects, scratch, paying=state.status == "active"
                )
                effects.completions.append(settled)
                completions = completions if completions is not state.completions else dict(completions)
                if settled.completed:
                    completions[(settled.challenge, settled.period)] = settled.reward
                else:
                    completions.pop((settled.challenge, settled.period), None)
        held = state.badges
        for when in days if not silent and not touched.isdisjoint(program.badge_metrics) else ():
            for badge in badges.evaluate(
                program.doc.badges,
                held,
                when,
                after,
                touched,
                may_revoke=reversed_event is not None,
                reads=program.badge_reads,
            ):
                effects.badges.append(badge)
                held = held if held is not state.badges else set(held)
                (held.add if badge.granted else held.discard)((badge.badge, badge.grade, badge.period))
        for streak in () if silent else program.doc.streaks:
            if streak.metric not in touched:
                continue
            periods, _ = state.streaks.get(streak.key, ([], 0))
            for when in days:
                point = streaks.ordinal(streak.period, when)
                qualifies = after(streak.metric, period_key(streak.period, when)) >= streak.at_least
                if qualifies == (point in periods):
                    continue
                periods = streaks.with_period(periods, point, qualifies)
                found = streaks.runs(periods, streak.grace)
                run = next((r for r in found if r[0] <= point <= r[1]), None)
                best = streaks.best(found)
                effects.streaks.append(StreakChange(streak.key, periods, best, run[2] if run and qualifies else 0))
    levels = program.doc.levels
    if levels is not None and not silent:
        was: float
        now: float
        if levels.currency is not None:
            was = state.positions[levels.currency].earned if levels.currency in state.positions else 0
            now = scratch[levels.currency].earned if levels.currency in scratch else was
        else:
            assert levels.metric is not None
            was = state.metrics.get((levels.metric, "all"), 0.0)
            now = after(levels.metric, "all")
        marks = program.level_marks
        if bisect.bisect_right(marks, was) != bisect.bisect_right(marks, now):  # a step's threshold crossed
            before_name, after_name = level_name(levels, was), level_name(levels, now)
            if before_name != after_name:
                effects.level = LevelChange(before_name, after_name, now > was)
