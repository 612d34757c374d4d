"""Properties of live ingestion and replay through the real database, on SQLite and PostgreSQL.

The guarantees of docs/architecture.md: exactly-once per event id, a balance is the sum of its ledger,
never below zero, and replaying the event log gives what live processing
gave. Streams hold duplicates (same id, same content), conflicts (same id,
different content), reversals (some invalid), times out of order around the New
York DST changes, and, for arrears, debits between batches.

The ``runtime`` fixture is one database per test; Hypothesis runs many examples
in it, so each example applies the acme-sales document under a program key of
its own (programs are fully isolated) and looks only at that program's rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, func, select, text

from levelup.events.ingest import Outcome, ingest
from levelup.events.replay import replay
from levelup.ledger import service as ledger
from levelup.programs import service as programs
from levelup.programs.validation import load_document
from levelup.runtime import Runtime
from levelup.storage import tables as t
from tests.engine.test_engine_properties import ACME_TEXT, DISPLAY_ZONES, amounts, instants, money, rfc3339
from tests.storage.test_quests_races_duels import CAFE_TEXT

DB_SETTINGS = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PARTICIPANTS = ("ana", "bo", "cy")


def new_program(runtime: Runtime) -> str:
    """Apply acme-sales under a fresh key and return it: each Hypothesis example gets a program of its own."""
    key = f"acme-{uuid.uuid4().hex[:12]}"
    text_ = re.sub(r"(?m)^program: acme-sales$", f"program: {key}", ACME_TEXT)
    with runtime.db.write() as connection:
        programs.apply(connection, load_document(text_, program=key), actor="property-test")
    return key


# --------------------------------------------------------------------------- raw events, as a CRM sends them


@dataclasses.dataclass(frozen=True)
class Debit:
    """Between batches: an admin debits part of a participant's coins (a manual adjustment, like a redemption)."""

    participant: str
    share: float


Step = dict[str, Any] | Debit

huge_amounts = st.one_of(amounts, st.floats(-1e15, 1e15, allow_nan=False, allow_infinity=False))

times = st.builds(rfc3339, instants, st.sampled_from(DISPLAY_ZONES), st.booleans())


