"""Event ingestion: the imperative shell around the engine.

One transaction per batch: find duplicates, lock and load the participants,
run every event through the engine in order (a :class:`~levelup.engine.world.World`),
then write the event rows, ledger entries and projections with batched statements.
Exactly-once comes from the database: one row per (program, event id), one ledger
entry per idempotency key; a concurrent duplicate makes the transaction fail and
the batch is retried, when it finds the duplicate and does nothing.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.exc import IntegrityError

from levelup.engine.model import WHOLE, BookedEntry, Effects, Event, ReversedEvent, TierStanding
from levelup.engine.positions import PositionDelta
from levelup.engine.world import World
from levelup.errors import Conflict, FieldError, Invalid, LevelupError
from levelup.events.schema import EventIn, parse_event
from levelup.feed import service as feed
from levelup.feed.service import FeedItem
from levelup.ledger.lots import LotMove, apply_moves, keeps_lots
from levelup.ledger.service import move_positions
from levelup.metrics.periods import local_date
from levelup.participants import repository as participants
from levelup.programs import service as programs
from levelup.programs.compiled import CompiledProgram
from levelup.referrals import service as referrals
from levelup.runtime import Runtime
from levelup.storage import tables as t
from levelup.storage.sql import add_checked, allocate_ids, bulk_insert, fetch_by_keys, upsert_add, upsert_set
from levelup.tiers import service as tier_service

RETRIES = 3


@dataclass
class Outcome:
    """What happened to one submitted event, in the response's shape."""

    id: str
    status: str  # accepted | duplicate | rejected
    awards: list[dict[str, Any]] = field(default_factory=list)
    errors: list[FieldError] = field(default_factory=list)
    error: LevelupError | None = None

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.status == "rejected":
            body["errors"] = [e.as_dict() for e in self.errors]
        else:
            body["awards"] = self.awards
        return body


def _rejected(event_id: str, error: LevelupError) -> Outcome:
    errors = error.errors or [FieldError("(event)", error.detail)]
    return Outcome(event_id, "rejected", errors=errors, error=error)


