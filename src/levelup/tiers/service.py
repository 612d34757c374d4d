"""Reviewing tiers against the window, admin overrides, and what a participant is told about their tier.

A review runs after every batch of events that touches the tier metric (same
transaction) and from the tiers job (server every minute, ``levelup tiers``),
so a tier is also lost when old activity leaves a rolling window with no new
event. ``participants.tier`` is the tier in force: an override while it lasts,
else the reviewed tier. Each change is a feed item (``tier``); overrides are audited.
The engine applies the multiplier of the tier in force when an event is scored,
and that tier is recorded with the event, so replay applies the same one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import Connection, bindparam, func, select

from levelup.audit import service as audit
from levelup.engine.model import TierChange, TierStanding
from levelup.engine.tiers import earned_index, index_of, lost_on, rerate
from levelup.errors import FieldError, Invalid, NotFound
from levelup.feed import service as feed
from levelup.feed.service import FeedItem
from levelup.jobs.items import in_batches
from levelup.metrics.periods import local_date, period_key, rolling_days, window_dates
from levelup.participants import repository as participants
from levelup.programs import service as programs_service
from levelup.programs.compiled import CompiledProgram
from levelup.programs.document import Tiers
from levelup.runtime import Runtime
from levelup.storage import tables as t
from levelup.storage.sql import upsert_set


def window_values(
    connection: Connection, program_id: int, tiers: Tiers, participant_ids: Iterable[int], today: dt.date
) -> dict[int, float]:
    """The qualifying value of each participant: the metric over the tier window as of ``today``."""
    ids = list(participant_ids)
    m = t.metric_totals.c
    base = [m.program_id == program_id, m.metric == tiers.metric, m.subject_kind == "p", m.subject_id.in_(ids)]
    dates = window_dates(tiers.window, today)
    if rolling_days(tiers.window) is not None and dates is not None:
        query = (
            select(m.subject_id, func.sum(m.value))
            .where(
                *base, m.period >= dates[0].isoformat(), m.period <= dates[1].isoformat(), func.length(m.period) == 10
            )
            .group_by(m.subject_id)
        )
    else:
        query = select(m.subject_id, m.value).where(*base, m.period == period_key(tiers.window, today))
    return {int(s): float(v) for s, v in connection.execute(query)}


@dataclass
class Held:
    """A participant's tier as stored, with the qualifying value as of the review day."""

    external_id: str
    value: float
    standing: TierStanding
    since: dt.datetime | None
    override_until: dt.datetime | None


def held(
    connection: Connection, program_id: int, compiled: CompiledProgram, participant_ids: Iterable[int], now: dt.datetime
) -> dict[int, Held]:
    """What the engine needs to review these participants' tiers on ``now``'s local day (an expired
    override no longer counts)."""
    tiers = compiled.doc.tiers
    ids = sorted(set(participant_ids))
    if tiers is None or not ids:
        return {}
    values = window_values(connection, program_id, tiers, ids, local_date(now, compiled.timezone))
    p, s = t.participants.c, t.tier_state.c
    rows = connection.execute(
        select(p.id, p.external_id, p.tier, s.earned, s.reviewed, s.override, s.override_until, s.since)
        .outerjoin(t.tier_state, s.participant_id == p.id)
        .where(p.id.in_(ids))
    ).all()
    out = {}
    for row in rows:
        override = row.override if row.override and (row.override_until is None or row.override_until > now) else None
        standing = TierStanding(row.tier, row.earned, row.reviewed, override)
        out[row.id] = Held(row.external_id, values.get(row.id, 0.0), standing, row.since, row.override_until)
    return out


def tier_feed_item(participant: str, change: TierChange, at: dt.datetime, event: str | None = None) -> FeedItem:
    """The live feed's ``tier`` item; ``event`` names the event whose review moved it (none from the job)."""
    payload: dict[str, Any] = {"from": change.before, "to": change.after, "up": change.up, "reason": change.reason}
    return FeedItem(participant, "tier", {"event": event, **payload} if event else payload, at)


