"""Still possible: for each open individual competition, what each participant needs for each prize rank,
and the chance of getting there at their own pace — the nudge that keeps the middle of the board playing.

The gap to rank r is to the value the r-th best of the *others* holds now (ties share a rank, so equalling
it is enough); a race's gap is to its target. The chance assumes the participant goes on as they went:
their events of the metric's type since the competition began, over the days elapsed, give a daily rate
λ; over the days left they send N ~ Poisson(λ × days left) more events, each worth their average so far
(value ÷ events). So the chance of closing a gap g is P(N ≥ ⌈g ÷ average⌉) (exactly below 1,000 events,
by the normal approximation with continuity correction above). Others are taken as they stand: it is a
gap to the current holder, not a forecast of the whole board. A team competition is read the same way over
the teams' values, its pace from the events of the team's current members (a team race is not covered).
The board is the stored totals, to the last event: an ``as_of`` before events it already counts is refused.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, exists, func, select

from levelup.challenges.closing import participants_taking_part, race_finishers
from levelup.engine.goals import goal_period
from levelup.errors import FieldError, Invalid
from levelup.metrics.periods import local_date, period_dates, zone
from levelup.programs.compiled import CompiledProgram
from levelup.programs.document import Challenge
from levelup.programs.service import ProgramRecord
from levelup.storage import tables as t

EXACT = 1000  # below this many events (needed or expected), the Poisson tail is summed exactly
DAY = 86400.0


def poisson_at_least(k: int, mu: float) -> float:
    """P(N ≥ k) for N ~ Poisson(mu)."""
    if k <= 0:
        return 1.0
    if mu <= 0:
        return 0.0
    if k > EXACT or mu > EXACT:
        z = (k - 0.5 - mu) / math.sqrt(mu)
        return 0.5 * math.erfc(z / math.sqrt(2))
    below = sum(math.exp(i * math.log(mu) - mu - math.lgamma(i + 1)) for i in range(k))
    return min(1.0, max(0.0, 1.0 - below))


def _bounds(challenge: Challenge, today: dt.date, timezone: str) -> tuple[str, dt.datetime, dt.datetime] | None:
    """The open period of a competition on ``today`` (its key, first and end instants), or None."""
    key = goal_period(challenge, today)
    if key is None:
        return None
    if challenge.every:
        dates = period_dates(key)
    elif challenge.start and challenge.end:
        dates = (challenge.start, challenge.end)
    else:
        return None  # an all-time competition never ends: there is no time left to measure
    assert dates is not None
    first = dt.datetime.combine(dates[0], dt.time(), zone(timezone)).astimezone(dt.UTC)
    after = dt.datetime.combine(dates[1] + dt.timedelta(days=1), dt.time(), zone(timezone)).astimezone(dt.UTC)
    return key, first, after


def _standing(
    connection: Connection, program_id: int, compiled: CompiledProgram, challenge: Challenge, period: str
) -> list[tuple[int, str, float]]:
    """(participant or team id, external id, value) of those taking part with a value, best first."""
    m = t.metric_totals.c
    team = challenge.mode == "team"
    subjects = t.teams if team else t.participants
    query = (
        select(subjects.c.id, subjects.c.external_id, m.value)
        .join(subjects, subjects.c.id == m.subject_id)
        .where(m.program_id == program_id, m.metric == challenge.metric, m.period == period)
        .where(m.subject_kind == ("t" if team else "p"))
        .order_by(m.value.desc(), subjects.c.external_id)
    )
    rows = [(int(i), e, float(v)) for i, e, v in connection.execute(query)]
    if team:
        return [r for r in rows if not challenge.teams or r[1] in challenge.teams]
    if challenge.teams or challenge.entrants or challenge.eligible:
        admitted = participants_taking_part(connection, program_id, compiled, challenge, [r[0] for r in rows])
        rows = [r for r in rows if r[0] in admitted]
    return rows


def _counted(
    program_id: int, kind: str, ids: list[int], window: tuple[dt.datetime, dt.datetime], *, teams: bool
) -> tuple[ColumnElement[int], ColumnElement[bool]]:
    """The subject column and the condition of the events of ``kind`` in the window that still count (no
    reversal, not reversed), of the participants ``ids``, or of the teams ``ids`` by their current members."""
    e, r, mb = t.events.c, t.reversals.c, t.memberships.c
    undone = exists().where(r.program_id == program_id, r.reversed_event == e.event_id)
    subject = mb.team_id if teams else e.participant_id
    condition = and_(
        subject.in_(ids),
        e.type == kind,
        e.occurred_at >= window[0],
        e.occurred_at < window[1],
        e.reverses.is_(None),
        ~undone,
    )
    return subject, condition


def _events(
    connection: Connection,
    program_id: int,
    kind: str,
    ids: list[int],
    window: tuple[dt.datetime, dt.datetime],
    *,
    teams: bool,
) -> dict[int, int]:
    """How many events of ``kind`` that still count lie in the window, per participant (or team)."""
    subject, condition = _counted(program_id, kind, ids, window, teams=teams)
    query = select(subject, func.count()).where(condition)
    if teams:
        query = query.join(t.memberships, t.memberships.c.participant_id == t.events.c.participant_id)
    return {int(i): int(n) for i, n in connection.execute(query.group_by(subject))}


def _last(
    connection: Connection,
    program_id: int,
    kind: str,
    ids: list[int],
    window: tuple[dt.datetime, dt.datetime],
    *,
    teams: bool,
) -> dt.datetime | None:
    """The latest event of ``kind`` that still counts in the window, of these participants (or teams)."""
    e = t.events.c
    _, condition = _counted(program_id, kind, ids, window, teams=teams)
    query = select(e.occurred_at).where(condition).order_by(e.occurred_at.desc()).limit(1)
    if teams:
        query = query.join(t.memberships, t.memberships.c.participant_id == e.participant_id)
    found: dt.datetime | None = connection.execute(query).scalar_one_or_none()
    return found


def _competition(
    connection: Connection,
    program: ProgramRecord,
    compiled: CompiledProgram,
    challenge: Challenge,
    as_of: dt.datetime,
    participant: str | None,
    limit: int,
) -> dict[str, Any] | None:
    bounds = _bounds(challenge, local_date(as_of, compiled.timezone), compiled.timezone)
    if bounds is None or challenge.metric is None or (challenge.mode == "team" and challenge.format == "race"):
        return None
    period, first, after = bounds
    elapsed = max((as_of - first).total_seconds() / DAY, 1 / 24)  # at least an hour: a rate, not a division by 0
    left = max((after - as_of).total_seconds() / DAY, 0.0)
    standing = _standing(connection, program.id, compiled, challenge, period)
    ranks = sorted({p.rank for p in challenge.prizes or []})
    race = challenge.format == "race"
    places = (
        {row.id: place for place, row in race_finishers(connection, program.id, compiled, challenge, period)}
        if race
        else {}
    )
    if participant is not None:
        listed = [r for r in standing if r[1] == participant]
        if not listed:
            subjects = t.teams if challenge.mode == "team" else t.participants
            found = connection.execute(
                select(subjects.c.id).where(subjects.c.program_id == program.id, subjects.c.external_id == participant)
            ).scalar_one_or_none()
            listed = [] if found is None else [(int(found), participant, 0.0)]
    else:
        listed = standing[:limit]
    kind = compiled.metrics_by_key[challenge.metric].event
    _refuse_a_later_board(connection, program.id, challenge, kind, standing, listed, ranks, (as_of, after))
    window = (first, min(as_of, after))
    counts = _events(connection, program.id, kind, [r[0] for r in listed], window, teams=challenge.mode == "team")
    rows = []
    for pid, external, value in listed:
        events = counts.get(pid, 0)
        rate = events / elapsed
        worth = value / events if events and value > 0 else 0.0
        others = [v for i, _, v in standing if i != pid]
        prizes = []
        for r in ranks:
            if race:  # a place is won once and for all: by reaching the target while places are left
                place = places.get(external)
                holds = place is not None and place <= r
                taken = not holds and (place is not None or r <= len(places))
                needed = 0.0 if place is not None else max(0.0, (challenge.target or 0.0) - value)
            else:  # rank r or better: at least the value the r-th best of the others has now
                needed = max(0.0, others[r - 1] - value) if len(others) >= r else 0.0
                holds, taken = needed == 0 and value > 0, False
            if holds or taken or worth == 0:
                chance = 1.0 if holds else 0.0
            else:
                chance = poisson_at_least(max(1, math.ceil(round(needed / worth, 9))), rate * left)
            prizes.append({"rank": r, "needed": needed, "chance": round(chance, 4), "holds": holds})
        reachable = [p for p in prizes if not p["holds"] and p["chance"] > 0]
        best = max(reachable, key=lambda p: (p["chance"], -p["rank"])) if reachable else None
        rows.append(
            {
                "id": external,
                "value": value,
                "events": events,
                "per_day": round(rate, 4),
                "prizes": prizes,
                "sentence": _sentence(external, challenge.metric, prizes, best),
            }
        )
    return {
        "challenge": challenge.key,
        "format": challenge.format,
        "mode": challenge.mode,
        "metric": challenge.metric,
        "period": period,
        "ends_at": after.isoformat(),
        "days_elapsed": round(elapsed, 4),
        "days_left": round(left, 4),
        "entrants": len(standing),
        "prizes": [
            {"rank": r, "holder": standing[r - 1][1] if len(standing) >= r else None}
            | {"value": standing[r - 1][2] if len(standing) >= r else None}
            for r in ranks
        ],
        "participants": rows,
    }


def _refuse_a_later_board(
    connection: Connection,
    program_id: int,
    challenge: Challenge,
    kind: str,
    standing: list[tuple[int, str, float]],
    listed: list[tuple[int, str, float]],
    ranks: list[int],
    span: tuple[dt.datetime, dt.datetime],
) -> None:
    """Refuse an ``as_of`` in the past when the board already counts later events of those the answer reads
    (the listed and the prize ranks' holders): its values are the stored totals, to the last event, while
    the pace would stop at ``as_of`` — each deal's worth inflated, the gaps those of a later day."""
    as_of, after = span
    until = min(after, dt.datetime.now(dt.UTC))  # future-dated events are no reason to refuse "now"
    read = sorted({r[0] for r in listed} | {r[0] for r in standing[: max(ranks, default=0) + 1]})
    if as_of >= until or not read:
        return
    last = _last(connection, program_id, kind, read, (as_of, until), teams=challenge.mode == "team")
    if last is not None:
        raise Invalid(
            "the board holds later events",
            errors=[
                FieldError(
                    "as_of",
                    f"{challenge.key} already counts events after as_of (the last at {last.isoformat()}): "
                    "its board is read as it stands, so ask as of then or later",
                )
            ],
        )


def _sentence(who: str, metric: str, prizes: list[dict[str, Any]], best: dict[str, Any] | None) -> str:
    held = [p["rank"] for p in prizes if p["holds"]]
    now = f"{who} holds rank {held[0]} now" if held else None
    if best is None:
        return f"{now}." if now else f"{who} has no prize within reach at their pace."
    step = f"{best['needed']:,.6g} more {metric} would take rank {best['rank']} ({best['chance']:.0%} at their pace)"
    return f"{now}; {step}." if now else f"{who}: {step}."


def possible(
    connection: Connection,
    program: ProgramRecord,
    compiled: CompiledProgram,
    *,
    as_of: dt.datetime,
    challenge: str | None = None,
    participant: str | None = None,
    limit: int = 100,
) -> dict[str, Any]:
    """Every open competition (or ``challenge``), the first ``limit`` of its board (or one ``participant``,
    a team's id for a team competition) with what each prize rank takes and the chance of it."""
    wanted = [c for c in compiled.doc.challenges if c.kind == "competition" and not c.draft]
    if challenge is not None:
        wanted = [c for c in wanted if c.key == challenge]
        if not wanted:
            raise Invalid("not a competition", errors=[FieldError("challenge", "a competition of the program")])
    found = [
        c
        for c in (_competition(connection, program, compiled, ch, as_of, participant, limit) for ch in wanted)
        if c is not None
    ]
    sentence = "; ".join(
        f"{c['challenge']}: {c['entrants']:,} with a value, {c['days_left']:g} days left" for c in found
    )
    return {"as_of": as_of.isoformat(), "competitions": found, "sentence": sentence or "no competition is open"}