def deal(amount_strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(lambda amount: {"amount": amount}, amount_strategy)


def payloads(amount_strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """(type, data) of a new event: mostly deals, as they carry the amounts."""
    deals = st.tuples(st.just("deal.won"), deal(amount_strategy))
    calls = st.tuples(
        st.just("activity.logged"),
        st.builds(
            lambda kind, duration: {"kind": kind, "duration_s": duration},
            st.sampled_from(["call", "call", "email"]),
            st.sampled_from([30, 59, 59.999, 60, 61.5, 300]),
        ),
    )
    tasks = st.tuples(
        st.just("task.completed"),
        st.builds(lambda due, completed: {"due_at": due, "completed_at": completed}, times, times),
    )
    other = st.tuples(st.just("lead.created"), st.just({"source": "web"}))
    return st.one_of(deals, calls, deals, tasks, deals, other)


@dataclasses.dataclass(frozen=True)
class New:
    kind: str
    data: dict[str, Any]
    participant: str
    occurred_at: str | None  # None: the time of receipt


@dataclasses.dataclass(frozen=True)
class Again:
    """Send an earlier event again: unchanged (a duplicate), or with other content under its id (a conflict)."""

    which: int  # which event sent so far: 0 the last one, 1 the one before…
    other: New | None  # None: the same content; or this other event under the same id
    touch_data: bool  # with other=None: change only the data (also a conflict)


@dataclasses.dataclass(frozen=True)
class Reverse:
    which: int  # the event to reverse, as in Again (a reversal, or one reversed already, is refused)
    occurred_at: str


def new_events(amount_strategy: st.SearchStrategy[Any], participants: Sequence[str]) -> st.SearchStrategy[New]:
    return st.builds(
        lambda payload, participant, when: New(payload[0], payload[1], participant, when),
        payloads(amount_strategy),
        st.sampled_from(participants),
        st.one_of(times, times, times, st.none()),
    )


def build(specs: Sequence[New | Again | Reverse | Debit]) -> list[Step]:
    """Turn step descriptions into raw events with ids e0, e1…; an Again or Reverse with nothing before is dropped."""
    steps: list[Step] = []
    sent: list[dict[str, Any]] = []
    for i, spec in enumerate(specs):
        if isinstance(spec, Debit):
            steps.append(spec)
            continue
        if isinstance(spec, New):
            event = raw(f"e{i}", spec)
        elif not sent:
            continue
        elif isinstance(spec, Reverse):
            target = sent[-1 - spec.which % len(sent)]
            event = {
                "id": f"e{i}",
                "type": "deal.reopened",
                "participant": target["participant"],
                "occurred_at": spec.occurred_at,
                "reverses": target["id"],
            }
        else:
            original = sent[-1 - spec.which % len(sent)]
            if spec.other is not None:
                event = raw(original["id"], spec.other)
            elif spec.touch_data:
                event = {**original, "data": {**original.get("data", {}), "changed": i}}
            else:
                event = dict(original)
        steps.append(event)
        sent.append(event)
    return steps


def raw(event_id: str, spec: New) -> dict[str, Any]:
    event = {"id": event_id, "type": spec.kind, "participant": spec.participant, "data": spec.data}
    if spec.occurred_at is not None:
        event["occurred_at"] = spec.occurred_at
    return event


def streams(
    *,
    amount_strategy: st.SearchStrategy[Any] = money,
    min_size: int = 6,
    max_size: int = 30,
    debits: bool = False,
    participants: Sequence[str] = PARTICIPANTS,
) -> st.SearchStrategy[list[Step]]:
    """Raw events with duplicates, conflicts and reversals of earlier ids mixed in (and debits, if asked)."""
    fresh = new_events(amount_strategy, participants)
    index = st.one_of(st.integers(0, 2), st.integers(0, 1000))  # counted back from the last event sent
    step = st.one_of(
        fresh,
        fresh,
        st.builds(Again, index, st.one_of(st.none(), fresh), st.booleans()),
        st.builds(Reverse, index, times),
        *([st.builds(Debit, st.sampled_from(participants), st.floats(0.1, 1.0))] if debits else []),
    )
    return st.lists(step, min_size=min_size, max_size=max_size).map(build)


def batches(steps: Sequence[Step], size: int) -> Iterator[list[dict[str, Any]] | Debit]:
    """The events in batches of ``size`` (0: all in one); a debit closes the batch before it."""
    batch: list[dict[str, Any]] = []
    for step in steps:
        if isinstance(step, Debit):
            if batch:
                yield batch
                batch = []
            yield step
            continue
        batch.append(step)
        if size and len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def feed(runtime: Runtime, key: str, steps: Sequence[Step], size: int) -> list[Outcome]:
    """Ingest the stream batch by batch (debits in between); every event gets exactly one outcome."""
    outcomes: list[Outcome] = []
    for batch in batches(steps, size):
        if isinstance(batch, Debit):
            debit(runtime, key, batch)
            continue
        got = ingest(runtime, key, batch)
        assert [o.id for o in got] == [e["id"] for e in batch]
        outcomes += got
    return outcomes


def debit(runtime: Runtime, key: str, step: Debit) -> None:
    with runtime.db.write() as connection:
        program = programs.find(connection, key)
        available = connection.execute(
            select(t.positions.c.available)
            .join(t.participants, t.participants.c.id == t.positions.c.participant_id)
            .where(
                t.participants.c.program_id == program.id,
                t.participants.c.external_id == step.participant,
                t.positions.c.currency == "coins",
            )
        ).scalar_one_or_none()
        amount = math.floor((available or 0) * step.share)
        if amount > 0:
            ledger.adjust(
                connection,
                program,
                runtime.programs.compiled(connection, program),
                participant=step.participant,
                currency="coins",
                amount=-amount,
                note="property test debit",
                actor="property-test",
                idempotency_key=uuid.uuid4().hex,
            )


# --------------------------------------------------------------------------- what the database holds for one program


def program_id(connection: Connection, key: str) -> int:
    return programs.find(connection, key).id


def stored_ledger(connection: Connection, key: str) -> Counter[tuple[Any, ...]]:
    """(event id, kind, rule, participant, currency, amount) of every entry: a multiset."""
    e, p, lg = t.events, t.participants, t.ledger_entries
    rows = connection.execute(
        select(e.c.event_id, lg.c.kind, lg.c.rule, p.c.external_id, lg.c.currency, lg.c.amount)
        .select_from(lg.outerjoin(e, e.c.seq == lg.c.event_seq).join(p, p.c.id == lg.c.participant_id))
        .where(lg.c.program_id == program_id(connection, key))
    )
    return Counter(tuple(r) for r in rows)


def stored_positions(connection: Connection, key: str) -> dict[tuple[str, str], tuple[int, int, int]]:
    p, pos = t.participants, t.positions
    rows = connection.execute(
        select(p.c.external_id, pos.c.currency, pos.c.available, pos.c.arrears, pos.c.earned)
        .join(p, p.c.id == pos.c.participant_id)
        .where(pos.c.program_id == program_id(connection, key))
    )
    return {(r[0], r[1]): (r[2], r[3], r[4]) for r in rows if tuple(r[2:]) != (0, 0, 0)}


def ledger_sums(connection: Connection, key: str) -> dict[tuple[str, str], int]:
    p, lg = t.participants, t.ledger_entries
    rows = connection.execute(
        select(p.c.external_id, lg.c.currency, func.sum(lg.c.amount))
        .join(p, p.c.id == lg.c.participant_id)
        .where(lg.c.program_id == program_id(connection, key))
        .group_by(p.c.external_id, lg.c.currency)
    )
    return {(r[0], r[1]): int(r[2]) for r in rows}


def stored_metrics(connection: Connection, key: str) -> dict[tuple[str, str, str], float]:
    """(participant, metric, period) → value, for the participants' count and sum metrics (zeros left out)."""
    p, m = t.participants, t.metric_totals
    rows = connection.execute(
        select(p.c.external_id, m.c.metric, m.c.period, m.c.value)
        .join(p, p.c.id == m.c.subject_id)
        .where(m.c.program_id == program_id(connection, key), m.c.subject_kind == "p")
    )
    return {(r[0], r[1], r[2]): r[3] for r in rows if r[3] != 0}


def stored_events(connection: Connection, key: str) -> dict[str, str]:
    rows = connection.execute(
        select(t.events.c.event_id, t.events.c.content_hash).where(t.events.c.program_id == program_id(connection, key))
    )
    return dict(rows.all())


def row_counts(connection: Connection, key: str) -> tuple[int, int]:
    pid = program_id(connection, key)
    ledger_rows = connection.execute(
        select(func.count()).select_from(t.ledger_entries).where(t.ledger_entries.c.program_id == pid)
    ).scalar_one()
    event_rows = connection.execute(
        select(func.count()).select_from(t.events).where(t.events.c.program_id == pid)
    ).scalar_one()
    return ledger_rows, event_rows


def same_metrics(a: dict[Any, float], b: dict[Any, float]) -> bool:
    """Equal up to float rounding: sums added in another order may differ in the last bits."""
    return set(a) == set(b) and all(math.isclose(a[k], b[k], rel_tol=1e-12, abs_tol=1e-6) for k in a)


def assert_balances_are_ledger_sums(connection: Connection, key: str) -> None:
    positions = stored_positions(connection, key)
    sums = {k: v for k, v in ledger_sums(connection, key).items() if v}
    for where, (available, arrears, _earned) in positions.items():
        assert available >= 0 and arrears >= 0, where
        assert available == 0 or arrears == 0, where
        assert sums.get(where, 0) == available - arrears, (where, positions[where], sums.get(where))
    assert set(sums) <= set(positions)


# --------------------------------------------------------------------------- minimal cases Hypothesis found

AT = "2026-11-20T15:04:05Z"  # a Friday afternoon in New York, week 2026-W47


def won(event_id: str, amount: float = 1000, participant: str = "ana") -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "deal.won",
        "participant": participant,
        "occurred_at": AT,
        "data": {"amount": amount},
    }


def reopened(event_id: str, reverses: str, participant: str = "ana") -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "deal.reopened",
        "participant": participant,
        "occurred_at": AT,
        "reverses": reverses,
    }


