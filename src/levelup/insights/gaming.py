"""Anti-gaming flags: patterns worth an admin's look, each with the events (or kudos) behind it.

Four kinds, each from one set-based SQL aggregate over a window of event time (reversals and events
already reversed left out, so a clawback clears its flag):

- ``burst``: a local day on which a participant sent far more events of one type than they usually do.
  Their norm is the median of their other active days' counts of that type in the window (at least
  ``burst_days`` of them) and its spread the median absolute deviation (MAD). A day is a burst when it
  has at least ``burst_min`` events, at least ``burst_ratio`` × the median, and lies at least ``burst_z``
  robust standard deviations above it: ``(n − median) / max(1.4826 × MAD, 1) ≥ burst_z``. Score
  ``1 − median / n``.
- ``near_cap``: a rule with a cap of at least ``cap_min`` awards a period, whose awards a participant
  kept within 10% under the cap (``count ≥ max − max(1, round(max / 10))``) in at least ``cap_periods``
  periods that were at least ``cap_share`` of their periods with an award of it. Score: that share.
- ``repeated``: the same participant sent events of one type with identical, non-empty data under
  different ids (the same deal twice). Score ``1 − 1 / copies``.
- ``kudos_ring``: two participants who gave each other kudos at least ``ring_min`` times each way, each
  giving at least ``ring_share`` of what the other received in the window. Score: the smaller share.

The thresholds (:class:`Thresholds`) default to the values docs/insights.md documents; an admin may tune
them per request, within bounds.

Local days are cut at the program zone's UTC offset at the window's end (one offset: the same answer
on SQLite, which has no time zones, and PostgreSQL). Scores lie in [0, 1]; flags come highest first.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import ColumnElement, Connection, Text, and_, case, cast, exists, func, literal, select

from levelup.errors import FieldError, Invalid
from levelup.insights.common import Bucket, median
from levelup.kudos.service import CLAWBACK_KEY
from levelup.metrics.periods import local_date, period_key, zone
from levelup.programs.compiled import CompiledProgram
from levelup.programs.service import ProgramRecord
from levelup.storage import tables as t

KINDS = ("burst", "near_cap", "repeated", "kudos_ring")
MAX_EVENTS = 100  # event (or kudos) ids listed with a flag


class Thresholds(BaseModel):
    """What each kind of flag takes: the one home of the defaults and the bounds, read by the service, the
    API's query (``…/insights/flags?burst_min=5``) and the CLI (``--threshold burst_min=5``). Bounded so a
    tuned threshold still means what its name says (a share within (0, 1], a ratio of at least 1)."""

    model_config = ConfigDict(frozen=True)

    burst_min: int = Field(10, ge=1, le=100_000, description="burst: at least this many events on the day")
    burst_ratio: float = Field(3.0, ge=1, le=1000, description="burst: at least this many times the usual day")
    burst_z: float = Field(5.0, ge=0, le=1000, description="burst: at least this many robust deviations above it")
    burst_days: int = Field(3, ge=1, le=366, description="burst: other active days needed to know the usual day")
    cap_min: int = Field(5, ge=1, le=1_000_000, description="near_cap: only rules capped at this many or more")
    cap_periods: int = Field(3, ge=1, le=1000, description="near_cap: periods spent within 10% under the cap")
    cap_share: float = Field(0.5, gt=0, le=1, description="near_cap: and at least this share of those with an award")
    ring_min: int = Field(3, ge=1, le=10_000, description="kudos_ring: kudos each way, at least")
    ring_share: float = Field(0.5, gt=0, le=1, description="kudos_ring: of what the other received, at least")


DEFAULTS = Thresholds()


def thresholds(given: dict[str, str]) -> Thresholds:
    """Thresholds from ``NAME=VALUE`` settings (the CLI's), the rest the defaults; a bad name or value is an
    :class:`Invalid` naming it, every one of them at once."""
    unknown = sorted(set(given) - set(Thresholds.model_fields))
    if unknown:
        known = ", ".join(Thresholds.model_fields)
        raise Invalid(
            "no such threshold", errors=[FieldError(name, f"not a threshold: one of {known}") for name in unknown]
        )
    try:
        return Thresholds.model_validate(given)
    except ValidationError as exc:
        errors = [FieldError(".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()]
        raise Invalid("a threshold is out of bounds", errors=errors) from None


@dataclass
class Flag:
    kind: str
    subjects: list[int]  # participant ids
    score: float
    sentence: str  # with {0}, {1}: the participants' ids, filled in once known
    detail: dict[str, Any]
    events: list[str] = field(default_factory=list)
    kudos: list[int] = field(default_factory=list)


def _local_day(connection: Connection, instant: Any, offset: int) -> ColumnElement[str]:
    """The YYYY-MM-DD day of ``instant`` shifted by ``offset`` seconds, in either dialect's SQL."""
    if connection.dialect.name == "sqlite":
        return func.date(instant, f"{offset:+d} seconds")
    shifted = func.timezone("UTC", instant + literal(dt.timedelta(seconds=offset)))
    return func.to_char(shifted, "YYYY-MM-DD")


def _live(program_id: int, start: dt.datetime, end: dt.datetime) -> ColumnElement[bool]:
    """The window's events that still count: no reversals, nothing reversed since."""
    e, r = t.events.c, t.reversals.c
    undone = exists().where(r.program_id == program_id, r.reversed_event == e.event_id)
    return and_(e.program_id == program_id, e.occurred_at >= start, e.occurred_at < end, e.reverses.is_(None), ~undone)


def _bursts(
    connection: Connection, program_id: int, start: dt.datetime, end: dt.datetime, offset: int, tuned: Thresholds
) -> list[Flag]:
    e = t.events.c
    day = _local_day(connection, e.occurred_at, offset)
    daily = (
        select(e.participant_id, e.type, day.label("day"), func.count().label("n"))
        .where(_live(program_id, start, end))
        .group_by(e.participant_id, e.type, day)
        .subquery()
    )
    # each (participant, type) pair's busiest day beside every day: one pass, no self-join (a join of the
    # grouped rows with themselves took minutes on PostgreSQL planning without statistics)
    peak = func.max(daily.c.n).over(partition_by=(daily.c.participant_id, daily.c.type)).label("peak")
    ranked = select(daily.c.participant_id, daily.c.type, daily.c.day, daily.c.n, peak).subquery()
    query = select(ranked.c.participant_id, ranked.c.type, ranked.c.day, ranked.c.n).where(
        ranked.c.peak >= tuned.burst_min
    )
    days: dict[tuple[int, str], list[tuple[str, int]]] = defaultdict(list)
    for pid, kind, when, n in connection.execute(query):
        days[(int(pid), kind)].append((str(when), int(n)))
    flags = []
    for (pid, kind), counts in days.items():
        for when, n in counts:
            others = [m for d, m in counts if d != when]
            if n < tuned.burst_min or len(others) < tuned.burst_days:
                continue
            usual = median(others)
            assert usual is not None
            spread = median([abs(m - usual) for m in others]) or 0.0
            z = (n - usual) / max(1.4826 * spread, 1.0)
            if z >= tuned.burst_z and n >= tuned.burst_ratio * usual:
                sentence = f"{{0}} sent {n} {kind} events on {when}, {n / usual:.0f}× their usual {usual:g} a day"
                detail = {"type": kind, "day": when, "count": n, "usual": usual, "z": round(z, 2)}
                flags.append(Flag("burst", [pid], round(1 - usual / n, 4), sentence, detail))
    return flags


def _burst_events(
    connection: Connection, program_id: int, flag: Flag, window: tuple[dt.datetime, dt.datetime], offset: int
) -> None:
    e = t.events.c
    day = dt.date.fromisoformat(flag.detail["day"])
    first = dt.datetime.combine(day, dt.time(), dt.UTC) - dt.timedelta(seconds=offset)
    since, until = max(first, window[0]), min(first + dt.timedelta(days=1), window[1])
    query = (
        select(e.event_id)
        .where(_live(program_id, since, until), e.participant_id == flag.subjects[0], e.type == flag.detail["type"])
        .order_by(e.seq)
        .limit(MAX_EVENTS)
    )
    flag.events = list(connection.execute(query).scalars())


def _window_keys(grain: str, start: dt.datetime, end: dt.datetime, timezone: str) -> list[str]:
    """The keys of the ``grain`` periods holding a local day of [start, end)."""
    first, last = local_date(start, timezone), local_date(end - dt.timedelta(microseconds=1), timezone)
    return list(dict.fromkeys(period_key(grain, first + dt.timedelta(days=d)) for d in range((last - first).days + 1)))


def _in_periods(period: ColumnElement[str], keys: list[str]) -> list[ColumnElement[bool]]:
    """``period`` among ``keys`` (of one grain) as a range: an index range per participant, where an IN list of
    a hundred days is a hundred probes each. Keys of one grain sort in time order, and the length keeps
    other grains out (a month 2026-10 sorts between two days)."""
    return [period >= min(keys), period <= max(keys), func.length(period) == len(keys[0])]


def _near_caps(
    connection: Connection,
    program_id: int,
    compiled: CompiledProgram,
    start: dt.datetime,
    end: dt.datetime,
    tuned: Thresholds,
) -> list[Flag]:
    rc, p = t.rule_counters.c, t.participants.c
    flags = []
    for rule in compiled.doc.rules:
        if rule.cap is None or rule.cap.max < tuned.cap_min:
            continue
        cap, per = rule.cap.max, rule.cap.per
        near = cap - max(1, round(cap / 10))
        close = func.sum(case((rc.count >= near, 1), else_=0))
        query = (
            select(rc.participant_id, close.label("near"), func.count().label("periods"))
            .join(t.participants, p.id == rc.participant_id)
            .where(
                p.program_id == program_id,
                rc.rule == rule.key,
                *_in_periods(rc.period, _window_keys(per, start, end, compiled.timezone)),
                rc.count > 0,
            )
            .group_by(rc.participant_id)
            .having(close >= tuned.cap_periods)
        )
        for pid, hits, periods in connection.execute(query):
            share = hits / periods
            if share >= tuned.cap_share:
                sentence = (
                    f"{{0}} stayed just under the cap of {rule.key} ({cap} a {per}) in {hits} of {periods} "
                    f"{per}s with an award: {near}–{cap} awards each"
                )
                detail = {"rule": rule.key, "cap": cap, "per": per, "near": near, "periods": periods, "at_cap": hits}
                flags.append(Flag("near_cap", [int(pid)], round(share, 4), sentence, detail))
    return flags


def _near_cap_events(
    connection: Connection,
    program_id: int,
    compiled: CompiledProgram,
    flag: Flag,
    window: tuple[dt.datetime, dt.datetime],
) -> None:
    """The events that paid the rule in the periods spent near its cap."""
    rc, e, le = t.rule_counters.c, t.events.c, t.ledger_entries.c
    pid, rule, per = flag.subjects[0], flag.detail["rule"], flag.detail["per"]
    periods = set(
        connection.execute(
            select(rc.period).where(
                rc.participant_id == pid,
                rc.rule == rule,
                rc.count >= flag.detail["near"],
                rc.period.in_(_window_keys(per, *window, compiled.timezone)),
            )
        ).scalars()
    )
    query = (
        select(e.event_id, e.occurred_at)
        .join(t.ledger_entries, le.event_seq == e.seq)
        .where(_live(program_id, *window), e.participant_id == pid, le.rule == rule, le.kind == "rule", le.amount > 0)
        .group_by(e.seq, e.event_id, e.occurred_at)
        .order_by(e.seq)
    )
    bucket = Bucket(compiled.timezone, per)
    flag.events = [i for i, at in connection.execute(query) if bucket(at) in periods][:MAX_EVENTS]


def _repeated(connection: Connection, program_id: int, start: dt.datetime, end: dt.datetime) -> list[Flag]:
    e = t.events.c
    payload = cast(e.data, Text)
    ids = (
        func.group_concat(e.event_id, "\n")
        if connection.dialect.name == "sqlite"
        else func.string_agg(e.event_id, literal("\n"))
    )
    query = (
        select(e.participant_id, e.type, payload.label("payload"), func.count().label("n"), ids.label("ids"))
        .where(_live(program_id, start, end), payload != "{}")
        .group_by(e.participant_id, e.type, payload)
        .having(func.count() >= 2)
    )
    flags = []
    for pid, kind, stored, n, joined in connection.execute(query):
        data = json.loads(stored)
        text = json.dumps(data, separators=(", ", ": "), ensure_ascii=False)  # as either database stored it
        shown = (text if len(text) <= 80 else text[:77] + "...").replace("{", "{{").replace("}", "}}")
        sentence = f"{{0}} sent {n} {kind} events with identical data {shown}"
        detail = {"type": kind, "copies": n, "data": data}
        flags.append(Flag("repeated", [int(pid)], round(1 - 1 / n, 4), sentence, detail))
        flags[-1].events = sorted(joined.split("\n"))[:MAX_EVENTS]
    return flags


def _kudos_rings(
    connection: Connection, program_id: int, start: dt.datetime, end: dt.datetime, tuned: Thresholds
) -> list[Flag]:
    k, le = t.kudos.c, t.ledger_entries.c
    clawed = exists().where(  # a kudos clawed back has been dealt with: the ring is flagged on what stands
        le.program_id == program_id, le.idempotency_key == literal(CLAWBACK_KEY) + cast(k.id, Text)
    )
    within = and_(k.program_id == program_id, k.at >= start, k.at < end, ~clawed)
    pairs = (
        select(k.giver_id, k.receiver_id, func.sum(k.amount).label("amount"), func.count().label("n"))
        .where(within)
        .group_by(k.giver_id, k.receiver_id)
        .cte("pairs")
    )
    received = (
        select(k.receiver_id, func.sum(k.amount).label("total")).where(within).group_by(k.receiver_id).cte("received")
    )
    back = pairs.alias("back")
    got_a, got_b = received.alias("got_a"), received.alias("got_b")
    query = (
        select(
            pairs.c.giver_id,
            pairs.c.receiver_id,
            pairs.c.amount,
            back.c.amount,
            got_b.c.total,
            got_a.c.total,
        )
        .join(back, and_(back.c.giver_id == pairs.c.receiver_id, back.c.receiver_id == pairs.c.giver_id))
        .join(got_b, got_b.c.receiver_id == pairs.c.receiver_id)
        .join(got_a, got_a.c.receiver_id == pairs.c.giver_id)
        .where(pairs.c.giver_id < pairs.c.receiver_id, pairs.c.n >= tuned.ring_min, back.c.n >= tuned.ring_min)
    )
    flags = []
    for a, b, *sums in connection.execute(query):
        a_to_b, b_to_a, b_got, a_got = map(int, sums)  # PostgreSQL sums integers as decimals
        to_b, to_a = a_to_b / b_got, b_to_a / a_got
        if min(to_a, to_b) >= tuned.ring_share:
            sentence = (
                f"{{0}} and {{1}} trade kudos: {{0}} gave {to_b:.0%} of what {{1}} received, "
                f"and {{1}} {to_a:.0%} of what {{0}} received"
            )
            detail = {"given": [a_to_b, b_to_a], "shares": [round(to_b, 4), round(to_a, 4)]}
            flags.append(Flag("kudos_ring", [int(a), int(b)], round(min(to_a, to_b), 4), sentence, detail))
    for flag in flags:
        a, b = flag.subjects
        between = and_(within, k.giver_id.in_([a, b]), k.receiver_id.in_([a, b]))
        flag.kudos = list(connection.execute(select(k.id).where(between).order_by(k.id).limit(MAX_EVENTS)).scalars())
    return flags


def flags(
    connection: Connection,
    program: ProgramRecord,
    compiled: CompiledProgram,
    *,
    start: dt.datetime,
    end: dt.datetime,
    kind: str | None = None,
    limit: int = 100,
    tuned: Thresholds = DEFAULTS,
) -> dict[str, Any]:
    """Every flag of the window (or of one ``kind``) by the ``tuned`` thresholds, highest score first, the
    first ``limit`` with their events; the answer says which thresholds it used."""
    if kind is not None and kind not in KINDS:
        raise Invalid("no such kind of flag", errors=[FieldError("kind", f"one of {', '.join(KINDS)}")])
    offset = int((zone(compiled.timezone).utcoffset(end.replace(tzinfo=None)) or dt.timedelta()).total_seconds())
    wanted = set(KINDS if kind is None else (kind,))
    found: list[Flag] = []
    if "burst" in wanted:
        found += _bursts(connection, program.id, start, end, offset, tuned)
    if "near_cap" in wanted:
        found += _near_caps(connection, program.id, compiled, start, end, tuned)
    if "repeated" in wanted:
        found += _repeated(connection, program.id, start, end)
    if "kudos_ring" in wanted:
        found += _kudos_rings(connection, program.id, start, end, tuned)
    p = t.participants.c
    subjects = {s for f in found for s in f.subjects}
    names: dict[int, str] = {}
    if subjects:
        names = {int(i): e for i, e in connection.execute(select(p.id, p.external_id).where(p.id.in_(subjects)))}
    found.sort(key=lambda f: (-f.score, f.kind, [names[s] for s in f.subjects]))
    shown = found[:limit]
    for flag in shown:
        if flag.kind == "burst":
            _burst_events(connection, program.id, flag, (start, end), offset)
        elif flag.kind == "near_cap":
            _near_cap_events(connection, program.id, compiled, flag, (start, end))
    counts = {k: sum(1 for f in found if f.kind == k) for k in KINDS if k in wanted}
    people = len({s for f in found for s in f.subjects})
    return {
        "window": {"from": start.isoformat(), "to": end.isoformat()},
        "thresholds": tuned.model_dump(),
        "total": len(found),
        "kinds": counts,
        "flags": [
            {
                "kind": f.kind,
                "participants": [names[s] for s in f.subjects],
                "score": f.score,
                "sentence": f.sentence.format(*(names[s] for s in f.subjects)),
                "events": f.events,
                "kudos": f.kudos,
                "detail": f.detail,
            }
            for f in shown
        ],
        "sentence": (
            f"{len(found):,} flag{'s' * (len(found) != 1)} on {people:,} participant{'s' * (people != 1)}: "
            + ", ".join(f"{n:,} {k.replace('_', ' ')}" for k, n in counts.items() if n)
            if found
            else "nothing suspicious in this window"
        ),
    }