def batches(items: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """Events in lists of ``size`` (the last may be shorter): one ingestion transaction each."""
    batch: list[dict[str, Any]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def ingest(runtime: Runtime, program_key: str, raw_events: Sequence[Any]) -> list[Outcome]:
    """Ingest events in order; each gets an outcome. Retries the batch if a concurrent writer raced us."""
    for attempt in range(RETRIES):
        try:
            with runtime.db.write() as connection:
                return _ingest(runtime, connection, program_key, raw_events)
        except IntegrityError:
            if attempt == RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def _ingest(runtime: Runtime, connection: Connection, program_key: str, raw_events: Sequence[Any]) -> list[Outcome]:
    program = programs.find(connection, program_key)
    compiled = runtime.programs.compiled(connection, program)
    received_at = dt.datetime.now(dt.UTC)
    outcomes: list[Outcome | None] = [None] * len(raw_events)
    parsed: list[tuple[int, EventIn, str]] = []
    for i, raw in enumerate(raw_events):
        result = parse_event(raw)
        if isinstance(result, list):
            raw_id = raw.get("id") if isinstance(raw, dict) else None
            outcomes[i] = _rejected(str(raw_id or ""), Invalid("invalid event", errors=result))
        else:
            parsed.append((i, result, result.content_hash()))

    stored: dict[str, str] = dict(
        fetch_by_keys(
            connection,
            t.events,
            fixed={"program_id": program.id},
            keys=["event_id"],
            values=[(e.id,) for e in {e.id: e for _, e, _ in parsed}.values()],
            columns=["event_id", "content_hash"],
        )
    )
    fresh: list[tuple[int, EventIn, str]] = []
    for i, event, digest in parsed:
        known = stored.get(event.id)
        if known is None:
            fresh.append((i, event, digest))  # a repeat inside the batch is judged in order, below
        elif known == digest:
            outcomes[i] = Outcome(event.id, "duplicate")
        else:
            outcomes[i] = _conflict(event.id)

    if fresh:
        _score_and_write(runtime, connection, program, compiled, fresh, received_at, outcomes)
    assert all(o is not None for o in outcomes)
    return [o for o in outcomes if o is not None]


def _conflict(event_id: str) -> Outcome:
    return _rejected(
        event_id,
        Conflict(
            f"event {event_id!r} was already received with different content",
            errors=[FieldError("id", "already used by an event with different content")],
        ),
    )


def _earlier_events(
    connection: Connection, program_id: int, event_ids: set[str]
) -> tuple[dict[str, ReversedEvent], dict[str, str]]:
    """Stored events that this batch reverses, with their ledger entries, and who already reversed them."""
    if not event_ids:
        return {}, {}
    rows = connection.execute(
        select(t.events, t.participants.c.external_id)
        .join(t.participants, t.participants.c.id == t.events.c.participant_id)
        .where(t.events.c.program_id == program_id, t.events.c.event_id.in_(event_ids))
    ).all()
    entries: dict[int, list[BookedEntry]] = defaultdict(list)
    refunded = dict(
        connection.execute(
            select(t.refunds.c.reversed_event, t.refunds.c.refunded).where(
                t.refunds.c.program_id == program_id, t.refunds.c.reversed_event.in_(event_ids)
            )
        ).all()
    )
    if rows:
        for e in connection.execute(
            select(t.ledger_entries).where(t.ledger_entries.c.event_seq.in_([r.seq for r in rows]))
        ):
            entries[e.event_seq].append(
                BookedEntry(
                    e.idempotency_key.split(":", 1)[1],
                    e.currency,
                    e.amount,
                    e.kind,
                    e.rule,
                    e.rule_version,
                    e.explain,
                )
            )
    found = {
        r.event_id: ReversedEvent(
            Event(r.event_id, r.type, r.external_id, r.occurred_at, r.data, r.reverses, r.seq, r.share or WHOLE),
            r.program_version,
            tuple(r.teams),
            tuple(entries[r.seq]),
            refunded.get(r.event_id, 0),
        )
        for r in rows
    }
    reversed_by = dict(
        connection.execute(
            select(t.reversals.c.reversed_event, t.reversals.c.by_event).where(
                t.reversals.c.program_id == program_id, t.reversals.c.reversed_event.in_(event_ids)
            )
        ).all()
    )
    return found, reversed_by


def _score_and_write(
    runtime: Runtime,
    connection: Connection,
    program: programs.ProgramRecord,
    compiled: CompiledProgram,
    fresh: list[tuple[int, EventIn, str]],
    received_at: dt.datetime,
    outcomes: list[Outcome | None],
) -> None:
    numbers = allocate_ids(connection, t.events, "seq", len(fresh))  # log order, known to the engine
    events = [(i, replace(e.to_event(received_at), seq=n)) for (i, e, _), n in zip(fresh, numbers, strict=True)]
    ids, created = participants.ensure(connection, program.id, (e.participant for _, e in events))
    participants.lock(connection, ids.values())
    earlier, reversed_by = _earlier_events(connection, program.id, {e.reverses for _, e in events if e.reverses})
    periods: dict[str, set[str]] = defaultdict(set)
    for participant, when in [(e.participant, e.occurred_at) for _, e in events] + [
        (r.event.participant, r.event.occurred_at) for r in earlier.values() if r.event.participant in ids
    ]:
        periods[participant].update(compiled.state_periods(local_date(when, compiled.timezone)))
    loaded = participants.load_states(
        connection,
        program.id,
        ids,
        periods,
        read_metrics=compiled.read_metrics,
        counters=bool(compiled.counter_grains),
        mechanics=compiled.has_mechanics,
    )

    tiers_held = tier_service.held(connection, program.id, compiled, ids.values(), received_at)
    for held in tiers_held.values():
        state = loaded.states[held.external_id]
        state.tier_value, state.tier_standing = held.value, held.standing

    def version_of(version: int) -> CompiledProgram:
        return runtime.programs.compiled(connection, program, version)

    world = World(
        version_of,
        states=loaded.states,
        find_earlier=earlier.get,
        reversed_earlier=reversed_by.get,
        today=local_date(received_at, compiled.timezone),
    )
    done: list[Effects] = []
    digests = {i: digest for i, _, digest in fresh}
    accepted: dict[str, str] = {}  # event id → digest, of events accepted earlier in this batch
    for i, event in events:
        if event.id in accepted:  # the same id twice in one batch: as if sent one after the other
            outcomes[i] = Outcome(event.id, "duplicate") if accepted[event.id] == digests[i] else _conflict(event.id)
            continue
        try:
            effects = world.process(event, compiled)
        except Invalid as exc:
            outcomes[i] = _rejected(event.id, exc)
            continue
        done.append(effects)
        accepted[event.id] = digests[i]
        outcomes[i] = Outcome(event.id, "accepted", effects.awards())
    if done:
        write_effects(connection, program.id, compiled, done, ids, received_at, accepted)
        referrals.record(connection, program.id, compiled, done, ids, received_at)
        reviews: dict[int, tuple[tier_service.Held, TierStanding, bool]] = {}
        for e in done:
            if e.tier_review is not None:
                pid = ids[e.event.participant]
                before = tiers_held[pid]
                moved = reviews[pid][2] if pid in reviews else False
                reviews[pid] = (before, e.tier_review.standing, moved or e.tier_review.change is not None)
        tier_service.write_reviews(connection, program.id, reviews, received_at)
    # a participant first seen in events that were all rejected was not really seen: bad input changes nothing
    unseen = created - {e.event.participant for e in done}
    if unseen:
        participants.forget(connection, [ids[p] for p in unseen])


@dataclass
class Writes:
    """The rows a list of scored events turns into, merged per key: one statement per table."""

    ledger: list[dict[str, Any]] = field(default_factory=list)
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


def aggregate(
    program_id: int,
    done: Sequence[Effects],
    ids: dict[str, int],
    team_ids: dict[str, int],
    seqs: dict[str, int],
    created_at: dt.datetime,
    lot_currencies: frozenset[str] = frozenset(),
    reversed_seqs: Mapping[str, int] | None = None,
) -> Writes:
    out = Writes()
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
            {
                "program_id": program_id,
                "participant_id": participant_id,
                "currency": entry.currency,
                "amount": entry.amount,
                "kind": entry.kind,
                "rule": entry.rule,
                "rule_version": entry.rule_version,
                "event_seq": seq,
                "idempotency_key": f"{seq}:{entry.key}",
                "explain": entry.explain,
                "at": entry.at,
                "created_at": created_at,
            }
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
        _aggregate_mechanics(out, program_id, participant_id, e)
        out.feed.extend(feed_items(e, created_at))
    return out


def _aggregate_mechanics(out: Writes, program_id: int, participant_id: int, e: Effects) -> None:
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


def write_projections(connection: Connection, program_id: int, writes: Writes) -> None:
    """Add the merged deltas to balances, metrics and rule counters."""
    move_positions(connection, program_id, writes.positions)
    upsert_add(
        connection,
        t.metric_totals,
        [
            {
                "program_id": program_id,
                "metric": m,
                "period": p,
                "subject_kind": k,
                "subject_id": s,
                "value": v,
            }
            for (m, p, k, s), v in writes.totals.items()
        ],
        keys=["program_id", "metric", "period", "subject_kind", "subject_id"],
        add=["value"],
    )
    upsert_add(
        connection,
        t.metric_samples,
        [
            {
                "program_id": program_id,
                "metric": m,
                "subject_kind": k,
                "subject_id": s,
                "day": d,
                "value_key": vk,
                "value": v[0],
                "count": v[1],
            }
            for (m, k, s, d, vk), v in writes.samples.items()
        ],
        keys=["program_id", "metric", "subject_kind", "subject_id", "day", "value_key"],
        add=["count"],
    )
    upsert_set(
        connection,
        t.badge_grants,
        list(writes.badges.values()),
        keys=["participant_id", "badge", "grade", "period"],
        update=["event_id", "awarded_at", "revoked_by"],
    )
    if writes.revocations:
        b = t.badge_grants.c
        connection.execute(
            t.badge_grants.update()
            .where(
                b.participant_id == bindparam("p"),
                b.badge == bindparam("b"),
                b.grade == bindparam("g"),
                b.period == bindparam("per"),
            )
            .values(revoked_by=bindparam("by")),
            [
                dict(zip(("p", "b", "g", "per"), key, strict=True), by=row["revoked_by"])
                for key, row in writes.revocations.items()
            ],
        )
    undone = [key for key, row in writes.completions.items() if row is None]
    if undone:
        c = t.challenge_completions.c
        connection.execute(
            t.challenge_completions.delete().where(
                c.participant_id == bindparam("p"), c.challenge == bindparam("ch"), c.period == bindparam("per")
            ),
            [{"p": p, "ch": ch, "per": per} for p, ch, per in undone],
        )
    upsert_set(
        connection,
        t.challenge_completions,
        [row for row in writes.completions.values() if row is not None],
        keys=["participant_id", "challenge", "period"],
        update=["event_id", "completed_at", "reward"],
    )
    upsert_set(
        connection,
        t.quest_progress,
        list(writes.quests.values()),
        keys=["participant_id", "challenge", "period"],
        update=["baselines"],
    )
    upsert_set(
        connection,
        t.streak_runs,
        list(writes.streaks.values()),
        keys=["participant_id", "streak"],
        update=["periods", "best"],
    )
    upsert_add(
        connection,
        t.rule_counters,
        [
            {"participant_id": p, "rule": r, "period": per, "count": v[0], "last_at": v[1]}
            for (p, r, per), v in writes.counters.items()
        ],
        keys=["participant_id", "rule", "period"],
        add=["count"],
        latest=["last_at"],
    )


def write_effects(
    connection: Connection,
    program_id: int,
    compiled: CompiledProgram,
    done: list[Effects],
    ids: dict[str, int],
    received_at: dt.datetime,
    hashes: dict[str, str],
) -> None:
    """Append the scored events and their ledger entries, then update the projections."""
    team_ids = participants.ensure_teams(connection, program_id, {team for e in done for team in e.teams})
    seqs = {e.event.id: e.event.seq for e in done}  # allocated before scoring: the engine orders by them
    bulk_insert(
        connection,
        t.events,
        [
            {
                "seq": seqs[e.event.id],
                "program_id": program_id,
                "event_id": e.event.id,
                "type": e.event.type,
                "participant_id": ids[e.event.participant],
                "occurred_at": e.event.occurred_at,
                "received_at": received_at,
                "data": e.event.data,
                "reverses": e.event.reverses,
                "content_hash": hashes[e.event.id],
                "program_version": e.program_version,
                "teams": list(e.teams),
                "tier": e.tier,
                "suspended": e.suspended,
                "share": e.event.share if e.event.reverses else None,
                "problems": [p._asdict() for p in e.problems] or None,
                "notes": e.notes or None,
            }
            for e in done
        ],
    )
    lot_currencies = frozenset(c for c in compiled.currencies if keeps_lots(compiled, c))
    reversed_seqs: dict[str, int] = {}
    reversed_ids = {e.event.reverses for e in done if e.event.reverses} if lot_currencies else set()
    if reversed_ids:
        reversed_seqs = {i: seqs[i] for i in reversed_ids if i in seqs}
        reversed_seqs.update(
            connection.execute(
                select(t.events.c.event_id, t.events.c.seq).where(
                    t.events.c.program_id == program_id, t.events.c.event_id.in_(reversed_ids - set(seqs))
                )
            ).all()
        )
    writes = aggregate(program_id, done, ids, team_ids, seqs, received_at, lot_currencies, reversed_seqs)
    bulk_insert(connection, t.ledger_entries, writes.ledger)
    bulk_insert(connection, t.reversals, writes.reversals)
    add_checked(
        connection,
        t.refunds,
        [{"program_id": program_id, "reversed_event": k, "refunded": n} for k, n in writes.refunds.items()],
        keys=["program_id", "reversed_event"],
        add=["refunded"],
    )
    feed.publish(connection, program_id, writes.feed)
    for key, pending in apply_moves(connection, program_id, compiled, writes.lots, received_at).items():
        writes.positions[key] = writes.positions.get(key, PositionDelta()) + PositionDelta(pending=pending)
    write_projections(connection, program_id, writes)