# three deals in a week earn the hot-week badge; a reversal in a later batch takes it back
BADGE_TAKEN_BACK_LATER: list[Step] = [won("e0"), won("e1"), won("e2"), reopened("e3", "e0")]
# an event refused (a reversal of a reversal), then another event under its id: a conflict with nothing stored
REFUSED_THEN_REUSED_ID: list[Step] = [
    won("e0"),
    reopened("e1", "e0"),
    reopened("e2", "e1"),
    {**won("e2", 5000), "type": "lead.created"},
]
# partial sums of a batch added to the stored total differ in the last bits from event-by-event sums
FLOAT_ORDER: list[Step] = [won("e0", 0), won("e1", 1), won("e2", 1), won("e3", 2**53)]


# --------------------------------------------------------------------------- properties


@DB_SETTINGS
@given(steps=streams(debits=True), size=st.sampled_from([0, 1, 2, 3, 7]))
@example(steps=BADGE_TAKEN_BACK_LATER, size=3)
def test_replay_agrees_with_live_ingestion(runtime: Runtime, steps: list[Step], size: int) -> None:
    """Replay recomputes the same ledger, metrics, counters and balances; and balance == Σ ledger."""
    key = new_program(runtime)
    outcomes = feed(runtime, key, steps, size)
    report = replay(runtime, key)
    assert report.mismatches == [] and report.ok
    with runtime.db.read() as connection:
        assert_balances_are_ledger_sums(connection, key)
        stored = stored_events(connection, key)
    accepted = [o.id for o in outcomes if o.status == "accepted"]
    assert len(accepted) == len(set(accepted)) == len(stored), "one stored event per accepted id, exactly once"
    assert set(accepted) == set(stored)
    assert report.events == len(stored)


