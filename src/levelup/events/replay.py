"""Replay: recompute everything derived from the event log, compare it with what is stored, and rebuild.

The engine runs over the whole log in ingestion order, in memory, each event
with the program version it was scored with and the teams it counted for.
The ledger is append-only and never rewritten: replay checks that every
event-caused entry is what the engine says it should be. Balances, metrics
and rule counters are projections: replay compares them and, with
``rebuild=True``, writes them anew in one transaction. Balances are the fold of
the stored ledger in order (adjustments included), so they are exact.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import Connection, delete, func, select

from levelup.engine.model import Effects, Event, ParticipantState
from levelup.engine.positions import Position, PositionDelta, apply, move
from levelup.engine.world import World
from levelup.events.plan import Rows, plan_rows
from levelup.events.store import event_from_row, write_projections, write_totals
from levelup.leaderboards import normalised, windows
from levelup.ledger import posting
from levelup.participants import repository as participants
from levelup.programs import service as programs
from levelup.programs.compiled import Kept
from levelup.runtime import Runtime
from levelup.storage import tables as t

CHUNK = 5000
Progress = Callable[[int], None]


@dataclass
class Report:
    program: str
    events: int = 0
    ledger_entries: int = 0
    mismatches: list[str] = field(default_factory=list)
    rebuilt: bool = False

    @property
    def ok(self) -> bool:
        return not self.mismatches


class StoredEvent(NamedTuple):
    """An event of the log with what scoring reads of it (:func:`stored_events`). A plain tuple: reading a
    field of a database row costs about a microsecond, a tuple's a few dozen nanoseconds, and replay and
    simulation read a dozen a row."""

    seq: int
    event_id: str
    type: str
    occurred_at: dt.datetime
    data: Any
    reverses: str | None
    share: int | None
    program_version: int
    teams: list[str]
    tier: str | None
    suspended: bool
    external_id: str


def stored_events(
    connection: Connection,
    program_id: int,
    *,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    share: tuple[int, int] | None = None,
) -> Iterator[StoredEvent]:
    """The program's events in ingestion order (those with ``occurred_at`` in [start, end) when given),
    fetched CHUNK rows at a time (a server-side cursor on PostgreSQL): memory stays bounded whatever
    the size of the log. Shared by replay and simulation. ``share=(k, n)``: only the events of the
    participants whose id is k modulo n (a simulation worker's share: scoring never crosses participants)."""
    e = t.events.c
    wanted = (e.seq, e.event_id, e.type, e.occurred_at, e.data, e.reverses, e.share, e.program_version, e.teams)
    query = (  # only what scoring reads: the other columns (hashes, receipt times, problems) cost to decode
        select(*wanted, e.tier, e.suspended, t.participants.c.external_id)
        .join(t.participants, t.participants.c.id == e.participant_id)
        .where(e.program_id == program_id)
        .order_by(e.seq)
    )
    if start is not None:
        query = query.where(e.occurred_at >= start)
    if end is not None:
        query = query.where(e.occurred_at < end)
    if share is not None:
        query = query.where(e.participant_id % share[1] == share[0])
    yield from map(StoredEvent._make, connection.execute(query, execution_options={"yield_per": CHUNK}))


def participant_rows(connection: Connection, program_id: int) -> dict[str, Any]:
    """External id → the participant's id, name and attributes, for every participant of the program."""
    p = t.participants.c
    query = select(p.id, p.external_id, p.name, p.attributes).where(p.program_id == program_id)
    return {r.external_id: r for r in connection.execute(query)}


def as_scored(state: ParticipantState, row: StoredEvent, names: Mapping[str, Any]) -> Event:
    """The stored event for the engine, its participant's state set as when it was scored."""
    as_when_scored(state, row, names)
    return event_from_row(row)


def as_when_scored(state: ParticipantState, row: StoredEvent, names: Mapping[str, Any]) -> None:
    """The participant's state set as when ``row`` was scored: name and attributes (first sight), the teams
    it counted for, the tier and whether suspended (apart from the event: a simulation builds one event for
    the states of its two documents)."""
    if state.name is None and row.external_id in names:
        found = names[row.external_id]
        state.name = found.name
        state.attributes = found.attributes or {}
        if getattr(found, "segments", None) is not None:  # simulation hands the stored inputs (replay preloads)
            state.segments, state.targets = found.segments, found.targets  # read only: never changed by scoring
    state.teams = tuple(row.teams)
    state.tier, state.status = row.tier, "suspended" if row.suspended else "active"


def recompute(
    cache: programs.ProgramCache,
    connection: Connection,
    program: programs.ProgramRecord,
    progress: Progress | None = None,
) -> tuple[list[Effects], dict[str, int], dict[str, int]]:
    """The effects of every stored event, recomputed by the engine; with participant and event ids.
    Metrics are kept in the periods the version in force keeps, as live ingestion stores them."""
    versions = {
        v: cache.compiled(connection, program, v)
        for v in connection.execute(
            select(t.program_versions.c.version).where(t.program_versions.c.program_id == program.id)
        ).scalars()
    }
    world = World(versions.__getitem__, kept=versions[program.version].kept)
    participants.preload_inputs(connection, program.id, world.state)  # segments as live scoring was handed them
    names = participant_rows(connection, program.id)
    done: list[Effects] = []
    seqs: dict[str, int] = {}
    for row in stored_events(connection, program.id):
        event = as_scored(world.state(row.external_id), row, names)
        done.append(world.process(event, versions[row.program_version]))
        seqs[row.event_id] = row.seq
        if progress and len(done) % 1000 == 0:
            progress(1000)
    if progress:
        progress(len(done) % 1000)
    return done, {k: r.id for k, r in names.items()}, seqs


def fold_positions(connection: Connection, program_id: int) -> dict[tuple[int, str], Position]:
    """Balances as the stored ledger says, entry by entry in the order they were booked."""
    out: dict[tuple[int, str], Position] = {}
    query = (
        select(
            t.ledger_entries.c.participant_id,
            t.ledger_entries.c.currency,
            t.ledger_entries.c.amount,
            t.ledger_entries.c.kind,
        )
        .where(t.ledger_entries.c.program_id == program_id)
        .order_by(t.ledger_entries.c.id)
    )
    for participant_id, currency, amount, kind in connection.execute(query, execution_options={"yield_per": CHUNK}):
        position = out.setdefault((participant_id, currency), Position())
        apply(position, move(position, amount, kind))
    return out


def _compare(report: Report, what: str, expected: Any, stored: Any, limit: int = 20) -> None:
    """Record differences between two dicts (or sets: membership is compared)."""
    if isinstance(expected, set):
        expected, stored = dict.fromkeys(expected, True), dict.fromkeys(stored, True)
    for key in sorted(set(expected) | set(stored), key=str):
        want, have = expected.get(key), stored.get(key)
        if want != have and len(report.mismatches) < limit * 4:
            report.mismatches.append(f"{what} {key}: replay gives {want!r}, stored {have!r}")


def _nonzero(values: dict[Any, Any]) -> dict[Any, Any]:
    return {k: v for k, v in values.items() if v not in (0, 0.0, [0, None])}


def replay(runtime: Runtime, program_key: str, *, rebuild: bool = False, progress: Progress | None = None) -> Report:
    with runtime.db.write() as connection:
        program = programs.find(connection, program_key)
        report = Report(program.key)
        done, ids, seqs = recompute(runtime.programs, connection, program, progress)
        report.events = len(done)
        writes = plan_rows(program.id, done, ids, _team_ids(connection, program.id), seqs, dt.datetime.now(dt.UTC))
        stored_ledger = {
            r.idempotency_key: (r.participant_id, r.currency, r.amount)
            for r in connection.execute(
                select(t.ledger_entries).where(
                    t.ledger_entries.c.program_id == program.id, t.ledger_entries.c.event_seq.is_not(None)
                )
            )
        }
        report.ledger_entries = len(stored_ledger)
        _compare(
            report,
            "ledger entry",
            {r.key: (r.participant_id, r.currency, r.amount) for r in writes.ledger},
            stored_ledger,
        )
        kept = runtime.programs.compiled(connection, program).kept
        stored = {k: v for k, v in _stored_totals(connection, program.id).items() if _is_kept(kept, k)}
        _compare_metrics(report, dict(writes.totals), stored)
        _compare(
            report,
            "rule counter",
            _nonzero({k: v[0] for k, v in writes.counters.items()}),
            _nonzero(_stored_counters(connection, program.id)),
        )
        folded = fold_positions(connection, program.id)
        stored_positions = {
            (r.participant_id, r.currency): Position(r.available, r.arrears, r.earned)
            for r in connection.execute(select(t.positions).where(t.positions.c.program_id == program.id))
        }
        _compare(report, "balance", _nonzero_positions(folded), _nonzero_positions(stored_positions))
        _compare_mechanics(report, connection, program.id, writes)
        # normalised board rows are derived from the stored totals and attributes: checked against them
        _compare(
            report,
            "normalised board row",
            normalised.expected(connection, program.id),
            normalised.stored(connection, program.id),
        )
        expected_windows = windows.expected(connection, program.id)  # likewise the windowed boards' kept sums
        _compare(report, "windowed board row", expected_windows, windows.stored(connection, program.id))
        if rebuild:
            _rebuild(connection, program.id, writes, folded)
            normalised.refresh(connection, program.id)  # derived anew from the rebuilt totals
            windows.refill(connection, program.id)
            report.rebuilt = True
    return report


def _team_ids(connection: Connection, program_id: int) -> dict[str, int]:
    query = select(t.teams.c.external_id, t.teams.c.id).where(t.teams.c.program_id == program_id)
    return {external: int(internal) for external, internal in connection.execute(query)}


def _is_kept(kept: Mapping[str, Kept], key: tuple[str, str, str, int]) -> bool:
    """Rows of periods nobody reads (left by an earlier version) are not compared: nothing shows them."""
    metric, period, kind, _subject = key
    wanted = kept.get(metric)
    return wanted is not None and wanted.holds(period, kind)


def rebuild_metrics(connection: Connection, program: programs.ProgramRecord) -> int:
    """Metric totals written anew from the event log, in the periods the version in force keeps: when a
    new version reads a period the earlier ones did not keep, its values exist from the first event.
    Returns how many events were replayed."""
    done, ids, seqs = recompute(programs.ProgramCache(), connection, program)
    writes = plan_rows(program.id, done, ids, _team_ids(connection, program.id), seqs, dt.datetime.now(dt.UTC))
    connection.execute(delete(t.metric_totals).where(t.metric_totals.c.program_id == program.id))
    write_totals(connection, program.id, writes.totals)
    normalised.refresh(connection, program.id)  # everyone's: participants with no total left leave the boards
    windows.refill(connection, program.id)  # the kept rolling boards too
    return len(done)


def _compare_mechanics(report: Report, connection: Connection, program_id: int, writes: Rows) -> None:
    """Badges held, goals completed and streaks: what replay gives against what is stored."""
    held = {k: row["revoked_by"] is None for k, row in writes.badges.items()}
    held.update((k, False) for k in writes.revocations)
    b = t.badge_grants.c
    stored_badges = {
        (r.participant_id, r.badge, r.grade, r.period): r.revoked_by is None
        for r in connection.execute(select(t.badge_grants).where(b.program_id == program_id))
    }
    _compare(report, "badge", {k for k, v in held.items() if v}, {k for k, v in stored_badges.items() if v})
    c = t.challenge_completions.c
    stored_done = {
        (r.participant_id, r.challenge, r.period)
        for r in connection.execute(select(t.challenge_completions).where(c.program_id == program_id))
    }
    _compare(report, "completion", {k for k, v in writes.completions.items() if v is not None}, stored_done)
    s = t.streak_runs.c
    stored_streaks = {
        (r.participant_id, r.streak): (list(r.periods), r.best)
        for r in connection.execute(select(t.streak_runs).where(s.program_id == program_id))
    }
    replayed = {k: (list(v["periods"]), v["best"]) for k, v in writes.streaks.items()}
    _compare(report, "streak", replayed, stored_streaks)
    q = t.quest_progress.c
    stored_quests = {
        (r.participant_id, r.challenge, r.period): [(round(b, 6), at) for b, at in r.baselines]
        for r in connection.execute(select(t.quest_progress).where(q.program_id == program_id))
    }
    replayed_quests = {k: [(round(b, 6), at) for b, at in v["baselines"]] for k, v in writes.quests.items()}
    _compare(report, "quest", replayed_quests, stored_quests)  # baselines are metric sums: rounded like them


def _compare_metrics(report: Report, expected: dict[Any, float], stored: dict[Any, float], limit: int = 80) -> None:
    """Metric values are doubles summed in a different order live (per batch) and in replay, so they
    agree to 1e-9 relative (absent counts as zero), not to the last bit."""
    for key in sorted(set(expected) | set(stored), key=str):
        want, have = expected.get(key, 0.0), stored.get(key, 0.0)
        if not math.isclose(want, have, rel_tol=1e-9, abs_tol=1e-6) and len(report.mismatches) < limit:
            report.mismatches.append(f"metric {key}: replay gives {want!r}, stored {have!r}")


def _nonzero_positions(positions: dict[Any, Position]) -> dict[Any, tuple[int, int, int]]:
    return {
        k: (p.available, p.arrears, p.earned)
        for k, p in positions.items()
        if (p.available, p.arrears, p.earned) != (0, 0, 0)
    }


def _stored_totals(connection: Connection, program_id: int) -> dict[Any, float]:
    c = t.metric_totals.c
    return {
        (r.metric, r.period, r.subject_kind, r.subject_id): r.value
        for r in connection.execute(select(t.metric_totals).where(c.program_id == program_id))
    }


def _stored_counters(connection: Connection, program_id: int) -> dict[Any, int]:
    query = (
        select(t.rule_counters)
        .join(t.participants, t.participants.c.id == t.rule_counters.c.participant_id)
        .where(t.participants.c.program_id == program_id)
    )
    return {(r.participant_id, r.rule, r.period): r._mapping["count"] for r in connection.execute(query)}


def _rebuild(connection: Connection, program_id: int, writes: Rows, folded: dict[tuple[int, str], Position]) -> None:
    """Write the projections anew from the replay (the ledger itself is never rewritten)."""
    participant_ids = select(t.participants.c.id).where(t.participants.c.program_id == program_id)
    connection.execute(delete(t.metric_totals).where(t.metric_totals.c.program_id == program_id))
    connection.execute(delete(t.metric_samples).where(t.metric_samples.c.program_id == program_id))
    connection.execute(delete(t.rule_counters).where(t.rule_counters.c.participant_id.in_(participant_ids)))
    connection.execute(delete(t.positions).where(t.positions.c.program_id == program_id))
    for table in (t.badge_grants, t.challenge_completions, t.streak_runs, t.quest_progress):
        connection.execute(delete(table).where(table.c.program_id == program_id))
    lot = t.lots.c
    pending = {
        (int(p), c): int(n)
        for p, c, n in connection.execute(
            select(lot.participant_id, lot.currency, func.sum(lot.remaining))
            .where(lot.program_id == program_id, lot.matured.is_(False))
            .group_by(lot.participant_id, lot.currency)
        )
    }  # lots are not a projection of events (redemptions and expiry are not events): they stay as stored
    posting.restore_positions(
        connection,
        program_id,
        {k: PositionDelta(p.available, p.arrears, p.earned, pending.get(k, 0)) for k, p in folded.items()},
    )
    write_projections(connection, program_id, writes)