def write_reviews(
    connection: Connection,
    program_id: int,
    reviews: Mapping[int, tuple[Held, TierStanding, bool]],
    now: dt.datetime,
) -> None:
    """Store reviewed standings (participant → what was held, the standing now, whether the tier in force moved)."""
    if not reviews:
        return
    upsert_set(
        connection,
        t.tier_state,
        [
            {
                "participant_id": pid,
                "program_id": program_id,
                "earned": after.earned,
                "since": now if moved or before.since is None else before.since,
                "reviewed": after.dropped_in,
                "override": after.override,
                "override_until": before.override_until if after.override else None,
            }
            for pid, (before, after, moved) in reviews.items()
        ],
        keys=["participant_id"],
        update=["earned", "since", "reviewed", "override", "override_until"],
    )
    moved_ids = [(after.tier, pid) for pid, (_, after, moved) in reviews.items() if moved]
    if moved_ids:
        p = t.participants.c
        connection.execute(
            t.participants.update().where(p.id == bindparam("pid")).values(tier=bindparam("new_tier")),
            [{"pid": pid, "new_tier": tier} for tier, pid in moved_ids],
        )


def review(
    connection: Connection, program_id: int, compiled: CompiledProgram, participant_ids: Iterable[int], now: dt.datetime
) -> list[TierChange]:
    """Re-rate these participants' tiers as of ``now`` (the job's review, with no event); returns the changes,
    also published on the feed."""
    tiers = compiled.doc.tiers
    if tiers is None:
        return []
    today = local_date(now, compiled.timezone)
    reviews: dict[int, tuple[Held, TierStanding, bool]] = {}
    changes: list[TierChange] = []
    items: list[FeedItem] = []
    for pid, before in held(connection, program_id, compiled, participant_ids, now).items():
        after, change = rerate(tiers, before.value, before.standing, today)
        reviews[pid] = (before, after, change is not None)
        if change is not None:
            changes.append(change)
            items.append(tier_feed_item(before.external_id, change, now))
    write_reviews(connection, program_id, reviews, now)
    feed.publish(connection, program_id, items)
    return changes