@settings(DB_SETTINGS, max_examples=20)
@given(steps=streams(amount_strategy=huge_amounts, participants=PARTICIPANTS[:1]), size=st.sampled_from([0, 2, 3, 7]))
@example(steps=FLOAT_ORDER, size=2)
def test_replay_agrees_with_live_ingestion_for_huge_amounts(runtime: Runtime, steps: list[Step], size: int) -> None:
    """The same with amounts from -10^18 to 10^18 and floats to 10^15: failing awards, huge metric sums.

    Live ingestion adds a batch's contributions up before adding them to the stored
    total; replay adds event by event. Float sums in another order may differ in the
    last bits: replay must not call that a mismatch.
    """
    key = new_program(runtime)
    feed(runtime, key, steps, size)
    report = replay(runtime, key)
    assert report.mismatches == []
    with runtime.db.read() as connection:
        assert_balances_are_ledger_sums(connection, key)


@DB_SETTINGS
@given(steps=streams(debits=True), size=st.sampled_from([0, 1, 7]))
def test_ingesting_the_same_stream_again_changes_nothing(runtime: Runtime, steps: list[Step], size: int) -> None:
    """docs/architecture.md: retries are always safe: the second time everything is a duplicate (or refused again)."""
    key = new_program(runtime)
    events = [s for s in steps if not isinstance(s, Debit)]
    feed(runtime, key, steps, size)
    with runtime.db.read() as connection:
        before = (
            row_counts(connection, key),
            stored_ledger(connection, key),
            stored_positions(connection, key),
            stored_metrics(connection, key),
            stored_events(connection, key),
        )
    again = feed(runtime, key, events, size)
    assert [o.status for o in again if o.status == "accepted"] == []
    assert all(o.awards == [] for o in again)
    with runtime.db.read() as connection:
        after = (
            row_counts(connection, key),
            stored_ledger(connection, key),
            stored_positions(connection, key),
            stored_metrics(connection, key),
            stored_events(connection, key),
        )
    assert after == before
    for event in events:
        if event["id"] in before[4]:
            matching = [o for o in again if o.id == event["id"]]
            assert {o.status for o in matching} <= {"duplicate", "rejected"}
    assert replay(runtime, key).ok


@DB_SETTINGS
@given(steps=streams(max_size=40))
@example(steps=REFUSED_THEN_REUSED_ID)
def test_batch_size_does_not_change_the_outcome(runtime: Runtime, steps: list[Step]) -> None:
    """One stream in batches of 1, of 7 and all at once, into three programs: same events, ledger, balances, metrics."""
    keys = {size: new_program(runtime) for size in (1, 7, 0)}
    for size, key in keys.items():
        feed(runtime, key, steps, size)
    with runtime.db.read() as connection:
        seen = {
            size: (
                stored_events(connection, key),
                stored_ledger(connection, key),
                stored_positions(connection, key),
                stored_metrics(connection, key),
            )
            for size, key in keys.items()
        }
    one_by_one = seen[1]
    for size in (7, 0):
        events, entries, positions, metrics = seen[size]
        assert events == one_by_one[0], f"batches of {size or 'all'}: other events stored"
        assert entries == one_by_one[1], f"batches of {size or 'all'}: other ledger entries"
        assert positions == one_by_one[2], f"batches of {size or 'all'}: other balances"
        assert same_metrics(metrics, one_by_one[3]), f"batches of {size or 'all'}: other metric totals"


