"""The event store: earlier events as the engine sees them, and the writes of a scored batch.

Used by ingestion (reversals' targets, writing effects), replay (rebuilding
projections) and event explanation (one row back into an engine event).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, bindparam, select

from levelup.engine.model import WHOLE, BookedEntry, Effects, Event, ReversedEvent
from levelup.events.plan import Rows, plan_rows
from levelup.feed import service as feed
from levelup.leaderboards import normalised, redis_board, windows
from levelup.ledger import posting
from levelup.ledger.lots import keeps_lots
from levelup.participants import repository as participants
from levelup.programs.compiled import CompiledProgram
from levelup.storage import tables as t
from levelup.storage.sql import add_checked, bulk_insert, upsert_add, upsert_set


def event_from_row(row: Any) -> Event:
    """An ``events`` row (joined with the participant's ``external_id``) as the engine's event."""
    share = row.share or WHOLE
    return Event(row.event_id, row.type, row.external_id, row.occurred_at, row.data, row.reverses, row.seq, share)


def earlier_events(
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
            event_from_row(r),
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


def write_totals(connection: Connection, program_id: int, totals: Mapping[tuple[str, str, str, int], float]) -> None:
    """Add merged deltas to metric totals, keyed (metric, period, subject kind, subject id)."""
    redis_board.touched(connection, ((program_id, k, m, p, s) for m, p, k, s in totals))
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
            for (m, p, k, s), v in totals.items()
        ],
        keys=["program_id", "metric", "period", "subject_kind", "subject_id"],
        add=["value"],
    )
    touched = {s for _, _, k, s in totals if k == "p"}
    if touched:  # the normalised boards over these metrics follow, in this transaction
        normalised.refresh(connection, program_id, touched, written={(m, p) for m, p, _, _ in totals})
    windows.metrics_written(connection, program_id, totals)  # and the kept rolling boards


def write_projections(connection: Connection, program_id: int, writes: Rows) -> None:
    """Add the merged deltas to metrics and rule counters, and set badges, goals, quests and streaks
    (balances move with their entries, in :func:`levelup.ledger.posting.post`)."""
    write_totals(connection, program_id, writes.totals)
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
    writes = plan_rows(program_id, done, ids, team_ids, seqs, received_at, lot_currencies, reversed_seqs)
    bulk_insert(connection, t.reversals, writes.reversals)
    add_checked(
        connection,
        t.refunds,
        [{"program_id": program_id, "reversed_event": k, "refunded": n} for k, n in writes.refunds.items()],
        keys=["program_id", "reversed_event"],
        add=["refunded"],
    )
    feed.publish(connection, program_id, writes.feed)
    posting.post(connection, program_id, compiled, writes.ledger, writes.positions, now=received_at, lots=writes.lots)
    write_projections(connection, program_id, writes)