def set_override(
    connection: Connection,
    program_id: int,
    compiled: CompiledProgram,
    participant: str,
    *,
    tier: str | None,
    until: dt.datetime | None,
    note: str,
    actor: str,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Put a participant in a tier by hand (``tier`` None lifts the override); audited, reviewed at once."""
    tiers = compiled.doc.tiers
    if tiers is None:
        raise Invalid("this program has no tiers", errors=[FieldError("tier", "the program defines no tiers")])
    if tier is not None and index_of(tiers, tier) is None:
        names = ", ".join(s.name for s in tiers.steps)
        raise Invalid("unknown tier", errors=[FieldError("tier", f"one of {names}")])
    now = now or dt.datetime.now(dt.UTC)
    if until is not None and until <= now:
        raise Invalid("override ends in the past", errors=[FieldError("until", "must be in the future")])
    found = connection.execute(
        select(t.participants.c.id).where(
            t.participants.c.program_id == program_id, t.participants.c.external_id == participant
        )
    ).scalar_one_or_none()
    if found is None:
        raise NotFound(f"no participant {participant!r}")
    participants.lock(connection, [found])
    upsert_set(
        connection,
        t.tier_state,
        [
            {
                "participant_id": found,
                "program_id": program_id,
                "since": now,
                "override": tier,
                "override_until": until if tier else None,
                "override_note": note,
            }
        ],
        keys=["participant_id"],
        update=["override", "override_until", "override_note"],
    )
    audit.record(
        connection,
        program_id,
        actor,
        "tier.override",
        {"participant": participant, "tier": tier, "until": until.isoformat() if until else None, "note": note},
        now,
    )
    review(connection, program_id, compiled, [found], now)
    result = standing(connection, program_id, compiled, found, now)
    assert result is not None  # the program has tiers
    return result


def standing(
    connection: Connection, program_id: int, compiled: CompiledProgram, participant_id: int, now: dt.datetime
) -> dict[str, Any] | None:
    """The profile's ``tier``: held, qualifying value, what the next one needs, when this one would be lost."""
    tiers = compiled.doc.tiers
    if tiers is None:
        return None
    today = local_date(now, compiled.timezone)
    value = window_values(connection, program_id, tiers, [participant_id], today).get(participant_id, 0.0)
    p, s = t.participants.c, t.tier_state.c
    row = connection.execute(
        select(p.tier, s.since, s.override, s.override_until, s.override_note)
        .outerjoin(t.tier_state, s.participant_id == p.id)
        .where(p.id == participant_id)
    ).one()
    held = row.tier or tiers.steps[earned_index(tiers, value)].name
    at = index_of(tiers, held) or 0
    following = tiers.steps[at + 1] if at + 1 < len(tiers.steps) else None
    daily: dict[dt.date, float] = {}
    days = rolling_days(tiers.window)
    if days is not None:
        m = t.metric_totals.c
        first = today - dt.timedelta(days=days - 1)
        for period, amount in connection.execute(
            select(m.period, m.value).where(
                m.program_id == program_id,
                m.metric == tiers.metric,
                m.subject_kind == "p",
                m.subject_id == participant_id,
                m.period >= first.isoformat(),
                m.period <= today.isoformat(),
                func.length(m.period) == 10,
            )
        ):
            daily[dt.date.fromisoformat(period)] = float(amount)
    lost = lost_on(tiers, held, daily, today)
    return {
        "name": held,
        "metric": tiers.metric,
        "window": tiers.window,
        "value": value,
        "since": row.since.isoformat() if row.since else None,
        "next": following.name if following else None,
        "needed": max(0.0, following.at - value) if following else None,
        "lost_on": lost.isoformat() if lost else None,
        "demotion": tiers.demotion,
        "override": {
            "tier": row.override,
            "until": row.override_until.isoformat() if row.override_until else None,
            "note": row.override_note,
        }
        if row.override
        else None,
        "multiplier": tiers.steps[at].multiplier or {},
    }


def _review_some(
    runtime: Runtime, program_id: int, compiled: CompiledProgram, now: dt.datetime, some: Sequence[int]
) -> int:
    with runtime.db.write() as connection:
        return len(review(connection, program_id, compiled, list(some), now))


def review_all(
    runtime: Runtime,
    *,
    now: dt.datetime | None = None,
    program_keys: Iterable[str] | None = None,
    batch: int = 1000,
) -> int:
    """The tiers job: re-rate everyone above the first tier or under an override; returns the changes made."""
    now = now or dt.datetime.now(dt.UTC)
    changed = 0
    with runtime.db.read() as connection:
        query = select(t.programs.c.id, t.programs.c.key)
        if program_keys is not None:
            query = query.where(t.programs.c.key.in_(list(program_keys)))
        programs = connection.execute(query).all()
    for program_id, key in programs:
        with runtime.db.read() as connection:
            record = programs_service.find(connection, key)
            compiled = runtime.programs.compiled(connection, record)
            if compiled.doc.tiers is None:
                continue
            first = compiled.doc.tiers.steps[0].name
            ids = list(
                connection.execute(
                    select(t.participants.c.id)
                    .outerjoin(t.tier_state, t.tier_state.c.participant_id == t.participants.c.id)
                    .where(
                        t.participants.c.program_id == program_id,
                        (t.participants.c.tier != first) | t.tier_state.c.override.is_not(None),
                    )
                ).scalars()
            )

        # a participant whose review fails is retried alone, so the others are re-rated anyway
        changed += sum(
            in_batches(
                ids,
                partial(_review_some, runtime, program_id, compiled, now),
                size=batch,
                what=f"tier reviews of {key}",
            )
        )
    return changed