anchor = [
    {"id": "anchor-deal", "type": "deal.won", "participant": "ana", "occurred_at": "2026-11-20T15:04:05Z",
     "data": {"amount": 12000}},
    {"id": "anchor-call", "type": "activity.logged", "participant": "ana", "occurred_at": "2026-11-20T16:00:00Z",
     "data": {"kind": "call", "duration_s": 90}},
]  # fmt: skip

CORRUPTIONS = {
    "metric": "UPDATE metric_totals SET value = value + 1 WHERE program_id = :program",
    "balance": "UPDATE positions SET available = available + 5 WHERE program_id = :program",
    "counter": "UPDATE rule_counters SET count = count + 1 "
    "WHERE participant_id IN (SELECT id FROM participants WHERE program_id = :program)",
}


@DB_SETTINGS
@given(steps=streams(max_size=20), size=st.sampled_from([0, 1, 7]), corruption=st.sampled_from(sorted(CORRUPTIONS)))
@example(steps=[], size=0, corruption="metric")
def test_rebuild_restores_a_corrupted_projection(
    runtime: Runtime, steps: list[Step], size: int, corruption: str
) -> None:
    """Projections can always be recomputed from the log: replay sees a corruption, rebuild repairs it."""
    key = new_program(runtime)
    feed(runtime, key, [*anchor, *steps], size)
    with runtime.db.read() as connection:
        metrics, positions = stored_metrics(connection, key), stored_positions(connection, key)
    with runtime.db.write() as connection:
        changed = connection.execute(text(CORRUPTIONS[corruption]), {"program": program_id(connection, key)})
        assert changed.rowcount > 0
    damaged = replay(runtime, key)
    assert not damaged.ok, f"replay did not notice the corrupted {corruption}"
    assert any(m.startswith({"metric": "metric", "balance": "balance", "counter": "rule counter"}[corruption])
               for m in damaged.mismatches), damaged.mismatches  # fmt: skip
    replay(runtime, key, rebuild=True)
    repaired = replay(runtime, key)
    assert repaired.mismatches == []
    with runtime.db.read() as connection:
        assert same_metrics(stored_metrics(connection, key), metrics)
        assert stored_positions(connection, key) == positions
        assert_balances_are_ledger_sums(connection, key)


@settings(DB_SETTINGS, max_examples=5)
@given(huge=st.one_of(st.integers(min_value=2**64), st.integers(max_value=-(2**63) - 1)))
def test_every_event_gets_an_outcome_whatever_its_numbers(runtime: Runtime, huge: int) -> None:
    """docs/architecture.md: bad input gets a clear error and changes nothing — and the rest of the batch still goes in.

    Python callers (the CLI importer reads JSON Lines with ``json.loads``) can pass
    integers no 64-bit JSON encoder takes.
    """
    key = new_program(runtime)
    batch = [
        {"id": "ok-1", "type": "deal.won", "participant": "ana", "occurred_at": "2026-11-20T15:04:05Z",
         "data": {"amount": 12000}},
        {"id": "big", "type": "deal.won", "participant": "ana", "occurred_at": "2026-11-20T15:04:05Z",
         "data": {"amount": huge}},
        {"id": "ok-2", "type": "deal.won", "participant": "bo", "occurred_at": "2026-11-20T15:04:05Z",
         "data": {"amount": 12000}},
    ]  # fmt: skip
    outcomes = ingest(runtime, key, batch)
    assert [(o.id, o.status) for o in outcomes if o.id != "big"] == [("ok-1", "accepted"), ("ok-2", "accepted")]
    assert next(o for o in outcomes if o.id == "big").status in ("accepted", "rejected")
    assert replay(runtime, key).ok


# --------------------------------------------------------------------------- quests


def new_quest_program(runtime: Runtime) -> str:
    """Apply brewhouse-rewards (the welcome quest) with a weekly quest under a fresh key."""
    key = f"cafe-{uuid.uuid4().hex[:12]}"
    text_ = re.sub(r"(?m)^program: brewhouse-rewards$", f"program: {key}", CAFE_TEXT)
    with runtime.db.write() as connection:
        programs.apply(connection, load_document(text_, program=key), actor="property-test")
    return key


