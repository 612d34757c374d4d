"""The rules of a program in plain language: what a participant reads to know how the game works."""

from __future__ import annotations

from typing import Any

from levelup.engine.experiments import held_out_by
from levelup.programs.compiled import PERIOD_WORDS, CompiledProgram
from levelup.programs.document import Badge, Challenge, Criterion, Currency, Experiment, Tiers

WINDOW_WORDS = {
    "day": "today",
    "week": "this week",
    "month": "this month",
    "quarter": "this quarter",
    "year": "this year",
    "all": "in all",
}


def _num(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,}"


def _window(window: str) -> str:
    if window.startswith("last_"):
        return f"in the last {window.split('_')[1]} days"
    return WINDOW_WORDS[window]


def _criterion(c: Criterion) -> str:
    return f"{_num(c.at_least)} {c.metric} {_window(c.window)}"


def _badge(badge: Badge) -> dict[str, Any]:
    again = f", again each {badge.repeatable}" if badge.repeatable else ""
    return {
        "key": badge.key,
        "name": badge.name,
        "repeatable": badge.repeatable,
        "grades": [
            {
                "name": g.name,
                "when": [c.model_dump() for c in g.when],
                "explain": f"{g.name}: " + " and ".join(_criterion(c) for c in g.when) + again,
            }
            for g in badge.grades
        ],
    }


def _reward(award: dict[str, Any] | None) -> str:
    return " and ".join(f"{amount} {currency}" for currency, amount in (award or {}).items())


def _challenge(c: Challenge) -> str:
    when = f"each {c.every}" if c.every else (f"from {c.start} to {c.end}" if c.start and c.end else "once")
    if c.kind == "quest":
        steps = ", then ".join(f"{_num(s.target)} {s.metric}" for s in c.steps or [])
        return f"Quest: {steps}; reward {_reward(c.reward)}"
    if c.kind == "competition":
        prizes = ", ".join(f"#{p.rank}: {_reward(p.award)}" for p in c.prizes or [])
        if c.format == "race":
            return (
                f"Race: the first to reach {_num(c.target or 0)} {c.metric} {when}; prizes {prizes}, by finishing order"
            )
        if c.format == "duel":
            pair = " vs ".join(c.teams or []) if c.mode == "team" else " vs ".join(c.entrants or [])
            return f"Duel {pair} on {c.metric} {when}; prize {prizes}, paid when the period closes"
        return f"Competition on {c.metric} {when}; prizes {prizes}, paid when the period closes"
    who = "your team together" if c.mode == "team" else "you"
    paid = "when the period closes, to each member" if c.mode == "team" else "the moment you reach it"
    reward = f"; reward {_reward(c.reward)} {paid}" if c.reward else ""
    return f"Reach {_num(c.target or 0)} {c.metric} ({who}) {when}{reward}"


def _per(period: str) -> str:
    """ "a month", or "in all" for the all-time period."""
    return "in all" if period == "all" else PERIOD_WORDS[period]


def _currency(c: Currency) -> str:
    parts = [f"{c.name}: {'spendable on rewards' if c.spendable else 'measures progress, not spendable'}"]
    if c.pending:
        parts.append(f"spendable {c.pending} after it is earned")
    if c.expires_after:
        parts.append(f"each credit expires {c.expires_after} after it was earned, the soonest-expiring spent first")
    if c.velocity:
        parts.append(f"at most {c.velocity.max:,} earned from rules {_per(c.velocity.per)}")
    return "; ".join(parts)


def _tiers(tiers: Tiers) -> str:
    steps = ", ".join(
        f"{s.name} at {_num(s.at)}"
        + (f" (×{', ×'.join(f'{m:g} {c}' for c, m in s.multiplier.items())})" if s.multiplier else "")
        for s in tiers.steps
    )
    drop = "follows the window" if tiers.demotion == "rerate" else f"drops at most one tier {_per(tiers.review)}"
    return f"Tier on {tiers.metric} {_window(tiers.window)}: {steps}; it {drop}; multipliers apply to each rule's award"


def how_to_play(program: CompiledProgram, participant: str | None = None) -> dict[str, Any]:
    """The program in plain language; for ``participant``, without the rules and challenges a holdout
    experiment keeps them out of (they are shown nothing of them)."""
    doc = program.doc

    def shown(holdouts: tuple[Experiment, ...] | None) -> bool:
        return participant is None or not holdouts or held_out_by(holdouts, participant) is None

    levels = None
    if doc.levels:
        on = doc.levels.currency or doc.levels.metric
        levels = {
            **doc.levels.model_dump(exclude_none=True),
            "explain": f"Levels climb on the lifetime {on} earned; spending never lowers a level, a reversal can: "
            + ", ".join(f"{s.name} at {s.at:,}" for s in doc.levels.steps),
        }
    return {
        "program": doc.program,
        "name": doc.name,
        "version": program.version,
        "timezone": doc.timezone,
        "currencies": [{**c.model_dump(exclude_none=True), "explain": _currency(c)} for c in doc.currencies],
        "ways_to_earn": [
            {
                "rule": rule.key,
                "event": rule.event,
                "awards": {a.currency: a.source for a in rule.awards},
                "cap": rule.cap.model_dump() if rule.cap else None,
                "cooldown_seconds": rule.cooldown_s,
                "explain": rule.explain,
            }
            for rule in program.rules
            if shown(program.rule_holdouts.get(rule.key))
        ],
        "levels": levels,
        "badges": [_badge(b) for b in doc.badges],
        "streaks": [
            {
                **s.model_dump(exclude_none=True),
                "explain": f"{_num(s.at_least)} {s.metric} each {s.period} in a row"
                + (f"; {s.grace} missed {s.period}(s) forgiven" if s.grace else ""),
            }
            for s in doc.streaks
        ],
        "challenges": [
            {"key": c.key, "kind": c.kind, "explain": _challenge(c)}
            for c in doc.challenges
            if not c.draft and shown(program.challenge_holdouts.get(c.key))
        ],
        "tiers": {**doc.tiers.model_dump(exclude_none=True), "explain": _tiers(doc.tiers)} if doc.tiers else None,
        "referrals": {
            **doc.referrals.model_dump(exclude_none=True),
            "explain": f"Refer a friend: {_reward(doc.referrals.award)} once their first {doc.referrals.qualify} "
            f"has stood unrefunded for {doc.referrals.hold}; not for yourself nor an existing customer",
        }
        if doc.referrals and shown(program.program_holdouts)
        else None,
        "leaderboards": [b.model_dump(exclude_none=True) for b in doc.leaderboards],
        "rewards": [r.model_dump(mode="json", exclude_none=True) for r in doc.rewards],
    }
