"""Invariants the database itself enforces, proved by going around the code with raw SQL.

docs/architecture.md: one event per id, one ledger entry per idempotency key, an
append-only ledger, no negative balance or arrears, no zero entries. The code
never tries any of this; these tests do, straight through a connection, on SQLite
and on PostgreSQL, and check that the database refuses and nothing changed.
Then exactly-once under concurrency: the same batch from several threads at once.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection, Table, func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from levelup.events.ingest import Outcome, ingest
from levelup.programs import service as programs
from levelup.programs.validation import load_document
from levelup.runtime import Runtime
from levelup.storage import tables as t
from tests.conftest import EXAMPLES

ACME_TEXT = (EXAMPLES / "acme-sales.yaml").read_text()
KEY = "acme-sales"
THREADS = 8


def apply_program(runtime: Runtime, key: str = KEY) -> int:
    document = load_document(re.sub(r"(?m)^program: acme-sales$", f"program: {key}", ACME_TEXT), program=key)
    with runtime.db.write() as connection:
        record, _ = programs.apply(connection, document, actor="invariant-test")
    return record.id


def deal(event_id: str, participant: str = "ana", amount: int = 12_000, **extra: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "deal.won",
        "participant": participant,
        "occurred_at": "2026-11-20T15:04:05Z",
        "data": {"amount": amount},
        **extra,
    }


@pytest.fixture
def program(runtime: Runtime) -> int:
    """acme-sales with one deal booked: a participant, an event, two ledger entries and two positions."""
    program_id = apply_program(runtime)
    [outcome] = ingest(runtime, KEY, [deal("d-1")])
    assert outcome.status == "accepted" and len(outcome.awards) == 2
    return program_id


def snapshot(runtime: Runtime) -> tuple[list[Any], list[Any], list[Any]]:
    """Every ledger entry, position and event row, to show a refused statement changed nothing."""
    with runtime.db.read() as connection:
        return (
            [tuple(r) for r in connection.execute(select(t.ledger_entries).order_by(t.ledger_entries.c.id))],
            [
                tuple(r)
                for r in connection.execute(
                    select(t.positions).order_by(t.positions.c.participant_id, t.positions.c.currency)
                )
            ],
            [tuple(r) for r in connection.execute(select(t.events).order_by(t.events.c.seq))],
        )


def refused(runtime: Runtime, statement: str, params: dict[str, Any] | None = None) -> DBAPIError:
    """Run one raw statement in a transaction of its own; it must fail and change nothing."""
    before = snapshot(runtime)
    with pytest.raises(DBAPIError) as caught, runtime.db.write() as connection:
        connection.execute(text(statement), params or {})
    assert snapshot(runtime) == before
    return caught.value


def copy_row(table: Table, where: str, **overrides: str) -> str:
    """INSERT … SELECT copying one row of ``table`` (all columns but its generated key), with some replaced."""
    generated = {c.name for c in table.primary_key.columns if c.autoincrement is True or c.name in ("id", "seq")}
    columns = [c.name for c in table.columns if c.name not in generated]
    values = [overrides.get(c, c) for c in columns]
    return f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT {', '.join(values)} FROM {table.name} WHERE {where}"


# --------------------------------------------------------------------------- the ledger is append-only


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_entries SET amount = amount + 1",
        "UPDATE ledger_entries SET explain = 'rewritten' WHERE id = (SELECT min(id) FROM ledger_entries)",
        "UPDATE ledger_entries SET amount = amount WHERE id = (SELECT min(id) FROM ledger_entries)",  # even a no-op
        "DELETE FROM ledger_entries WHERE id = (SELECT max(id) FROM ledger_entries)",
        "DELETE FROM ledger_entries",
    ],
)
def test_ledger_entries_cannot_be_updated_or_deleted(runtime: Runtime, program: int, statement: str) -> None:
    error = refused(runtime, statement)
    assert "append-only" in str(error.orig)


def test_the_ledger_cannot_be_truncated_on_postgres(runtime: Runtime, program: int) -> None:
    if runtime.db.is_sqlite:
        pytest.skip("SQLite has no TRUNCATE (its DELETE without WHERE is refused above)")
    assert "append-only" in str(refused(runtime, "TRUNCATE ledger_entries CASCADE").orig)


def test_appending_to_the_ledger_is_still_allowed(runtime: Runtime, program: int) -> None:
    """The triggers refuse changes, not inserts: a correction is a new entry."""
    statement = copy_row(
        t.ledger_entries,
        "id = (SELECT min(id) FROM ledger_entries)",
        amount="-amount",
        kind="'adjustment'",
        idempotency_key="'correction-1'",
        event_seq="NULL",
    )
    with runtime.db.write() as connection:
        connection.execute(text(statement))
        count = connection.execute(select(func.count()).select_from(t.ledger_entries)).scalar_one()
    assert count == 3


# --------------------------------------------------------------------------- unique keys and checks


def test_a_second_ledger_entry_with_the_same_idempotency_key_is_refused(runtime: Runtime, program: int) -> None:
    statement = copy_row(t.ledger_entries, "id = (SELECT min(id) FROM ledger_entries)")
    assert isinstance(refused(runtime, statement), IntegrityError)


def test_the_same_idempotency_key_in_another_program_is_fine(runtime: Runtime, program: int) -> None:
    """Uniqueness is per program: programs are fully isolated."""
    other = apply_program(runtime, "acme-other")
    statement = copy_row(t.ledger_entries, "id = (SELECT min(id) FROM ledger_entries)", program_id=str(other))
    with runtime.db.write() as connection:
        connection.execute(text(statement))


def test_a_ledger_entry_of_zero_is_refused(runtime: Runtime, program: int) -> None:
    statement = copy_row(
        t.ledger_entries, "id = (SELECT min(id) FROM ledger_entries)", amount="0", idempotency_key="'zero-1'"
    )
    assert isinstance(refused(runtime, statement), IntegrityError)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE positions SET available = -1",
        "UPDATE positions SET available = available - (available + 1)",
        "UPDATE positions SET arrears = -1",
        "UPDATE positions SET arrears = arrears - 1",
    ],
)
def test_negative_available_or_arrears_is_refused(runtime: Runtime, program: int, statement: str) -> None:
    assert isinstance(refused(runtime, statement), IntegrityError)


def test_a_new_position_cannot_start_negative(runtime: Runtime, program: int) -> None:
    statement = copy_row(t.positions, "currency = 'xp'", currency="'gems'", available="-5")
    assert isinstance(refused(runtime, statement), IntegrityError)


def test_a_second_event_with_the_same_id_is_refused(runtime: Runtime, program: int) -> None:
    statement = copy_row(t.events, "event_id = 'd-1'", content_hash="'another-hash'")
    assert isinstance(refused(runtime, statement), IntegrityError)


def test_a_second_reversal_of_the_same_event_is_refused(runtime: Runtime, program: int) -> None:
    [outcome] = ingest(runtime, KEY, [deal("r-1", reverses="d-1", data={})])
    assert outcome.status == "accepted"
    statement = copy_row(t.reversals, "reversed_event = 'd-1'", by_event="'r-2'")
    assert isinstance(refused(runtime, statement), IntegrityError)


# --------------------------------------------------------------------------- exactly once, under concurrency


def in_threads(count: int, work: Callable[[int], list[Outcome]]) -> list[list[Outcome]]:
    """Run ``work(i)`` in ``count`` threads released at the same instant; re-raise the first failure."""
    barrier = threading.Barrier(count)
    results: list[list[Outcome] | None] = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as exc:  # collected and re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck"
    if errors:
        raise errors[0]
    return [r for r in results if r is not None]


def ledger_rows(connection: Connection, program_id: int) -> Counter[tuple[Any, ...]]:
    lg, e, p = t.ledger_entries, t.events, t.participants
    return Counter(
        tuple(r)
        for r in connection.execute(
            select(e.c.event_id, p.c.external_id, lg.c.currency, lg.c.amount, lg.c.kind)
            .select_from(lg.join(e, e.c.seq == lg.c.event_seq).join(p, p.c.id == lg.c.participant_id))
            .where(lg.c.program_id == program_id)
        )
    )


def balances(connection: Connection, program_id: int) -> dict[tuple[str, str], tuple[int, int]]:
    pos, p = t.positions, t.participants
    return {
        (r[0], r[1]): (r[2], r[3])
        for r in connection.execute(
            select(p.c.external_id, pos.c.currency, pos.c.available, pos.c.arrears)
            .join(p, p.c.id == pos.c.participant_id)
            .where(pos.c.program_id == program_id)
        )
    }


def ledger_sums(connection: Connection, program_id: int) -> dict[tuple[str, str], int]:
    sums: Counter[tuple[str, str]] = Counter()
    for (_event, participant, currency, amount, _kind), n in ledger_rows(connection, program_id).items():
        sums[(participant, currency)] += amount * n
    return dict(sums)


@pytest.mark.parametrize("round_", range(3))
def test_the_same_batch_from_eight_threads_takes_effect_once(runtime: Runtime, round_: int) -> None:
    """The same events sent by 8 workers at once: each accepted by exactly one, duplicates elsewhere."""
    program_id = apply_program(runtime)
    batch = [
        deal(f"d-{round_}-1", "ana"),
        deal(f"d-{round_}-2", "bo", amount=50_000),
        {**deal(f"r-{round_}-1", "ana"), "type": "deal.reopened", "data": {}, "reverses": f"d-{round_}-1"},
        {
            "id": f"c-{round_}-1",
            "type": "activity.logged",
            "participant": "cy",
            "occurred_at": "2026-11-20T16:00:00Z",
            "data": {"kind": "call", "duration_s": 90},
        },
    ]
    alone = apply_program(runtime, "acme-alone")  # the expected ledger: the batch once, in a program of its own
    ingest(runtime, "acme-alone", batch)
    with runtime.db.read() as connection:
        expected = ledger_rows(connection, alone)

    results = in_threads(THREADS, lambda _i: ingest(runtime, KEY, batch))

    assert len(results) == THREADS
    for position, event in enumerate(batch):
        statuses = Counter(outcomes[position].status for outcomes in results)
        assert statuses == {"accepted": 1, "duplicate": THREADS - 1}, (event["id"], statuses)
    with runtime.db.read() as connection:
        stored = connection.execute(
            select(t.events.c.event_id, func.count())
            .where(t.events.c.program_id == program_id)
            .group_by(t.events.c.event_id)
        ).all()
        assert sorted(stored) == sorted((e["id"], 1) for e in batch)
        assert ledger_rows(connection, program_id) == expected
        assert {k: a - r for k, (a, r) in balances(connection, program_id).items() if (a, r) != (0, 0)} == {
            k: v for k, v in ledger_sums(connection, program_id).items() if v
        }


def test_different_events_for_one_participant_from_eight_threads_lose_no_update(runtime: Runtime) -> None:
    """Concurrent batches for one participant: the balance is the sum of every award, none lost, none doubled.

    40 deals in one week also reach the five-a-week goal: its reward is paid once.
    """
    program_id = apply_program(runtime)
    results = in_threads(
        THREADS,
        lambda i: ingest(runtime, KEY, [deal(f"w{i}-{n}", "ana", amount=1000 * (i + 1) + n) for n in range(5)]),
    )
    awarded: Counter[str] = Counter()
    for outcomes in results:
        assert [o.status for o in outcomes] == ["accepted"] * 5
        for outcome in outcomes:
            for award in outcome.awards:
                awarded[award["currency"]] += award["amount"]
    with runtime.db.read() as connection:
        rows = ledger_rows(connection, program_id)
        by_rule: Counter[str] = Counter()
        for (_event, _participant, currency, amount, kind), n in rows.items():
            if kind == "rule":
                by_rule[currency] += amount * n
        assert dict(by_rule) == dict(awarded)
        assert sum(n for row, n in rows.items() if row[4] == "challenge") == 1  # five-a-week, once
        positions = {k: a - r for k, (a, r) in balances(connection, program_id).items()}
        assert positions == ledger_sums(connection, program_id)