@dataclasses.dataclass(frozen=True)
class QuestAct:
    kind: str  # an event type the quests' steps count
    participant: str
    minute: int  # minutes after Monday 16 November 2026 09:00 UTC: two ISO weeks, in any order


@dataclasses.dataclass(frozen=True)
class QuestUndo:
    which: int  # the event to reverse, counted back from the last one sent (a bad target is refused)


def quest_events(specs: Sequence[QuestAct | QuestUndo]) -> list[Step]:
    """Events q0, q1…; a reversal names one of the acts sent before (one reversed already is refused)."""
    sent: list[dict[str, Any]] = []
    acts: list[dict[str, Any]] = []
    for i, spec in enumerate(specs):
        if isinstance(spec, QuestAct):
            at = QUEST_START + dt.timedelta(minutes=spec.minute)
            data = {"amount": 3, "text": "fine"} if spec.kind != "profile.completed" else {}
            body = {"id": f"q{i}", "type": spec.kind, "participant": spec.participant, "data": data}
            acts.append(body | {"occurred_at": at.isoformat()})
            sent.append(acts[-1])
        elif acts:
            target = acts[-1 - spec.which % len(acts)]
            sent.append(
                {
                    "id": f"q{i}",
                    "type": "purchase.refunded",
                    "participant": target["participant"],
                    "occurred_at": target["occurred_at"],
                    "reverses": target["id"],
                }
            )
    return list(sent)


QUEST_START = dt.datetime(2026, 11, 16, 9, 0, tzinfo=dt.UTC)
quest_acts = st.builds(
    QuestAct,
    st.sampled_from(["profile.completed", "purchase.completed", "purchase.completed", "review.posted"]),
    st.sampled_from(PARTICIPANTS[:2]),
    st.integers(0, 14 * 24 * 60 - 1),
)
quest_specs = st.lists(
    st.one_of(quest_acts, quest_acts, quest_acts, st.builds(QuestUndo, st.integers(0, 5))), min_size=8, max_size=40
)


@DB_SETTINGS
@given(specs=quest_specs, size=st.sampled_from([0, 1, 3]))
def test_replay_agrees_with_live_ingestion_for_quests(
    runtime: Runtime, specs: list[QuestAct | QuestUndo], size: int
) -> None:
    """Quest progress loaded batch by batch from the database equals what replay recomputes, and a
    quest's reward is held exactly while all its steps are done (paid once, taken back on reopening)."""
    key = new_quest_program(runtime)
    feed(runtime, key, quest_events(specs), size)
    report = replay(runtime, key)
    assert report.mismatches == []
    with runtime.db.read() as connection:
        assert_balances_are_ledger_sums(connection, key)
        pid = program_id(connection, key)
        p = t.participants.c
        progress = {
            (r.external_id, r.challenge, r.period): list(r.baselines)
            for r in connection.execute(
                select(
                    p.external_id, t.quest_progress.c.challenge, t.quest_progress.c.period, t.quest_progress.c.baselines
                )
                .join(t.participants, p.id == t.quest_progress.c.participant_id)
                .where(t.quest_progress.c.program_id == pid)
            )
        }
        completed = {
            tuple(r)
            for r in connection.execute(
                select(p.external_id, t.challenge_completions.c.challenge, t.challenge_completions.c.period)
                .join(t.participants, p.id == t.challenge_completions.c.participant_id)
                .where(t.challenge_completions.c.program_id == pid)
            )
        }
        net: Counter[tuple[str, str, str]] = Counter()
        for who, idempotency_key, amount in connection.execute(
            select(p.external_id, t.ledger_entries.c.idempotency_key, t.ledger_entries.c.amount)
            .join(t.participants, p.id == t.ledger_entries.c.participant_id)
            .where(t.ledger_entries.c.program_id == pid)
        ):
            _seq, kind, *rest = idempotency_key.split(":")
            if kind in ("challenge", "challenge-undone"):
                net[(who, rest[0], rest[1])] += amount
    steps = {"welcome": 3, "regular": 3}
    rewards = {"welcome": 100, "regular": 30}
    for (who, quest, period), baselines in progress.items():
        done = len(baselines) == steps[quest] + 1
        assert 1 <= len(baselines) <= steps[quest] + 1
        assert ((who, quest, period) in completed) == done, (who, quest, period, baselines)
        assert net[(who, quest, period)] == (rewards[quest] if done else 0), (who, quest, period, baselines)
    assert {k for k, v in net.items() if v} <= set(progress)
