"""Event ingestion: the orchestration around the engine.

One transaction per batch: find duplicates, lock and load the participants and
everything the batch's reversals and tiers need, run every event through the
engine in order (a :class:`~levelup.engine.world.World`), then hand the effects
to :mod:`levelup.events.plan` (rows, pure) and :mod:`levelup.events.store`
(writes). Exactly-once comes from the database: one row per (program, event id),
one ledger entry per idempotency key; a concurrent duplicate makes the
transaction fail and the batch is retried, when it finds the duplicate.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from levelup.engine.model import Effects, TierStanding
from levelup.engine.world import World
from levelup.errors import Conflict, FieldError, Invalid, LevelupError
from levelup.events import store
from levelup.events.schema import EventIn, parse_event
from levelup.insights import targets as personal_targets
from levelup.metrics.periods import local_date
from levelup.observability.metrics import observe_outcomes
from levelup.participants import repository as participants
from levelup.programs import service as programs
from levelup.programs.compiled import CompiledProgram
from levelup.referrals import service as referrals
from levelup.runtime import Runtime
from levelup.storage import tables as t
from levelup.storage.sql import allocate_ids, fetch_by_keys
from levelup.tiers import service as tier_service

RETRIES = 3


@dataclass
class Outcome:
    """What happened to one submitted event, in the response's shape."""

    id: str
    status: str  # accepted | duplicate | rejected
    awards: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what could not be evaluated ("rule:<key>"): a metric
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


def ingest(
    runtime: Runtime,
    program_key: str,
    raw_events: Sequence[Any],
    *,
    now: dt.datetime | None = None,
    then: Callable[[Connection, list[Outcome]], None] | None = None,
) -> list[Outcome]:
    """Ingest events in order; each gets an outcome. Retries the batch if a concurrent writer raced us.

    ``now`` is the time of receipt (default: the clock): the default ``occurred_at``, the day tier
    windows are judged on, and when pending points mature. An import of history passes the time the
    events would have been received, so tiers move as they would have then. ``then`` runs in the same
    transaction once the batch is scored (a clawback's audit entry: both or neither are written).
    """
    for attempt in range(RETRIES):
        try:
            with runtime.db.write() as connection:
                outcomes = _ingest(runtime, connection, program_key, raw_events, now or dt.datetime.now(dt.UTC))
                if then is not None:
                    then(connection, outcomes)
            observe_outcomes(program_key, outcomes)  # once committed: a rolled-back try counts nothing
            return outcomes
        except IntegrityError:
            if attempt == RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def _ingest(
    runtime: Runtime, connection: Connection, program_key: str, raw_events: Sequence[Any], received_at: dt.datetime
) -> list[Outcome]:
    program = programs.find_for_scoring(connection, program_key)
    compiled = runtime.programs.compiled(connection, program)
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

    cut = personal_targets.parts(compiled, (e.occurred_at or received_at for _, e, _ in fresh))
    if len(cut) > 1:  # parts take their participants one after the other: all of them first, in id order
        participants.lock_known(connection, program.id, {e.participant for _, e, _ in fresh})
    accepted: dict[str, str] = {}  # event id → digest, of events accepted earlier in this batch
    for part in cut:
        if fresh[part]:
            _score_and_write(runtime, connection, program, compiled, fresh[part], received_at, outcomes, accepted)
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


def _score_and_write(
    runtime: Runtime,
    connection: Connection,
    program: programs.ProgramRecord,
    compiled: CompiledProgram,
    fresh: list[tuple[int, EventIn, str]],
    received_at: dt.datetime,
    outcomes: list[Outcome | None],
    accepted: dict[str, str],
) -> None:
    unnumbered = [(i, e.to_event(received_at)) for i, e, _ in fresh]
    named = [[e.participant, referrals.named(compiled, e)] for _, e in unnumbered]  # in the order they appear
    ids, created = participants.ensure(connection, program.id, (p for pair in named for p in pair if p))
    participants.lock(connection, ids.values())
    # Numbered once the participants are held: batches that share a participant are scored in the order
    # they take it, and their events must be in the log in that order too, or replay would score them
    # in another (a goal completed by the other batch's event).
    numbers = allocate_ids(connection, t.events, "seq", len(fresh))
    events = [(i, replace(e, seq=n)) for (i, e), n in zip(unnumbered, numbers, strict=True)]
    earlier, reversed_by = store.earlier_events(connection, program.id, {e.reverses for _, e in events if e.reverses})
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
        mechanics=compiled.mechanics_state,
    )

    participants.load_inputs(connection, program.id, compiled, loaded.states)
    frozen = personal_targets.freeze(connection, program.id, compiled, loaded.states, ids, [e for _, e in events])
    referrals.load(connection, program.id, compiled, ids, loaded.states)
    tiers_held = tier_service.held(connection, program.id, compiled, ids.values(), received_at)
    for held in tiers_held.values():
        state = loaded.states[held.external_id]
        state.tier_value, state.tier_standing = held.value, held.standing

    wanted = {compiled.version, *(r.program_version for r in earlier.values())}
    versions = {v: runtime.programs.compiled(connection, program, v) for v in wanted}
    world = World(
        versions.__getitem__,
        states=loaded.states,
        find_earlier=earlier.get,
        reversed_earlier=reversed_by.get,
        today=local_date(received_at, compiled.timezone),
        kept=compiled.kept,
    )
    done: list[Effects] = []
    digests = {i: digest for i, _, digest in fresh}
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
        outcomes[i] = Outcome(event.id, "accepted", effects.awards(), [p.source for p in effects.problems])
    seen = list(dict.fromkeys(p for e in done for p in (e.event.participant, referrals.named(compiled, e.event)) if p))
    moved_ids = _number_as_seen(connection, ids, created, seen)
    personal_targets.store(connection, program.id, frozen, ids, seen, received_at)
    tiers_held = {moved_ids.get(pid, pid): held for pid, held in tiers_held.items()}
    if done:
        store.write_effects(connection, program.id, compiled, done, ids, received_at, accepted)
        referrals.write(connection, program.id, done, ids, received_at)
        reviews: dict[int, tuple[tier_service.Held, TierStanding, bool]] = {}
        for e in done:
            if e.tier_review is not None:
                pid = ids[e.event.participant]
                before = tiers_held[pid]
                moved = reviews[pid][2] if pid in reviews else False
                reviews[pid] = (before, e.tier_review.standing, moved or e.tier_review.change is not None)
        tier_service.write_reviews(connection, program.id, reviews, received_at)
    # a participant first seen in events that were all rejected was not really seen: bad input changes nothing
    unseen = created - set(seen)
    if unseen:
        participants.forget(connection, [ids[p] for p in unseen])


def _number_as_seen(connection: Connection, ids: dict[str, int], created: set[str], seen: list[str]) -> dict[int, int]:
    """Give the participants this batch created their ids in the order accepted events named them, as one
    event at a time would (a participant named first by a rejected event is created later, or not at all);
    updates ``ids`` and returns the ids that moved (old → new)."""
    if not created:
        return {}
    order = [p for p in seen if p in created]
    placed = set(order)
    order += sorted((p for p in created if p not in placed), key=ids.__getitem__)
    wanted = dict(zip(order, sorted(ids[p] for p in created), strict=True))
    moved = {ids[p]: new for p, new in wanted.items() if ids[p] != new}
    if moved:
        participants.renumber(connection, moved)
        ids.update(wanted)
    return moved
