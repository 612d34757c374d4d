"""Closing periods: team goals and competitions are settled once their period has ended plus a grace time.

Run by the server every minute and by ``levelup close-periods``. Each (challenge,
period) is settled in one transaction that first inserts its ``closed_periods``
row: a second run, or another worker, finds the row and pays nothing. Prizes and
team rewards are ledger entries (kind ``prize`` / ``challenge``) with idempotency
keys naming the challenge, period and participant, a second guard against paying twice.

A late event that arrives before the period closes counts toward the result; one
that arrives after it still counts in the metrics and leaderboards, but the prizes
already paid stand.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import Connection, func, select

from levelup.engine.experiments import held_out_by
from levelup.engine.goals import eligible
from levelup.engine.model import ParticipantState
from levelup.feed.service import FeedItem, publish
from levelup.jobs.items import in_batches
from levelup.leaderboards.service import Row, rank
from levelup.ledger.service import Booking, book
from levelup.metrics.periods import grain_of, period_dates, period_end, zone
from levelup.participants import repository as participants
from levelup.programs import service as programs
from levelup.programs.compiled import CompiledProgram
from levelup.programs.document import Challenge, duration_seconds
from levelup.runtime import Runtime
from levelup.storage import tables as t
from levelup.storage.sql import claim


@dataclass(frozen=True)
class Closed:
    program: str
    challenge: str
    period: str
    paid: int  # ledger entries booked


def _settled_here(challenge: Challenge) -> bool:
    return challenge.kind == "competition" or (challenge.kind == "goal" and challenge.mode == "team")


def _range_end(challenge: Challenge, timezone: str) -> dt.datetime:
    assert challenge.end is not None
    after = dt.datetime.combine(challenge.end + dt.timedelta(days=1), dt.time(), zone(timezone))
    return after.astimezone(dt.UTC)


def due_periods(
    connection: Connection, program_id: int, compiled: CompiledProgram, challenge: Challenge, now: dt.datetime
) -> list[tuple[str, dt.datetime]]:
    """Periods of ``challenge`` that ended at least the grace time ago and are not closed yet."""
    grace = dt.timedelta(seconds=duration_seconds(compiled.doc.close_grace))
    closed = set(
        connection.execute(
            select(t.closed_periods.c.period).where(
                t.closed_periods.c.program_id == program_id, t.closed_periods.c.challenge == challenge.key
            )
        ).scalars()
    )
    if challenge.start and challenge.end and not challenge.every:
        key = next(k for k, start, end in compiled.ranges if (start, end) == (challenge.start, challenge.end))
        candidates = [(key, _range_end(challenge, compiled.timezone))]
    elif challenge.every:
        m = t.metric_totals.c
        keys = connection.execute(
            select(m.period).where(m.program_id == program_id, m.metric == challenge.metric).group_by(m.period)
        ).scalars()
        candidates = []
        for key in keys:
            try:
                grain = grain_of(key)
            except ValueError:
                continue  # a range period
            if grain == challenge.every:
                end = period_end(key, compiled.timezone)
                assert end is not None
                candidates.append((key, end))
    else:
        return []
    return sorted(
        (k, end) for k, end in candidates if k not in closed and end <= now - grace
    )  # end may be the last instant


def _values(connection: Connection, program_id: int, metric: str, period: str, kind: str) -> dict[int, float]:
    m = t.metric_totals.c
    rows = connection.execute(
        select(m.subject_id, m.value).where(
            m.program_id == program_id, m.metric == metric, m.period == period, m.subject_kind == kind
        )
    )
    return {int(s): float(v) for s, v in rows}


def _teams(connection: Connection, program_id: int) -> dict[int, tuple[str, list[int]]]:
    """Team id → (external id, member participant ids)."""
    out: dict[int, tuple[str, list[int]]] = {
        r.id: (r.external_id, []) for r in connection.execute(select(t.teams).where(t.teams.c.program_id == program_id))
    }
    for participant_id, team_id in connection.execute(
        select(t.memberships.c.participant_id, t.memberships.c.team_id).where(t.memberships.c.team_id.in_(list(out)))
    ):
        out[team_id][1].append(participant_id)
    return out


def participants_taking_part(
    connection: Connection, program_id: int, compiled: CompiledProgram, challenge: Challenge, candidates: Iterable[int]
) -> set[int]:
    """Of these participant ids, those an individual challenge admits (teams, entrants, ``eligible``),
    judged on the participants as they are now."""
    wanted = list(candidates)
    holdouts = compiled.challenge_holdouts.get(challenge.key, ())
    if not (challenge.teams or challenge.entrants or challenge.eligible or holdouts):
        return set(wanted)
    p = t.participants.c
    rows = {
        r.id: r
        for r in connection.execute(
            select(p.id, p.external_id, p.name, p.attributes).where(p.program_id == program_id, p.id.in_(wanted))
        )
    }
    teams: dict[int, list[str]] = {}
    for participant_id, team in connection.execute(
        select(t.memberships.c.participant_id, t.teams.c.external_id)
        .join(t.teams, t.teams.c.id == t.memberships.c.team_id)
        .where(t.memberships.c.participant_id.in_(wanted))
    ):
        teams.setdefault(participant_id, []).append(team)
    condition = compiled.eligibility.get(challenge.key)
    segments = (
        participants.assignments(connection, program_id, [r.external_id for r in rows.values()])
        if compiled.reads_segment
        else {}
    )
    return {
        i
        for i, r in rows.items()
        if eligible(
            challenge,
            ParticipantState(
                r.external_id,
                r.name,
                tuple(teams.get(i, ())),
                r.attributes or {},
                segments=segments.get(r.external_id, ()),
            ),
            condition,
            holdouts,
        )
    }


def _held_out_members(
    connection: Connection,
    compiled: CompiledProgram,
    challenge: Challenge,
    teams: dict[int, tuple[str, list[int]]],
    winners: list[tuple[int, int, list[tuple[str, int]]]],
) -> set[int]:
    """Members of winning teams a holdout experiment keeps out of the whole program: not paid (their team's
    result still counts their activity, as every metric does)."""
    holdouts = compiled.challenge_holdouts.get(challenge.key)
    ids = [m for subject, _place, _awards in winners for m in teams[subject][1]]
    if not holdouts or not ids:
        return set()
    p = t.participants.c
    found = connection.execute(select(p.id, p.external_id).where(p.id.in_(ids))).all()
    return {int(i) for i, external in found if held_out_by(holdouts, external) is not None}


def _dates_of(period: str) -> tuple[dt.date, dt.date] | None:
    """First and last day of a calendar period or of a one-off range key (``20261001-20261031``)."""
    if len(period) == 17 and period[8] == "-":
        return dt.datetime.strptime(period[:8], "%Y%m%d").date(), dt.datetime.strptime(period[9:], "%Y%m%d").date()
    return period_dates(period)


def race_finishers(
    connection: Connection, program_id: int, compiled: CompiledProgram, challenge: Challenge, period: str
) -> list[tuple[int, Row]]:
    """Who reached a race's target, placed by when they reached it in event time (ties share a place).

    The day is exact: the first day whose running total (over the day rows of the race
    period, so late events count where they occurred) reaches the target. Within a day,
    the time of the event that completed it as received breaks the tie. Entrants are judged now.
    """
    assert challenge.metric is not None and challenge.target is not None
    c = t.challenge_completions.c
    done = {
        int(r.participant_id): (r.external_id, r.name, r.completed_at)
        for r in connection.execute(
            select(c.participant_id, t.participants.c.external_id, t.participants.c.name, c.completed_at)
            .join(t.participants, t.participants.c.id == c.participant_id)
            .where(c.program_id == program_id, c.challenge == challenge.key, c.period == period)
        )
    }
    admitted = participants_taking_part(connection, program_id, compiled, challenge, done)
    dates = _dates_of(period)
    m = t.metric_totals.c
    days: dict[int, list[tuple[str, float]]] = {}
    query = select(m.subject_id, m.period, m.value).where(
        m.program_id == program_id,
        m.metric == challenge.metric,
        m.subject_kind == "p",
        m.subject_id.in_(list(admitted)),
        func.length(m.period) == 10,
    )
    if dates is not None:
        query = query.where(m.period >= dates[0].isoformat(), m.period <= dates[1].isoformat())
    for subject, day, value in connection.execute(query.order_by(m.subject_id, m.period)):
        days.setdefault(int(subject), []).append((day, float(value)))
    finished: list[tuple[str, dt.datetime, str, str | None]] = []
    for pid in admitted:
        running = 0.0
        for day, value in days.get(pid, []):
            running += value
            if running >= challenge.target:
                external, name, completed_at = done[pid]
                finished.append((day, completed_at, external, name))
                break
    finished.sort(key=lambda f: (f[0], f[1], f[2]))
    placed: list[tuple[int, Row]] = []
    for i, (day, at, external, name) in enumerate(finished):
        same = placed and finished[i - 1][:2] == (day, at)
        reached = at if at.date().isoformat() == day else dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)
        placed.append((placed[-1][0] if same else i + 1, Row(external, name, reached.timestamp())))
    return placed


def _awards(award: dict[str, Any] | None) -> list[tuple[str, int]]:
    """Constant award amounts (prizes and team rewards take no expressions: there is no event)."""
    return [(c, int(a)) for c, a in (award or {}).items() if isinstance(a, int | float) and int(a) > 0]


def settle(
    connection: Connection,
    program_id: int,
    compiled: CompiledProgram,
    challenge: Challenge,
    period: str,
    ended: dt.datetime,
    now: dt.datetime,
) -> Closed | None:
    """Pay one period of one challenge, unless someone already did."""
    assert challenge.metric is not None
    teams = _teams(connection, program_id)
    subject_kind = "t" if challenge.mode == "team" else "p"
    values = _values(connection, program_id, challenge.metric, period, subject_kind)
    if challenge.mode == "team" and challenge.teams:
        allowed = {i for i, (external, _) in teams.items() if external in challenge.teams}
        values = {s: v for s, v in values.items() if s in allowed}
    elif challenge.mode == "individual":
        allowed = participants_taking_part(connection, program_id, compiled, challenge, values)
        values = {s: v for s, v in values.items() if s in allowed}
    names = {
        r.id: r.external_id
        for r in connection.execute(
            select(t.teams if subject_kind == "t" else t.participants).where(
                (t.teams if subject_kind == "t" else t.participants).c.program_id == program_id
            )
        )
    }
    winners: list[tuple[int, int, list[tuple[str, int]]]] = []  # (subject, rank or 0, awards)
    result: dict[str, Any] = {"metric": challenge.metric, "period": period}
    if challenge.kind == "goal":
        reached = [s for s, v in values.items() if challenge.target is not None and v >= challenge.target]
        winners = [(s, 0, _awards(challenge.reward)) for s in reached]
        result["reached"] = sorted(names[s] for s in reached)
    else:
        prizes = {p.rank: _awards(p.award) for p in challenge.prizes or []}
        if challenge.format == "race":
            ranked = race_finishers(connection, program_id, compiled, challenge, period)
        else:
            ranked = rank([Row(names[s], None, v) for s, v in values.items() if v > 0])
        by_name = {v: k for k, v in names.items()}
        winners = [(by_name[row.id], r, prizes[r]) for r, row in ranked if r in prizes]
        result["ranking"] = [
            {"rank": r, "id": row.id, "value": row.value}
            if challenge.format != "race"
            else {"rank": r, "id": row.id, "reached_at": dt.datetime.fromtimestamp(row.value, dt.UTC).isoformat()}
            for r, row in ranked[:20]
        ]
    claimed = claim(
        connection,
        t.closed_periods,
        {"program_id": program_id, "challenge": challenge.key, "period": period, "closed_at": now, "result": result},
    )
    if not claimed:
        return None
    if challenge.draft:
        return Closed(compiled.key, challenge.key, period, 0)
    kind = "challenge" if challenge.kind == "goal" else "prize"
    label = challenge.name or challenge.key
    bookings: list[Booking] = []
    kept_out = _held_out_members(connection, compiled, challenge, teams, winners) if subject_kind == "t" else set()
    for subject, place, awards in winners:
        members = [m for m in teams[subject][1] if m not in kept_out] if subject_kind == "t" else [subject]
        why = f"{label} {period}: " + (f"rank {place}" if place else f"target {challenge.target:g} reached")
        for participant_id in members:
            bookings.extend(
                Booking(
                    participant_id,
                    currency,
                    amount,
                    kind,
                    f"close:{challenge.key}:{period}:{participant_id}:{currency}",
                    why,
                    ended,
                )
                for currency, amount in awards
            )
    suspended = set(
        connection.execute(
            select(t.participants.c.id).where(
                t.participants.c.id.in_({b.participant_id for b in bookings}), t.participants.c.status != "active"
            )
        ).scalars()
    )
    bookings = [b for b in bookings if b.participant_id not in suspended]  # a suspended participant earns nothing
    book(connection, program_id, bookings, now=now, compiled=compiled)
    publish(connection, program_id, [FeedItem(None, "period.closed", {"challenge": challenge.key, **result}, now)])
    return Closed(compiled.key, challenge.key, period, len(bookings))


def close_periods(
    runtime: Runtime, *, now: dt.datetime | None = None, program_keys: Iterable[str] | None = None
) -> list[Closed]:
    """Settle every due period of every program (or of ``program_keys``); safe to run anywhere, any time."""
    now = now or dt.datetime.now(dt.UTC)
    with runtime.db.read() as connection:
        selected = programs.selected(connection, program_keys)
    done: list[Closed] = []
    for program in selected:
        with runtime.db.read() as connection:
            record = programs.find(connection, program.key)
            compiled = runtime.programs.compiled(connection, record)
            due = [
                (c, period, ended)
                for c in compiled.doc.challenges
                if _settled_here(c) and c.metric
                for period, ended in due_periods(connection, record.id, compiled, c, now)
            ]

        # each period in a transaction of its own: one that fails must not keep the others unpaid
        closed = in_batches(
            due, partial(_close, runtime, record.id, compiled, now), size=1, what=f"periods of {program.key}"
        )
        done += [c for c in closed if c is not None]
    return done


def _close(
    runtime: Runtime,
    program_id: int,
    compiled: CompiledProgram,
    now: dt.datetime,
    one: Sequence[tuple[Challenge, str, dt.datetime]],
) -> Closed | None:
    (challenge, period, ended) = one[0]
    with runtime.db.write() as connection:
        return settle(connection, program_id, compiled, challenge, period, ended, now)
