"""Deterministic fault simulation, in the spirit of TigerBeetle's VOPR: a seeded generator of operations
(batches of purchases, refunds whole and partial, times out of order, duplicate deliveries, redemptions
and their retries and cancellations, adjustments, the periodic jobs) runs against the engine and a real
database, with storage faults injected (a write transaction that fails after all its writes, before
it commits: nothing of it may remain, and the retry must then take effect once). The books are checked after every step:

- each balance equals the sum of its ledger, and is never negative;
- a spendable currency's live lots add up to its balance;
- a reward's redeemed count equals its live redemptions and never passes its stock;
- a step that failed changed nothing; a duplicate delivery changed nothing.

At the end replay must find nothing to correct. A failure names its seed: ``LEVELUP_FAULT_SEED=<n>``
runs that seed alone. Three seeds a database here; ``LEVELUP_LONG_TESTS=1`` runs a hundred.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Connection, func, select

from levelup.errors import LevelupError
from levelup.events.ingest import ingest
from levelup.events.replay import replay
from levelup.jobs import registry as jobs
from levelup.ledger import service as ledger
from levelup.programs import service as programs
from levelup.programs.validation import load_document
from levelup.rewards import service as rewards
from levelup.runtime import Runtime
from levelup.storage import tables as t
from tests.conftest import EXAMPLES

NOW = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)
CUSTOMERS = [f"cus-{i}" for i in range(6)]
STEPS = 50
SEEDS = (
    [int(os.environ["LEVELUP_FAULT_SEED"])]
    if os.environ.get("LEVELUP_FAULT_SEED")
    else range(100 if os.environ.get("LEVELUP_LONG_TESTS") else 3)
)
# brewhouse-rewards with a scarce reward anyone can take, so stock runs out within a run
DOCUMENT = (EXAMPLES / "brewhouse-rewards.yaml").read_text() + (
    "  - {key: tote, name: Tote bag, cost: {beans: 120}, stock: 4}\n"
)


class InjectedFault(Exception):
    """A storage fault: raised inside the transaction after its writes, so the database must roll back."""


@contextmanager
def failing_commits(runtime: Runtime) -> Iterator[None]:
    """Every write transaction does all its writes, then fails before it commits: nothing may remain."""
    real = runtime.db.write

    @contextmanager
    def write() -> Iterator[Connection]:
        with real() as connection:
            yield connection
            raise InjectedFault

    runtime.db.write = write  # type: ignore[method-assign]
    try:
        yield
    finally:
        runtime.db.write = real  # type: ignore[method-assign]


class Simulation:
    def __init__(self, runtime: Runtime, seed: int) -> None:
        self.runtime, self.rng, self.seed = runtime, random.Random(seed), seed
        self.key = f"sim-{uuid.uuid4().hex[:10]}"
        with runtime.db.write() as connection:
            self.record, _ = programs.apply(
                connection,
                load_document(DOCUMENT.replace("brewhouse-rewards", self.key), program=self.key),
                actor="sim",
            )
        self.sent: list[list[dict[str, Any]]] = []
        self.purchases: list[tuple[str, str]] = []  # (event id, customer) accepted, not yet fully refunded
        self.redemptions: list[int] = []
        self.n = 0
        self.log: list[str] = []

    # ------------------------------------------------------------------ operations

    def _id(self, what: str) -> str:
        self.n += 1
        return f"{what}-{self.seed}-{self.n}"

    def batch(self) -> Callable[[], Any]:
        events: list[dict[str, Any]] = []
        for _ in range(self.rng.randint(1, 8)):
            roll = self.rng.random()
            customer = self.rng.choice(CUSTOMERS)
            at = NOW - dt.timedelta(days=self.rng.randint(0, 400), minutes=self.rng.randint(0, 1440))
            if roll < 0.2 and self.purchases:
                target, owner = self.purchases.pop(self.rng.randrange(len(self.purchases)))
                event: dict[str, Any] = {"id": self._id("refund"), "type": "purchase.refunded", "participant": owner}
                event["reverses"] = target
                if self.rng.random() < 0.5:
                    event["portion"] = 0.5
            elif roll < 0.3:
                event = {"id": self._id("review"), "type": "review.posted", "participant": customer}
                event["data"] = {"text": "x" * self.rng.choice([10, 80])}
            else:
                event = {"id": self._id("buy"), "type": "purchase.completed", "participant": customer}
                event["data"] = {"amount": self.rng.choice([3, 25, 80, 140, 600])}
            event["occurred_at"] = at.isoformat()  # batches hold times out of order, and older than others
            events.append(event)

        def run() -> Any:
            outcomes = ingest(self.runtime, self.key, events, now=NOW)
            self.sent.append(events)
            for event, outcome in zip(events, outcomes, strict=True):
                if outcome.status == "accepted" and event["type"] == "purchase.completed":
                    self.purchases.append((event["id"], event["participant"]))
            return [o.status for o in outcomes]

        return run

    def redeem(self) -> Callable[[], Any]:
        customer, reward = self.rng.choice(CUSTOMERS), self.rng.choice(["tote", "free-coffee"])
        key = self._id("redeem")

        def run() -> Any:
            with self.runtime.db.write() as connection:
                compiled = self.runtime.programs.compiled(connection, self.record)
                try:
                    made, _ = rewards.redeem(
                        connection, self.record, compiled, participant=customer, reward_key=reward, idempotency_key=key
                    )
                except LevelupError as exc:  # not enough beans, out of stock: refused, nothing changes
                    return type(exc).__name__
            self.redemptions.append(int(made["id"]))
            return made["status"]

        return run

    def cancel(self) -> Callable[[], Any] | None:
        if not self.redemptions:
            return None
        redemption = self.rng.choice(self.redemptions)

        def run() -> Any:
            with self.runtime.db.write() as connection:
                return rewards.cancel(connection, self.record, redemption, actor="sim")["status"]

        return run

    def adjust(self) -> Callable[[], Any]:
        customer, amount, key = self.rng.choice(CUSTOMERS), self.rng.choice([-200, -30, 15, 90]), self._id("adj")

        def run() -> Any:
            with self.runtime.db.write() as connection:
                compiled = self.runtime.programs.compiled(connection, self.record)
                try:
                    ledger.adjust(
                        connection,
                        self.record,
                        compiled,
                        participant=customer,
                        currency="beans",
                        amount=amount,
                        note="simulated",
                        actor="sim",
                        idempotency_key=key,
                    )
                except LevelupError as exc:  # an unknown participant: refused
                    return type(exc).__name__
            return "adjusted"

        return run

    def jobs(self) -> Callable[[], Any]:
        at = NOW + dt.timedelta(days=self.rng.choice([0, 1, 40]))
        return lambda: [r.error for r in jobs.run(self.runtime, now=at, program_keys=[self.key])]

    def step(self) -> None:
        roll = self.rng.random()
        if roll < 0.08 and self.sent:
            again = self.rng.choice(self.sent)  # a duplicate delivery: the CRM's retry
            before = self.books()
            outcomes = ingest(self.runtime, self.key, again, now=NOW)
            assert {o.status for o in outcomes} <= {"duplicate", "rejected"}, outcomes
            assert self.books() == before, f"seed {self.seed}: a duplicate delivery changed the books"
            self.log.append("duplicate delivery")
            return
        make = self.batch if roll < 0.55 else self.redeem if roll < 0.7 else self.cancel if roll < 0.78 else self.adjust
        if roll >= 0.9:
            make = self.jobs
        operation = make()
        if operation is None:
            return
        if self.rng.random() < 0.2 and make != self.jobs:  # a storage fault, then the retry
            before = self.books()
            rng_state = self.rng.getstate()
            with failing_commits(self.runtime), pytest.raises(InjectedFault):
                operation()
            self.rng.setstate(rng_state)
            assert self.books() == before, f"seed {self.seed}: a failed {make.__name__} left something behind"
            self.log.append(f"fault in {make.__name__}")
        self.log.append(f"{make.__name__}: {operation()}")

    # ------------------------------------------------------------------ checks

    def books(self) -> tuple[Any, ...]:
        """Everything a step may change, to compare before and after a step that must change nothing."""
        with self.runtime.db.read() as connection:
            pid = self.record.id
            return (
                self._count(connection, t.events, t.events.c.program_id == pid),
                sorted(
                    connection.execute(
                        select(t.ledger_entries.c.idempotency_key, t.ledger_entries.c.amount).where(
                            t.ledger_entries.c.program_id == pid
                        )
                    ).all()
                ),
                sorted(connection.execute(select(t.positions).where(t.positions.c.program_id == pid)).all()),
                sorted(
                    connection.execute(
                        select(t.lots.c.source_key, t.lots.c.remaining).where(t.lots.c.program_id == pid)
                    ).all()
                ),
                sorted(
                    connection.execute(
                        select(t.redemptions.c.id, t.redemptions.c.status).where(t.redemptions.c.program_id == pid)
                    ).all()
                ),
                self._count(connection, t.feed, t.feed.c.program_id == pid),
            )

    @staticmethod
    def _count(connection: Connection, table: Any, where: Any) -> int:
        return int(connection.execute(select(func.count()).select_from(table).where(where)).scalar_one())

    def check(self) -> None:
        where = f"seed {self.seed}, after {self.log[-1] if self.log else 'nothing'}"
        with self.runtime.db.read() as connection:
            pid = self.record.id
            ledger_sums = dict(
                connection.execute(
                    select(t.ledger_entries.c.participant_id, func.sum(t.ledger_entries.c.amount))
                    .where(t.ledger_entries.c.program_id == pid)
                    .group_by(t.ledger_entries.c.participant_id)
                ).all()
            )
            lots = dict(
                connection.execute(
                    select(t.lots.c.participant_id, func.sum(t.lots.c.remaining))
                    .where(t.lots.c.program_id == pid)
                    .group_by(t.lots.c.participant_id)
                ).all()
            )
            for p in connection.execute(select(t.positions).where(t.positions.c.program_id == pid)):
                assert p.available >= 0 and p.arrears >= 0, where
                assert p.available - p.arrears == ledger_sums.get(p.participant_id, 0), where
                assert lots.get(p.participant_id, 0) == p.available, f"{where}: lots ≠ balance"
            live = dict(
                connection.execute(
                    select(t.redemptions.c.reward, func.count())
                    .where(t.redemptions.c.program_id == pid, t.redemptions.c.status != "cancelled")
                    .group_by(t.redemptions.c.reward)
                ).all()
            )
            for reward, redeemed in connection.execute(
                select(t.reward_counts.c.reward, t.reward_counts.c.redeemed).where(t.reward_counts.c.program_id == pid)
            ):
                assert redeemed == live.get(reward, 0), where
                assert reward != "tote" or redeemed <= 4, f"{where}: tote oversold"


@pytest.mark.parametrize("seed", SEEDS)
def test_the_books_hold_under_faults(runtime: Runtime, seed: int) -> None:
    simulation = Simulation(runtime, seed)
    for _ in range(STEPS):
        simulation.step()
        simulation.check()
    assert replay(runtime, simulation.key).mismatches == [], f"seed {seed}"
    assert any(entry.startswith("fault") for entry in simulation.log), simulation.log  # faults were injected
