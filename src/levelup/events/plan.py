"""Scored events → the rows to write, merged per key (pure: no connection, no clock).

A batch becomes one statement per table: a participant's month total appears
once however many of the batch's events touched it. Ingestion and replay share it.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from levelup.engine.model import WHOLE, Effects
from levelup.engine.positions import PositionDelta
from levelup.feed.service import FeedItem
from levelup.ledger.lots import LotMove
from levelup.ledger.posting import Entry
from levelup.tiers import service as tier_service


@dataclass
class Rows:
    """The rows a list of scored events turns into, merged per key: one statement per table."""

    ledger: list[Entry] = field(default_factory=list)
    positions: dict[tuple[int, str], PositionDelta] = field(default_factory=dict)
    totals: dict[tuple[str, str, str, int], float] = field(default_factory=lambda: defaultdict(float))
    samples: dict[tuple[str, str, int, str, str], list[Any]] = field(default_factory=dict)
    counters: dict[tuple[int, str, str], list[Any]] = field(default_factory=dict)
    reversals: list[dict[str, Any]] = field(default_factory=list)
    refunds: dict[str, int] = field(default_factory=dict)  # reversed event → share refunded by this batch
    badges: dict[tuple[int, str, str, str], dict[str, Any]] = field(default_factory=dict)  # grants
    revocations: dict[tuple[int, str, str, str], dict[str, Any]] = field(default_factory=dict)
    completions: dict[tuple[int, str, str], dict[str, Any] | None] = field(default_factory=dict)  # None: undone
    streaks: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    quests: dict[tuple[int, str, str], dict[str, Any]] = field(default_factory=dict)
    lots: list[LotMove] = field(default_factory=list)  # in booking order
    feed: list[FeedItem] = field(default_factory=list)


def plan_rows(
    program_id: int,
    done: Sequence[Effects],
    ids: dict[str, int],
    team_ids: dict[str, int],
    seqs: dict[str, int],
    created_at: dt.datetime,
    lot_currencies: frozenset[str] = frozenset(),
    reversed_seqs: Mapping[str, int] | None = None,
) -> Rows:
    out = Rows()
    for e in done:
        participant_id = ids[e.event.participant]
        seq = seqs[e.event.id]
        own = (reversed_seqs or {}).get(e.event.reverses) if e.event.reverses else None
        out.lots.extend(
            LotMove(participant_id, x.currency, x.moved, x.kind, x.at, f"{seq}:{x.key}", seq, own)
            for x in e.ledger
            if x.moved and x.currency in lot_currencies
        )
        out.ledger.extend(
            Entry(
                participant_id,
                entry.currency,
                entry.amount,
                entry.kind,
                f"{seq}:{entry.key}",
                entry.explain,
                entry.at,
                entry.rule,
                entry.rule_version,
                seq,
            )
            for entry in e.ledger
        )
        for currency, delta in e.positions.items():
            key = (participant_id, currency)
            out.positions[key] = out.positions.get(key, PositionDelta()) + delta
        for m in e.metrics:
            subject = ("p", participant_id) if m.team is None else ("t", team_ids[m.team])
            out.totals[(m.metric, m.period, *subject)] += m.delta
        for s in e.samples:
            subject = ("p", participant_id) if s.team is None else ("t", team_ids[s.team])
            sample_key = (s.metric, subject[0], subject[1], s.day, s.value_key)
            if sample_key in out.samples:
                out.samples[sample_key][1] += s.occurrences
            else:
                out.samples[sample_key] = [s.value, s.occurrences]
        for c in e.counters:
            current = out.counters.setdefault((participant_id, c.rule, c.period), [0, None])
            current[0] += c.delta
            if c.last_at is not None and (current[1] is None or c.last_at > current[1]):
                current[1] = c.last_at
        if e.event.reverses:
            out.refunds[e.event.reverses] = out.refunds.get(e.event.reverses, 0) + e.event.share
            if e.refunded == WHOLE:
                out.reversals.append(
                    {"program_id": program_id, "reversed_event": e.event.reverses, "by_event": e.event.id}
                )
        _plan_mechanics(out, program_id, participant_id, e)
        out.feed.extend(feed_items(e, created_at))
    return out


def _plan_mechanics(out: Rows, program_id: int, participant_id: int, e: Effects) -> None:
    for b in e.badges:
        key = (participant_id, b.badge, b.grade, b.period)
        if b.granted:
            out.revocations.pop(key, None)
            out.badges[key] = {
                "participant_id": participant_id,
                "badge": b.badge,
                "grade": b.grade,
                "period": b.period,
                "program_id": program_id,
                "event_id": e.event.id,
                "awarded_at": e.event.occurred_at,
                "revoked_by": None,
            }
        elif key in out.badges:
            out.badges[key]["revoked_by"] = e.event.id
        else:
            out.revocations[key] = {"revoked_by": e.event.id}
    for c in e.completions:
        out.completions[(participant_id, c.challenge, c.period)] = (
            {
                "participant_id": participant_id,
                "challenge": c.challenge,
                "period": c.period,
                "program_id": program_id,
                "event_id": e.event.id,
                "completed_at": e.event.occurred_at,
                "reward": [list(r) for r in c.reward],
            }
            if c.completed
            else None
        )
    for q in e.quests:
        out.quests[(participant_id, q.challenge, q.period)] = {
            "participant_id": participant_id,
            "challenge": q.challenge,
            "period": q.period,
            "program_id": program_id,
            "baselines": [list(step) for step in q.baselines],
        }
    for st in e.streaks:
        out.streaks[(participant_id, st.streak)] = {
            "participant_id": participant_id,
            "streak": st.streak,
            "program_id": program_id,
            "periods": st.periods,
            "best": st.best,
        }


def feed_items(e: Effects, at: dt.datetime) -> list[FeedItem]:
    """What the live feed tells about one scored event: awards, badges, level, streaks, completions, tier."""
    payloads: list[tuple[str, dict[str, Any]]] = []
    if e.ledger:
        entries = [
            {"currency": x.currency, "amount": x.amount, "kind": x.kind, "rule": x.rule, "explain": x.explain}
            for x in e.ledger
        ]
        payloads.append(("award", {"entries": entries}))
    payloads += [
        ("badge" if b.granted else "badge.revoked", {"badge": b.badge, "grade": b.grade, "period": b.period})
        for b in e.badges
    ]
    if e.level is not None:
        payloads.append(("level", {"from": e.level.before, "to": e.level.after, "up": e.level.up}))
    payloads += [("streak", {"streak": s.streak, "length": s.length, "best": s.best}) for s in e.streaks]
    payloads += [
        ("quest", {"challenge": q.challenge, "period": q.period, "steps_done": len(q.baselines) - 1}) for q in e.quests
    ]
    payloads += [
        (
            "challenge" if c.completed else "challenge.undone",
            {"challenge": c.challenge, "period": c.period, "value": c.value, "target": c.target},
        )
        for c in e.completions
    ]
    items = [FeedItem(e.event.participant, kind, {"event": e.event.id, **payload}, at) for kind, payload in payloads]
    if e.tier_review is not None and e.tier_review.change is not None:
        items.append(tier_service.tier_feed_item(e.event.participant, e.tier_review.change, at, e.event.id))
    return items
