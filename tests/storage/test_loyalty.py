"""Loyalty: lots, expiry, redemptions and the liability report, on SQLite and PostgreSQL.

- Properties (service level, Hypothesis) over random sequences of purchases, redemptions,
  returns, cancellations, fulfilments and runs of the lots job with its clock moved forward,
  in a program with an expiring currency (``beans``) and a pending one (``stars``). After
  every step, per participant and currency: ``sum(ledger) == available - arrears``, live lots
  sum to ``available``, unmatured lots to ``pending``, nothing negative, credits pay arrears
  first; every draw takes the lots in the documented order (a reversal its own event's lots
  first, then the soonest-expiring spendable ones, pending ones last); the lots job expires
  exactly what is due and a second run changes nothing; a return right after a purchase
  restores the position. At the end of each example, replay agrees with what is stored.
- The customer journey over HTTP on examples/brewhouse-rewards.yaml and a variant with
  ``pending`` and more rewards: earning, the expiring list, redemptions and every 409 code,
  idempotent retries, fulfil/cancel transitions, stock, limits, tier requirements, suspended
  participants, and the liability report against figures computed here.

Events of the HTTP journey are placed relative to the real clock (the API reads "now" from it);
the property tests date their events in 2030, so pending credits are unmatured when booked and
only the lots job (with its ``now``) matures and expires them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, select
from typer.testing import CliRunner

from levelup.cli.main import app
from levelup.errors import Conflict
from levelup.events.ingest import ingest
from levelup.events.replay import replay
from levelup.ledger import expiry
from levelup.programs import service as programs
from levelup.programs.validation import load_document
from levelup.rewards import service as rewards
from levelup.runtime import Runtime
from levelup.storage import tables as t
from tests.conftest import EXAMPLES

UTC = dt.UTC
LONDON = ZoneInfo("Europe/London")
BREWHOUSE_TEXT = (EXAMPLES / "brewhouse-rewards.yaml").read_text()
P = "/api/v1/programs/brewhouse-rewards"
YAML = {"Content-Type": "application/yaml"}

# --------------------------------------------------------------------------- reading the books


@dataclasses.dataclass(frozen=True)
class Lot:
    id: int
    participant_id: int
    currency: str
    amount: int
    remaining: int
    matured: bool
    earned_at: dt.datetime
    available_at: dt.datetime
    expires_at: dt.datetime | None
    event_seq: int | None


@dataclasses.dataclass(frozen=True)
class Position:
    available: int
    arrears: int
    pending: int


@dataclasses.dataclass(frozen=True)
class Books:
    """Everything the loyalty side holds for one program."""

    lots: dict[int, Lot]
    positions: dict[tuple[int, str], Position]
    ledger_sums: dict[tuple[int, str], int]
    ledger: list[tuple[Any, ...]]
    redemptions: dict[int, str]  # id → status
    draws: dict[int, dict[int, int]]  # redemption → lot → amount
    stock: dict[str, int]


def read_books(connection: Connection, program_id: int) -> Books:
    lot = t.lots.c
    lots = {
        int(r.id): Lot(
            int(r.id),
            int(r.participant_id),
            r.currency,
            int(r.amount),
            int(r.remaining),
            bool(r.matured),
            r.earned_at,
            r.available_at,
            r.expires_at,
            r.event_seq,
        )
        for r in connection.execute(select(t.lots).where(lot.program_id == program_id))
    }
    positions = {
        (int(r.participant_id), r.currency): Position(int(r.available), int(r.arrears), int(r.pending))
        for r in connection.execute(select(t.positions).where(t.positions.c.program_id == program_id))
    }
    e = t.ledger_entries.c
    ledger = [
        tuple(r)
        for r in connection.execute(
            select(e.id, e.participant_id, e.currency, e.amount, e.kind, e.idempotency_key, e.at)
            .where(e.program_id == program_id)
            .order_by(e.id)
        )
    ]
    sums: dict[tuple[int, str], int] = defaultdict(int)
    for row in ledger:
        sums[(int(row[1]), row[2])] += int(row[3])
    r = t.redemptions.c
    redemptions = {
        int(row.id): row.status for row in connection.execute(select(r.id, r.status).where(r.program_id == program_id))
    }
    d = t.redemption_draws.c
    draws: dict[int, dict[int, int]] = defaultdict(dict)
    if redemptions:
        for rid, lot_id, amount in connection.execute(
            select(d.redemption_id, d.lot_id, d.amount).where(d.redemption_id.in_(list(redemptions)))
        ):
            draws[int(rid)][int(lot_id)] = int(amount)
    c = t.reward_counts.c
    stock = {
        reward: int(n)
        for reward, n in connection.execute(select(c.reward, c.redeemed).where(c.program_id == program_id))
    }
    return Books(lots, positions, dict(sums), ledger, redemptions, dict(draws), stock)


def books(runtime: Runtime, program_id: int) -> Books:
    with runtime.db.read() as connection:
        return read_books(connection, program_id)


def check_invariants(b: Books) -> None:
    """The invariants of lots and positions, per participant and currency."""
    keys = set(b.positions) | set(b.ledger_sums) | {(x.participant_id, x.currency) for x in b.lots.values()}
    for key in keys:
        pos = b.positions.get(key, Position(0, 0, 0))
        mine = [x for x in b.lots.values() if (x.participant_id, x.currency) == key]
        assert b.ledger_sums.get(key, 0) == pos.available - pos.arrears, (key, pos, b.ledger_sums.get(key))
        assert sum(x.remaining for x in mine) == pos.available, (key, pos, mine)
        assert sum(x.remaining for x in mine if not x.matured) == pos.pending, (key, pos, mine)
        assert pos.available >= 0 and pos.arrears >= 0 and 0 <= pos.pending <= pos.available, (key, pos)
        assert not (pos.available > 0 and pos.arrears > 0), f"credits pay arrears first, but {key} holds {pos}"
        assert all(0 <= x.remaining <= x.amount for x in mine)
    for reward, used in b.stock.items():
        assert used >= 0, (reward, used)


FAR = dt.datetime.max.replace(tzinfo=UTC)


def draw_order(x: Lot, own_seq: int | None) -> tuple[Any, ...]:
    """The documented draw order: own event's lots, matured before pending, soonest expiry, never-expiring last."""
    return (
        own_seq is None or x.event_seq != own_seq,
        not x.matured,
        x.expires_at is None,
        x.expires_at or FAR,
        x.available_at,
        x.id,
    )


def expected_draw(
    lots: list[Lot], amount: int, *, own_seq: int | None = None, spendable_only: bool = False
) -> dict[int, int]:
    taken: dict[int, int] = {}
    for x in sorted((x for x in lots if x.remaining > 0), key=lambda x: draw_order(x, own_seq)):
        if amount == 0:
            break
        if spendable_only and not x.matured:
            continue
        take = min(amount, x.remaining)
        taken[x.id] = take
        amount -= take
    assert amount == 0, "the expected draw ran out of lots"
    return taken


def drawn(before: Books, after: Books) -> dict[int, int]:
    """How much each lot lost between two readings."""
    return {
        i: x.remaining - after.lots[i].remaining
        for i, x in before.lots.items()
        if after.lots[i].remaining < x.remaining
    }


def lots_of(b: Books, participant_id: int, currency: str) -> list[Lot]:
    return [x for x in b.lots.values() if x.participant_id == participant_id and x.currency == currency]


# --------------------------------------------------------------------------- the property program

PROPERTY_DOC = """\
program: {key}
name: Lots property
timezone: Europe/London
currencies:
  - {{key: beans, name: Beans, spendable: true, expires_after: P60D}}
  - {{key: stars, name: Stars, spendable: true, pending: P14D, expires_after: P90D}}
metrics:
  - {{key: spend, event: purchase.completed, aggregate: sum, value: data.amount}}
rules:
  - {{key: purchase, event: purchase.completed, award: {{beans: data.amount, stars: "data.amount / 2"}}}}
rewards:
  - {{key: coffee, name: Coffee, cost: {{beans: 40}}}}
  - {{key: cake, name: Cake, cost: {{beans: 90}}}}
  - {{key: star-mug, name: Star mug, cost: {{stars: 30}}}}
"""
COSTS = {"coffee": ("beans", 40), "cake": ("beans", 90), "star-mug": ("stars", 30)}
START = dt.datetime(2030, 1, 1, 12, tzinfo=UTC)  # after the real clock: pending credits are unmatured when booked
PEOPLE = ("amy", "ben")


def new_property_program(runtime: Runtime) -> tuple[str, int]:
    key = f"lots-{uuid.uuid4().hex[:12]}"
    with runtime.db.write() as connection:
        record, _ = programs.apply(connection, load_document(PROPERTY_DOC.format(key=key), program=key), actor="test")
    return key, record.id


@dataclasses.dataclass(frozen=True)
class Earn:
    participant: str
    amount: int
    day: int  # event time: the job's clock + day (late events, and a few ahead of the clock)


@dataclasses.dataclass(frozen=True)
class EarnReturn:
    """A purchase and its full return right after (in one batch, or two)."""

    participant: str
    amount: int
    day: int
    one_batch: bool


@dataclasses.dataclass(frozen=True)
class Spend:
    participant: str
    reward: str


@dataclasses.dataclass(frozen=True)
class Return:
    which: int  # an earlier purchase, counted from the newest


@dataclasses.dataclass(frozen=True)
class Cancel:
    which: int  # an earlier redemption, counted from the newest


@dataclasses.dataclass(frozen=True)
class Fulfil:
    which: int


@dataclasses.dataclass(frozen=True)
class Expire:
    days: int  # the job's clock moves forward this much, then the job runs (twice)


Action = Earn | EarnReturn | Spend | Return | Cancel | Fulfil | Expire

people = st.sampled_from((*PEOPLE, PEOPLE[0]))  # mostly one customer, so spends drain and returns reach arrears
days = st.integers(-40, 10)
earns = st.builds(Earn, people, st.integers(1, 150), days)
spends = st.builds(Spend, people, st.sampled_from(sorted(COSTS)))
actions: st.SearchStrategy[Action] = st.one_of(
    earns,
    spends,
    st.builds(Return, st.integers(0, 6)),
    earns,
    spends,
    st.builds(Cancel, st.integers(0, 4)),
    st.builds(Expire, st.integers(0, 70)),
    spends,
    st.builds(EarnReturn, people, st.integers(1, 150), days, st.booleans()),
    st.builds(Return, st.integers(0, 6)),
    st.builds(Cancel, st.integers(0, 4)),
    st.builds(Fulfil, st.integers(0, 4)),
    st.builds(Expire, st.integers(0, 70)),
)

# Each example is a real database journey (~30 ms a step): shrinking a failure takes minutes, so it is
# off and a failure prints the whole sequence; the explicit examples below pin the subtle cases small.
PROPERTY_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
)


def purchase(event_id: str, participant: str, amount: int, at: dt.datetime) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "purchase.completed",
        "participant": participant,
        "occurred_at": at.isoformat(),
        "data": {"amount": amount},
    }


def returned(event_id: str, original: dict[str, Any], at: dt.datetime) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "purchase.returned",
        "participant": original["participant"],
        "occurred_at": at.isoformat(),
        "data": {},
        "reverses": original["id"],
    }


class Journey:
    """One example: a program of its own, a job clock, what was sent so far, and the books as last read.

    Only the journey writes to its program, so the books read after a step are the books before the next.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.key, self.program_id = new_property_program(runtime)
        self.clock = START
        self.purchases: list[dict[str, Any]] = []
        self.awards: dict[str, dict[str, int]] = {}  # purchase id → what its rules booked, per currency
        self.reversed: set[str] = set()
        self.redemptions: list[int] = []
        self.ids: dict[str, int] = {}
        self.count = 0
        self.state = self.books()

    def next_id(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}-{self.count}"

    def books(self) -> Books:
        return books(self.runtime, self.program_id)

    def participant_id(self, external: str) -> int | None:
        if external not in self.ids:
            with self.runtime.db.read() as connection:
                found = connection.execute(
                    select(t.participants.c.id).where(
                        t.participants.c.program_id == self.program_id, t.participants.c.external_id == external
                    )
                ).scalar_one_or_none()
            if found is None:
                return None
            self.ids[external] = int(found)
        return self.ids[external]

    def seq_of(self, event_id: str) -> int:
        with self.runtime.db.read() as connection:
            return int(
                connection.execute(
                    select(t.events.c.seq).where(
                        t.events.c.program_id == self.program_id, t.events.c.event_id == event_id
                    )
                ).scalar_one()
            )

    def ingest(self, events: list[dict[str, Any]]) -> None:
        outcomes = ingest(self.runtime, self.key, events)
        assert [o.status for o in outcomes] == ["accepted"] * len(events), outcomes
        for o in outcomes:
            booked: dict[str, int] = defaultdict(int)
            for award in o.awards:
                booked[award["currency"]] += award["amount"]
            self.awards[o.id] = dict(booked)

    def service(self, work: Callable[[Connection, Any, Any], Any]) -> Any:
        with self.runtime.db.write() as connection:
            record = programs.find(connection, self.key)
            return work(connection, record, self.runtime.programs.compiled(connection, record))

    # ----------------------------------------------------------------------- the steps (each returns the books after)

    def earn(self, step: Earn) -> Books:
        before = self.state
        event = purchase(self.next_id("p"), step.participant, step.amount, self.clock + dt.timedelta(days=step.day))
        self.ingest([event])
        self.purchases.append(event)
        after = self.books()
        pid = self.participant_id(step.participant)
        assert pid is not None
        new = [x for i, x in after.lots.items() if i not in before.lots]
        assert self.awards[event["id"]] == {
            "beans": step.amount,
            **({"stars": step.amount // 2} if step.amount > 1 else {}),
        }
        for currency, award in self.awards[event["id"]].items():
            pos = before.positions.get((pid, currency), Position(0, 0, 0))
            paid = min(pos.arrears, award)  # credits pay arrears first; the rest is a new lot
            made = [x for x in new if x.currency == currency]
            assert [x.amount for x in made] == ([award - paid] if award > paid else []), (currency, made)
            for x in made:
                assert x.matured == (currency == "beans")  # stars are pending for 14 days from the event
                assert x.expires_at == x.earned_at + dt.timedelta(days=60 if currency == "beans" else 90)
                assert x.available_at == x.earned_at + dt.timedelta(days=0 if currency == "beans" else 14)
        assert drawn(before, after) == {}
        return after

    def earn_and_return(self, step: EarnReturn) -> Books:
        before = self.state
        at = self.clock + dt.timedelta(days=step.day)
        event = purchase(self.next_id("p"), step.participant, step.amount, at)
        back = returned(self.next_id("r"), event, at + dt.timedelta(hours=1))
        if step.one_batch:
            self.ingest([event, back])
        else:
            self.ingest([event])
            self.ingest([back])
        self.purchases.append(event)
        self.reversed.add(event["id"])
        after = self.books()
        pid = self.participant_id(step.participant)
        assert pid is not None
        for currency in ("beans", "stars"):
            assert after.positions.get((pid, currency), Position(0, 0, 0)) == before.positions.get(
                (pid, currency), Position(0, 0, 0)
            ), f"a return right after the purchase must restore the {currency} position"
        assert drawn(before, after) == {}, "the return took its own lots, not older ones"
        assert all(x.remaining == 0 for i, x in after.lots.items() if i not in before.lots)
        return after

    def give_back(self, step: Return) -> Books:
        standing = [e for e in self.purchases if e["id"] not in self.reversed]
        if not standing:
            return self.state
        original = standing[-1 - step.which % len(standing)]
        before = self.state
        pid = self.participant_id(original["participant"])
        assert pid is not None
        own = self.seq_of(original["id"])
        back = returned(self.next_id("r"), original, self.clock)
        self.ingest([back])
        self.reversed.add(original["id"])
        after = self.books()
        expected: dict[int, int] = {}
        for currency, amount in self.awards[original["id"]].items():
            pos = before.positions.get((pid, currency), Position(0, 0, 0))
            taken = min(pos.available, amount)  # beyond what is held: arrears
            got = after.positions[(pid, currency)]
            assert (got.available, got.arrears) == (pos.available - taken, pos.arrears + amount - taken)
            expected.update(expected_draw(lots_of(before, pid, currency), taken, own_seq=own))
        assert drawn(before, after) == expected, "a reversal takes its own lots, then the soonest-expiring"
        return after

    def spend(self, step: Spend) -> Books:
        currency, cost = COSTS[step.reward]
        before = self.state
        pid = self.participant_id(step.participant)
        pos = before.positions.get((pid, currency), Position(0, 0, 0)) if pid is not None else Position(0, 0, 0)
        spendable = pos.available - pos.pending
        try:
            made, created = self.service(
                lambda c, r, comp: rewards.redeem(
                    c,
                    r,
                    comp,
                    participant=step.participant,
                    reward_key=step.reward,
                    idempotency_key=self.next_id("k"),
                    now=self.clock,
                )
            )
        except Conflict as refused:
            assert refused.extra.get("code") == "insufficient_balance", refused.problem()
            assert spendable < cost, f"refused with {spendable} {currency} spendable for a cost of {cost}"
            after = self.books()
            assert after == before, "a refused redemption changes nothing"
            return after
        assert created and spendable >= cost, (spendable, cost)
        self.redemptions.append(int(made["id"]))
        after = self.books()
        assert pid is not None
        want = expected_draw(lots_of(before, pid, currency), cost, spendable_only=True)
        assert after.draws[int(made["id"])] == want, "the soonest-expiring spendable lots go first"
        assert drawn(before, after) == want
        got = after.positions[(pid, currency)]
        assert (got.available, got.arrears, got.pending) == (pos.available - cost, pos.arrears, pos.pending)
        return after

    def cancel(self, step: Cancel) -> Books:
        if not self.redemptions:
            return self.state
        rid = self.redemptions[-1 - step.which % len(self.redemptions)]
        before = self.state
        status = before.redemptions[rid]
        try:
            shaped = self.service(lambda c, r, comp: rewards.cancel(c, r, rid, actor="test"))
        except Conflict as refused:
            assert status == "fulfilled" and refused.extra.get("code") == "fulfilled"
            after = self.books()
            assert after == before
            return after
        assert shaped["status"] == "cancelled"
        after = self.books()
        if status == "cancelled":
            assert after == before, "cancelling twice refunds once"
            return after
        drew = before.draws[rid]
        [(pid, currency)] = {(before.lots[i].participant_id, before.lots[i].currency) for i in drew}
        cost = sum(drew.values())
        pos = before.positions[(pid, currency)]
        paid = min(pos.arrears, cost)  # a refund is a credit: it pays arrears off first
        got = after.positions[(pid, currency)]
        assert (got.available, got.arrears, got.pending) == (
            pos.available + cost - paid,
            pos.arrears - paid,
            pos.pending,
        )
        restored = {i: after.lots[i].remaining - x.remaining for i, x in before.lots.items()}
        restored = {i: n for i, n in restored.items() if n}
        if not paid:
            assert restored == drew, "the refund goes back into the lots the cost came from"
        assert set(restored) <= set(drew) and all(n <= drew[i] for i, n in restored.items()), (restored, drew)
        assert sum(restored.values()) == cost - paid
        return after

    def fulfil(self, step: Fulfil) -> Books:
        if not self.redemptions:
            return self.state
        rid = self.redemptions[-1 - step.which % len(self.redemptions)]
        before = self.state
        try:
            shaped = self.service(lambda c, r, comp: rewards.fulfil(c, r, rid, actor="test"))
        except Conflict as refused:
            assert before.redemptions[rid] == "cancelled" and refused.extra.get("code") == "cancelled"
            return self.books()
        assert shaped["status"] == "fulfilled"
        after = self.books()
        assert after.positions == before.positions and after.lots == before.lots
        return after

    def expire(self, step: Expire) -> Books:
        self.clock += dt.timedelta(days=step.days, hours=1)
        now = self.clock
        before = self.state
        expiry.run(self.runtime, now=now, program_keys=[self.key])
        after = self.books()
        due = {i: x.remaining for i, x in before.lots.items() if x.remaining and x.expires_at and x.expires_at <= now}
        assert drawn(before, after) == due, "exactly the lots past their expiry are emptied"
        for i, x in after.lots.items():
            assert x.matured == (before.lots[i].matured or before.lots[i].available_at <= now), x
        expired: dict[tuple[int, str], int] = defaultdict(int)
        for i, amount in due.items():
            expired[(before.lots[i].participant_id, before.lots[i].currency)] -= amount
        new_entries = after.ledger[len(before.ledger) :]
        assert all(row[4] == "expiry" for row in new_entries)
        booked: dict[tuple[int, str], int] = defaultdict(int)
        for row in new_entries:
            booked[(int(row[1]), row[2])] += int(row[3])
        assert booked == expired
        expiry.run(self.runtime, now=now, program_keys=[self.key])
        assert self.books() == after, "running the lots job twice changes nothing"
        return after

    def run(self, action: Action) -> None:
        handlers: dict[type, Callable[[Any], Books]] = {
            Earn: self.earn,
            EarnReturn: self.earn_and_return,
            Spend: self.spend,
            Return: self.give_back,
            Cancel: self.cancel,
            Fulfil: self.fulfil,
            Expire: self.expire,
        }
        self.state = handlers[type(action)](action)
        check_invariants(self.state)


@PROPERTY_SETTINGS
@given(st.lists(earns, min_size=1, max_size=3), st.lists(actions, min_size=10, max_size=30))
# a refund into a lot that expired meanwhile is expired by the next run of the job
@example([Earn("amy", 100, 0)], [Spend("amy", "coffee"), Expire(61), Cancel(0), Expire(1), Earn("amy", 5, 0)])
# a cancellation while in arrears (the purchase paid for the cake was returned): the refund pays the arrears
@example([Earn("amy", 150, 0)], [Spend("amy", "cake"), Return(0), Cancel(0)])
def test_lots_positions_and_draw_order_hold_after_every_step(
    runtime: Runtime, opening: list[Earn], steps: list[Action]
) -> None:
    journey = Journey(runtime)
    for action in [*opening, *steps]:
        journey.run(action)
    report = replay(runtime, journey.key)
    assert report.mismatches == []


# --------------------------------------------------------------------------- targeted storage tests


def brewhouse(runtime: Runtime, text_: str = BREWHOUSE_TEXT) -> int:
    with runtime.db.write() as connection:
        record, _ = programs.apply(connection, load_document(text_, program="brewhouse-rewards"), actor="test")
    return record.id


def bought(event_id: str, participant: str, amount: int, occurred_at: dt.datetime, **extra: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "purchase.completed",
        "participant": participant,
        "occurred_at": occurred_at.isoformat(),
        "data": {"amount": amount},
        **extra,
    }


def refund_of(event_id: str, original: str, participant: str, occurred_at: dt.datetime) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "purchase.returned",
        "participant": participant,
        "occurred_at": occurred_at.isoformat(),
        "data": {},
        "reverses": original,
    }


def redeem_now(
    runtime: Runtime, participant: str, reward: str, key: str, now: dt.datetime | None = None
) -> dict[str, Any]:
    with runtime.db.write() as connection:
        record = programs.find(connection, "brewhouse-rewards")
        made, _ = rewards.redeem(
            connection,
            record,
            runtime.programs.compiled(connection, record),
            participant=participant,
            reward_key=reward,
            idempotency_key=key,
            now=now,
        )
    return made


def cancel_now(runtime: Runtime, redemption_id: int) -> dict[str, Any]:
    with runtime.db.write() as connection:
        return rewards.cancel(connection, programs.find(connection, "brewhouse-rewards"), redemption_id, actor="test")


def position(runtime: Runtime, program_id: int, participant: str, currency: str = "beans") -> Position:
    with runtime.db.read() as connection:
        row = connection.execute(
            select(t.positions)
            .join(t.participants, t.participants.c.id == t.positions.c.participant_id)
            .where(
                t.participants.c.program_id == program_id,
                t.participants.c.external_id == participant,
                t.positions.c.currency == currency,
            )
        ).one()
    return Position(int(row.available), int(row.arrears), int(row.pending))


def test_cancelling_a_redemption_while_in_arrears_pays_the_arrears_first(runtime: Runtime) -> None:
    """Spend 150, return the purchase (arrears 150), cancel the redemption: the refund is a credit, and
    credits pay arrears first, so the customer ends owing nothing and holding nothing. Replay (which
    folds the ledger with that rule) must agree with the stored position."""
    program_id = brewhouse(runtime)
    day = dt.datetime.now(UTC) - dt.timedelta(days=3)
    assert ingest(runtime, "brewhouse-rewards", [bought("p1", "amy", 150, day)])[0].status == "accepted"
    made = redeem_now(runtime, "amy", "free-coffee", "k1")
    ingest(runtime, "brewhouse-rewards", [refund_of("r1", "p1", "amy", day + dt.timedelta(hours=2))])
    assert position(runtime, program_id, "amy") == Position(0, 150, 0)
    cancel_now(runtime, int(made["id"]))
    assert position(runtime, program_id, "amy") == Position(0, 0, 0)
    assert replay(runtime, "brewhouse-rewards").mismatches == []
    check_invariants(books(runtime, program_id))


def test_rerunning_the_lots_job_at_the_same_time_after_a_refund_into_an_expired_lot(runtime: Runtime) -> None:
    """A cancellation refunds into the lots the cost came from, which keep their expiry: into a lot
    already expired, the refund is due at once. ``levelup expire --now T`` run again with the same T
    (documented as safe to rerun) must expire it, not fail on a duplicate ledger key."""
    program_id = brewhouse(runtime)
    earned = dt.datetime.now(UTC) - dt.timedelta(days=370)
    ingest(runtime, "brewhouse-rewards", [bought("p1", "amy", 200, earned)])
    made = redeem_now(runtime, "amy", "free-coffee", "k1")
    job_time = dt.datetime.now(UTC).replace(microsecond=0)
    [first] = expiry.run(runtime, now=job_time)
    assert (first.lots, first.amount) == (1, {"beans": 50})
    cancel_now(runtime, int(made["id"]))
    assert position(runtime, program_id, "amy") == Position(150, 0, 0)
    [again] = expiry.run(runtime, now=job_time)
    assert again.amount == {"beans": 150}
    assert position(runtime, program_id, "amy") == Position(0, 0, 0)
    check_invariants(books(runtime, program_id))


def test_never_expiring_lots_are_drawn_last(runtime: Runtime) -> None:
    """Lots booked before the currency had ``expires_after`` never expire: any expiring lot goes first,
    even a newer one; among never-expiring lots the older goes first."""
    plain = BREWHOUSE_TEXT.replace(", expires_after: P365D}", "}")
    assert plain != BREWHOUSE_TEXT
    program_id = brewhouse(runtime, plain)
    now = dt.datetime.now(UTC)
    ingest(runtime, "brewhouse-rewards", [bought("old", "amy", 100, now - dt.timedelta(days=30))])
    ingest(runtime, "brewhouse-rewards", [bought("older", "amy", 40, now - dt.timedelta(days=40))])
    brewhouse(runtime)  # version 2: beans expire 365 days after they are earned
    ingest(runtime, "brewhouse-rewards", [bought("new", "amy", 60, now - dt.timedelta(days=2))])
    before = books(runtime, program_id)
    by_source = {x.event_seq: x for x in before.lots.values()}
    assert sum(x.expires_at is None for x in by_source.values()) == 2
    made = redeem_now(runtime, "amy", "free-coffee", "k1")
    after = books(runtime, program_id)
    pid = next(iter(before.lots.values())).participant_id
    want = expected_draw(lots_of(before, pid, "beans"), 150, spendable_only=True)
    assert after.draws[int(made["id"])] == want
    amounts = sorted((x.expires_at is None, x.earned_at, n) for i, n in want.items() for x in [before.lots[i]])
    assert [(never, n) for never, _, n in amounts] == [(False, 60), (True, 40), (True, 50)]


def test_the_expire_command_is_idempotent(runtime: Runtime, db_url: str) -> None:
    program_id = brewhouse(runtime)
    now = dt.datetime.now(UTC)
    ingest(
        runtime,
        "brewhouse-rewards",
        [bought("p1", "amy", 70, now - dt.timedelta(days=400)), bought("p2", "amy", 30, now - dt.timedelta(days=5))],
    )
    stamp = now.isoformat()
    cli = CliRunner()
    first = cli.invoke(app, ["expire", "--now", stamp, "--database", db_url])
    assert first.exit_code == 0, first.output
    assert "1 lots expired (70 beans)" in first.output
    after_first = books(runtime, program_id)
    second = cli.invoke(app, ["expire", "--now", stamp, "--database", db_url])
    assert second.exit_code == 0, second.output
    assert "nothing to do" in second.output
    assert books(runtime, program_id) == after_first
    assert position(runtime, program_id, "amy") == Position(30, 0, 0)


def in_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads released together; a Conflict is a result, anything else fails."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except Conflict as refused:
            results[i] = refused
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if errors:
        raise errors[0]
    return results


def test_concurrent_redemptions_never_overspend_nor_oversell(runtime: Runtime) -> None:
    """Eight parallel redemptions of one customer holding enough for two coffees: two go through;
    eight parallel requests with one idempotency key: one redemption; eight customers racing for the
    last tin: one gets it."""
    tin = BREWHOUSE_TEXT + "  - {key: last-tin, name: Last tin, cost: {beans: 10}, stock: 1}\n"
    program_id = brewhouse(runtime, tin)
    now = dt.datetime.now(UTC) - dt.timedelta(days=1)
    ingest(
        runtime,
        "brewhouse-rewards",
        [bought("p-amy", "amy", 320, now)] + [bought(f"p-{i}", f"c{i}", 20, now) for i in range(8)],
    )
    coffees = in_threads(8, lambda i: redeem_now(runtime, "amy", "free-coffee", f"coffee-{i}"))
    assert sum(isinstance(r, dict) for r in coffees) == 2
    assert {r.extra["code"] for r in coffees if isinstance(r, Conflict)} == {"insufficient_balance"}
    assert position(runtime, program_id, "amy") == Position(20, 0, 0)
    retried = in_threads(8, lambda i: redeem_now(runtime, "c0", "free-coffee", "same-key"))
    assert {r.extra["code"] for r in retried} == {"insufficient_balance"}, "c0 holds 20: nothing to retry"
    ingest(runtime, "brewhouse-rewards", [bought("p-c7", "c7", 200, now)])
    same = in_threads(8, lambda i: redeem_now(runtime, "c7", "free-coffee", "c7-once"))
    assert all(isinstance(r, dict) for r in same) and len({r["id"] for r in same}) == 1, same
    assert position(runtime, program_id, "c7") == Position(70, 0, 0), "one key, one debit"
    tins = in_threads(8, lambda i: redeem_now(runtime, f"c{i}", "last-tin", f"tin-{i}"))
    assert sum(isinstance(r, dict) for r in tins) == 1
    assert {r.extra["code"] for r in tins if isinstance(r, Conflict)} == {"out_of_stock"}
    final = books(runtime, program_id)
    assert final.stock["last-tin"] == 1
    check_invariants(final)


# --------------------------------------------------------------------------- the journey over HTTP


def ago(days: float) -> dt.datetime:
    return dt.datetime.now(UTC) - dt.timedelta(days=days)


def post_events(client: TestClient, admin: dict[str, str], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = client.post(f"{P}/events", json={"events": events}, headers=admin)
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    assert all(r["status"] == "accepted" for r in results), results
    return results


def apply_doc(client: TestClient, admin: dict[str, str], text_: str) -> None:
    response = client.put(P, content=text_, headers={**admin, **YAML})
    assert response.status_code in (200, 201), response.text


def redeem(client: TestClient, admin: dict[str, str], participant: str, reward: str, key: str) -> Any:
    return client.post(
        f"{P}/redemptions", json={"participant": participant, "reward": reward, "idempotency_key": key}, headers=admin
    )


def refused_with(response: Any, code: str) -> None:
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code and body["status"] == 409, body


def balance(client: TestClient, admin: dict[str, str], participant: str) -> int:
    response = client.get(f"{P}/participants/{participant}", headers=admin)
    assert response.status_code == 200, response.text
    return int(response.json()["balances"]["beans"])


def catalog(client: TestClient, admin: dict[str, str], participant: str | None = None) -> dict[str, dict[str, Any]]:
    params = {"participant": participant} if participant else {}
    response = client.get(f"{P}/rewards", params=params, headers=admin)
    assert response.status_code == 200, response.text
    return {r["key"]: r for r in response.json()["rewards"]}


def expiring(client: TestClient, admin: dict[str, str], participant: str) -> list[tuple[str, int]]:
    response = client.get(f"{P}/participants/{participant}/expiring", headers=admin)
    assert response.status_code == 200, response.text
    return [(row["expires_at"], row["amount"]) for row in response.json()["expiring"]]


def iso(when: dt.datetime) -> str:
    return when.astimezone(UTC).isoformat()


def local_month(when: dt.datetime) -> str:
    return when.astimezone(LONDON).strftime("%Y-%m")


def liability_of(client: TestClient, admin: dict[str, str]) -> dict[str, Any]:
    response = client.get(f"{P}/reports/liability", headers=admin)
    assert response.status_code == 200, response.text
    [beans] = response.json()["currencies"]
    assert beans["currency"] == "beans"
    return dict(beans)


@pytest.fixture
def shop(client: TestClient, admin: dict[str, str], runtime: Runtime) -> Iterator[TestClient]:
    """examples/brewhouse-rewards.yaml, applied over HTTP."""
    apply_doc(client, admin, BREWHOUSE_TEXT)
    yield client
    check_invariants(books(runtime, program_id_of(runtime)))


def program_id_of(runtime: Runtime) -> int:
    with runtime.db.read() as connection:
        return programs.find(connection, "brewhouse-rewards").id


def test_earning_beans_and_the_expiring_list(shop: TestClient, admin: dict[str, str], runtime: Runtime) -> None:
    times = [ago(400), ago(340), ago(300), ago(10)]
    amounts = [120, 80, 60, 45]
    results = post_events(
        shop, admin, [bought(f"p{i}", "amy", a, w) for i, (a, w) in enumerate(zip(amounts, times, strict=True))]
    )
    assert [r["awards"] for r in results] == [[{"currency": "beans", "amount": a, "rule": "purchase"}] for a in amounts]
    assert balance(shop, admin, "amy") == 305  # the oldest lot is past its expiry, but the job has not run
    live = [(iso(w + dt.timedelta(days=365)), a) for a, w in zip(amounts, times, strict=True)][1:]
    assert expiring(shop, admin, "amy") == live
    [done] = expiry.run(runtime)
    assert (done.lots, done.amount) == (1, {"beans": 120})
    assert balance(shop, admin, "amy") == 185
    assert expiring(shop, admin, "amy") == live
    ledger = shop.get(f"{P}/participants/amy/ledger", headers=admin).json()["entries"]
    assert (ledger[0]["amount"], ledger[0]["kind"], ledger[0]["at"]) == (
        -120,
        "expiry",
        iso(times[0] + dt.timedelta(days=365)),
    )
    # the coffee takes the soonest-expiring beans first: all of 80 and 60, and 10 of the newest 45
    made = redeem(shop, admin, "amy", "free-coffee", "amy-1")
    assert made.status_code == 201, made.text
    assert expiring(shop, admin, "amy") == [(live[2][0], 35)]
    cancelled = shop.post(f"{P}/redemptions/{made.json()['id']}/cancel", headers=admin)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert expiring(shop, admin, "amy") == live, "the refund goes back into the same lots, with their expiry"
    assert balance(shop, admin, "amy") == 185


def test_a_redemption_happy_path_and_its_transitions(shop: TestClient, admin: dict[str, str]) -> None:
    post_events(shop, admin, [bought("p1", "amy", 400, ago(5))])
    rewards_for_amy = catalog(shop, admin, "amy")
    assert rewards_for_amy["free-coffee"]["can_redeem"] is True and "reason" not in rewards_for_amy["free-coffee"]
    made = redeem(shop, admin, "amy", "free-coffee", "order-1")
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["participant"], body["reward"], body["cost"], body["status"]) == (
        "amy",
        "free-coffee",
        {"beans": 150},
        "pending",
    )
    assert balance(shop, admin, "amy") == 250
    ledger = shop.get(f"{P}/participants/amy/ledger", headers=admin).json()["entries"]
    assert (ledger[0]["amount"], ledger[0]["kind"]) == (-150, "redemption")
    rid = body["id"]
    listed = shop.get(f"{P}/redemptions", params={"participant": "amy", "status": "pending"}, headers=admin).json()
    assert [r["id"] for r in listed["redemptions"]] == [rid]
    fulfilled = shop.post(f"{P}/redemptions/{rid}/fulfil", headers=admin)
    assert fulfilled.status_code == 200 and fulfilled.json()["status"] == "fulfilled"
    again = shop.post(f"{P}/redemptions/{rid}/fulfil", headers=admin)
    assert again.status_code == 200 and again.json()["status"] == "fulfilled"
    refused_with(shop.post(f"{P}/redemptions/{rid}/cancel", headers=admin), "fulfilled")
    assert balance(shop, admin, "amy") == 250, "a fulfilled redemption is not refunded"
    # a second one, cancelled: refunded once, however often it is cancelled; then it cannot be fulfilled
    second = redeem(shop, admin, "amy", "free-coffee", "order-2").json()
    assert balance(shop, admin, "amy") == 100
    for _ in range(2):
        cancelled = shop.post(f"{P}/redemptions/{second['id']}/cancel", headers=admin)
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert balance(shop, admin, "amy") == 250
    refused_with(shop.post(f"{P}/redemptions/{second['id']}/fulfil", headers=admin), "cancelled")
    assert shop.post(f"{P}/redemptions/999999/cancel", headers=admin).status_code == 404
    by_status = {
        s: [r["id"] for r in shop.get(f"{P}/redemptions", params={"status": s}, headers=admin).json()["redemptions"]]
        for s in ("pending", "fulfilled", "cancelled")
    }
    assert by_status == {"pending": [], "fulfilled": [rid], "cancelled": [second["id"]]}
    kinds = [
        (e["kind"], e["amount"]) for e in shop.get(f"{P}/participants/amy/ledger", headers=admin).json()["entries"]
    ]
    assert kinds == [("refund", 150), ("redemption", -150), ("redemption", -150), ("rule", 400)]


def test_idempotent_retries(shop: TestClient, admin: dict[str, str]) -> None:
    post_events(shop, admin, [bought("p1", "amy", 200, ago(5)), bought("p2", "ben", 200, ago(5))])
    first = redeem(shop, admin, "amy", "free-coffee", "retry-me")
    assert first.status_code == 201
    retry = redeem(shop, admin, "amy", "free-coffee", "retry-me")
    assert retry.status_code == 200 and retry.json() == first.json()
    assert balance(shop, admin, "amy") == 50, "a retry debits nothing"
    # the retry is answered even though the balance would no longer allow a new one
    assert redeem(shop, admin, "amy", "free-coffee", "retry-me").status_code == 200
    refused_with(redeem(shop, admin, "amy", "mug", "retry-me"), "idempotency_conflict")
    refused_with(redeem(shop, admin, "ben", "free-coffee", "retry-me"), "idempotency_conflict")
    assert balance(shop, admin, "ben") == 200
    assert len(shop.get(f"{P}/redemptions", headers=admin).json()["redemptions"]) == 1


def test_every_refusal_code_of_the_spec_document(shop: TestClient, admin: dict[str, str], runtime: Runtime) -> None:
    post_events(shop, admin, [bought("p1", "amy", 100, ago(5)), bought("g1", "gina", 1300, ago(5))])
    # insufficient balance: 100 beans for a 150-bean coffee; also for a participant never seen
    refused_with(redeem(shop, admin, "amy", "free-coffee", "a-1"), "insufficient_balance")
    refused_with(redeem(shop, admin, "nobody", "free-coffee", "n-1"), "insufficient_balance")
    assert catalog(shop, admin, "amy")["free-coffee"]["reason"]["code"] == "insufficient_balance"
    # requirement unmet: the mug needs Gold, amy is Green (and the check comes before the balance)
    refused_with(redeem(shop, admin, "amy", "mug", "a-2"), "requirement_unmet")
    mug_for_amy = catalog(shop, admin, "amy")["mug"]
    assert mug_for_amy["can_redeem"] is False and mug_for_amy["reason"]["code"] == "requirement_unmet"
    # gina spent 1300 in the last 365 days: Gold, so the mug is hers; one per customer, ever
    assert catalog(shop, admin, "gina")["mug"]["can_redeem"] is True
    assert redeem(shop, admin, "gina", "mug", "g-1").status_code == 201
    refused_with(redeem(shop, admin, "gina", "mug", "g-2"), "limit_reached")
    assert catalog(shop, admin, "gina")["mug"]["reason"]["code"] == "limit_reached"
    assert catalog(shop, admin)["mug"]["remaining"] == 49
    # suspended: refused, whatever the balance
    suspended = shop.put(
        f"{P}/participants/gina/status", json={"status": "suspended", "note": "fraud check"}, headers=admin
    )
    assert suspended.status_code == 200 and suspended.json()["status"] == "suspended"
    refused_with(redeem(shop, admin, "gina", "free-coffee", "g-3"), "participant_suspended")
    assert catalog(shop, admin, "gina")["free-coffee"]["reason"]["code"] == "participant_suspended"
    # an unknown reward is not a conflict but bad input
    assert redeem(shop, admin, "gina", "yacht", "g-4").status_code == 422


def test_stock_runs_out_and_never_goes_below_zero(shop: TestClient, admin: dict[str, str], runtime: Runtime) -> None:
    """The mug's stock of 50: fifty Gold customers get one each, the fifty-first is refused; a
    cancellation puts one back on the shelf, once."""
    post_events(shop, admin, [bought(f"g{i}", f"gold-{i}", 600, ago(2)) for i in range(51)])
    ids = []
    for i in range(50):
        made = redeem(shop, admin, f"gold-{i}", "mug", f"mug-{i}")
        assert made.status_code == 201, made.text
        ids.append(made.json()["id"])
    refused_with(redeem(shop, admin, "gold-50", "mug", "mug-50"), "out_of_stock")
    assert catalog(shop, admin)["mug"]["remaining"] == 0
    assert catalog(shop, admin, "gold-50")["mug"]["reason"]["code"] == "out_of_stock"
    for _ in range(2):
        assert shop.post(f"{P}/redemptions/{ids[0]}/cancel", headers=admin).status_code == 200
    assert catalog(shop, admin)["mug"]["remaining"] == 1
    assert redeem(shop, admin, "gold-50", "mug", "mug-50b").status_code == 201
    refused_with(redeem(shop, admin, "gold-0", "mug", "mug-0b"), "out_of_stock")
    assert catalog(shop, admin)["mug"]["remaining"] == 0
    assert books(runtime, program_id_of(runtime)).stock == {"mug": 50}


def test_a_suspended_participant_earns_nothing_until_reactivated(
    shop: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    post_events(shop, admin, [bought("p1", "sam", 200, ago(6))])  # spends stay under Gold: no multiplier
    assert (
        shop.put(
            f"{P}/participants/sam/status", json={"status": "suspended", "note": "chargebacks"}, headers=admin
        ).status_code
        == 200
    )
    [result] = post_events(shop, admin, [bought("p2", "sam", 100, ago(5))])
    assert result["awards"] == []
    told = shop.get(f"{P}/events/p2", headers=admin).json()
    assert any("suspended" in note for note in told["notes"]), told
    assert balance(shop, admin, "sam") == 200
    refused_with(redeem(shop, admin, "sam", "free-coffee", "s-1"), "participant_suspended")
    with runtime.db.read() as connection:
        audited = connection.execute(select(t.audit_log.c.action, t.audit_log.c.detail)).all()
    assert ("participant.status", {"participant": "sam", "status": "suspended", "note": "chargebacks"}) in [
        (a, d) for a, d in audited
    ]
    assert (
        shop.put(
            f"{P}/participants/sam/status", json={"status": "active", "note": "cleared"}, headers=admin
        ).status_code
        == 200
    )
    [later] = post_events(shop, admin, [bought("p3", "sam", 30, ago(4))])
    assert later["awards"] == [{"currency": "beans", "amount": 30, "rule": "purchase"}]
    assert redeem(shop, admin, "sam", "free-coffee", "s-2").status_code == 201
    assert balance(shop, admin, "sam") == 80
    assert replay(runtime, "brewhouse-rewards").mismatches == []


def test_a_suspended_participant_is_paid_no_quest_reward(
    shop: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    """Suspended, a customer earns nothing: not by rule, and not the welcome quest's 100 beans either
    (its three steps done while suspended). The events are recorded, with their metrics."""
    post_events(shop, admin, [bought("p0", "sam", 5, ago(3))])
    assert (
        shop.put(
            f"{P}/participants/sam/status", json={"status": "suspended", "note": "audit"}, headers=admin
        ).status_code
        == 200
    )
    steps = [
        {"id": "e1", "type": "profile.completed", "participant": "sam", "occurred_at": ago(2).isoformat(), "data": {}},
        bought("e2", "sam", 3, ago(2)),
        {
            "id": "e3",
            "type": "review.posted",
            "participant": "sam",
            "occurred_at": ago(2).isoformat(),
            "data": {"text": "y" * 60},
        },
    ]
    assert [r["awards"] for r in post_events(shop, admin, steps)] == [[], [], []]
    entries = shop.get(f"{P}/participants/sam/ledger", headers=admin).json()["entries"]
    assert [(e["kind"], e["amount"]) for e in entries] == [("rule", 5)], entries
    assert balance(shop, admin, "sam") == 5


def test_the_liability_report(shop: TestClient, admin: dict[str, str], runtime: Runtime) -> None:
    """Outstanding, arrears, expiring in 30/90 days, redeemed and expired by month, computed here."""
    amy_times = {"a0": ago(400), "a1": ago(340), "a2": ago(300), "a3": ago(10)}
    amy_amounts = {"a0": 120, "a1": 80, "a2": 60, "a3": 45}
    events = [bought(k, "amy", amy_amounts[k], w) for k, w in amy_times.items()]
    cleo_times = {"c1": ago(100), "c2": ago(345), "c3": ago(290)}  # expiring in 265, 20 and 75 days
    events += [bought("b0", "ben", 200, ago(20)), bought("c0", "cleo", 170, ago(380))]
    events += [bought(k, "cleo", n, cleo_times[k]) for k, n in (("c1", 90), ("c2", 25), ("c3", 35))]
    post_events(shop, admin, events)
    [done] = expiry.run(runtime)  # amy's 120 and cleo's 170 expired, in the months their lots expired
    assert done.amount == {"beans": 290}
    coffee = redeem(shop, admin, "ben", "free-coffee", "ben-1")  # ben: 50 left
    assert coffee.status_code == 201
    post_events(shop, admin, [refund_of("b0-back", "b0", "ben", ago(1))])  # 50 taken back, 150 owed
    amy_coffee = redeem(shop, admin, "amy", "free-coffee", "amy-1").json()  # 80 + 60 + 10 of 45
    assert shop.post(f"{P}/redemptions/{amy_coffee['id']}/cancel", headers=admin).status_code == 200
    amy_again = redeem(shop, admin, "amy", "free-coffee", "amy-2")
    assert amy_again.status_code == 201
    held = {"amy": 185 - 150, "ben": 0, "cleo": 90 + 25 + 35}
    assert {who: balance(shop, admin, who) for who in held} == held
    report = liability_of(shop, admin)
    now = dt.datetime.now(UTC)
    expiry_dates = {k: w + dt.timedelta(days=365) for k, w in {**amy_times, **cleo_times}.items()}
    remaining = {"a1": 0, "a2": 0, "a3": 35, "c1": 90, "c2": 25, "c3": 35}  # amy's coffee drew a1, a2, 10 of a3
    in_days = {
        d: sum(n for k, n in remaining.items() if now < expiry_dates[k] <= now + dt.timedelta(days=d)) for d in (30, 90)
    }
    expired: dict[str, int] = defaultdict(int)
    expired[local_month(amy_times["a0"] + dt.timedelta(days=365))] += 120
    expired[local_month(ago(380) + dt.timedelta(days=365))] += 170
    this_month = local_month(now)
    assert report == {
        "currency": "beans",
        "outstanding": sum(held.values()),
        "spendable": sum(held.values()),
        "pending": 0,
        "arrears": 150,
        "holders": 2,
        "expiring": {"30d": in_days[30], "90d": in_days[90]},
        "redeemed_by_month": {this_month: 150 * 3 - 150},  # net of the cancelled one
        "expired_by_month": dict(sorted(expired.items())),
    }
    assert in_days == {30: 25, 90: 25 + 35}, "amy's soon-expiring lots were spent first: only cleo's remain"


# --------------------------------------------------------------------------- a variant with pending beans

VARIANT_TEXT = (
    BREWHOUSE_TEXT.replace(
        "{key: beans, name: Beans, spendable: true, expires_after: P365D}",
        "{key: beans, name: Beans, spendable: true, expires_after: P365D, pending: P14D}",
    )
    + "  - {key: pastry, name: Pastry, cost: {beans: 40}, limit: {max: 2, per: month}}\n"
    + "  - {key: summer-tote, name: Summer tote, cost: {beans: 10}, ends: 2020-08-31}\n"
    + "  - {key: future-cup, name: Future cup, cost: {beans: 10}, starts: 2099-01-01}\n"
    + "  - {key: last-tin, name: Last tin, cost: {beans: 10}, stock: 1}\n"
)


@pytest.fixture
def pending_shop(client: TestClient, admin: dict[str, str], runtime: Runtime) -> Iterator[TestClient]:
    assert "pending: P14D" in VARIANT_TEXT
    apply_doc(client, admin, VARIANT_TEXT)
    yield client
    check_invariants(books(runtime, program_id_of(runtime)))


def test_pending_beans_are_held_but_not_spendable_until_they_mature(
    pending_shop: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    shop = pending_shop
    older, recent = ago(30), ago(3)
    post_events(shop, admin, [bought("p-old", "amy", 200, older), bought("p-new", "amy", 100, recent)])
    assert balance(shop, admin, "amy") == 300
    report = liability_of(shop, admin)
    assert (report["outstanding"], report["spendable"], report["pending"]) == (300, 200, 100)
    assert redeem(shop, admin, "amy", "free-coffee", "c-1").status_code == 201
    refused_with(redeem(shop, admin, "amy", "free-coffee", "c-2"), "insufficient_balance")  # 150 held, 50 spendable
    assert catalog(shop, admin, "amy")["free-coffee"]["reason"]["code"] == "insufficient_balance"
    # a return inside the pending window voids the pending beans, leaving the spendable ones alone
    post_events(shop, admin, [bought("p-more", "amy", 60, ago(2))])
    post_events(shop, admin, [refund_of("p-more-back", "p-more", "amy", ago(1))])
    pid_books = books(runtime, program_id_of(runtime))
    [amy] = {x.participant_id for x in pid_books.lots.values()}
    assert pid_books.positions[(amy, "beans")] == Position(150, 0, 100)
    # the lots job, two weeks on: the 100 beans are spendable
    [done] = expiry.run(runtime, now=recent + dt.timedelta(days=14, minutes=1))
    assert done.matured == 1 and done.amount == {}
    assert liability_of(shop, admin)["pending"] == 0
    assert redeem(shop, admin, "amy", "free-coffee", "c-2").status_code == 201
    assert balance(shop, admin, "amy") == 0


def test_not_active_limits_per_period_and_the_last_in_stock(
    pending_shop: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    shop = pending_shop
    post_events(shop, admin, [bought("p1", "amy", 500, ago(40)), bought("p2", "ben", 100, ago(40))])
    refused_with(redeem(shop, admin, "amy", "summer-tote", "t-1"), "not_active")
    refused_with(redeem(shop, admin, "amy", "future-cup", "f-1"), "not_active")
    listed = catalog(shop, admin, "amy")
    assert listed["summer-tote"]["active"] is False and listed["summer-tote"]["reason"]["code"] == "not_active"
    # two pastries a month
    first = redeem(shop, admin, "amy", "pastry", "pa-1")
    assert first.status_code == 201 and redeem(shop, admin, "amy", "pastry", "pa-2").status_code == 201
    refused_with(redeem(shop, admin, "amy", "pastry", "pa-3"), "limit_reached")
    assert shop.post(f"{P}/redemptions/{first.json()['id']}/cancel", headers=admin).status_code == 200
    assert redeem(shop, admin, "amy", "pastry", "pa-3").status_code == 201, "a cancelled one does not count"
    refused_with(redeem(shop, admin, "amy", "pastry", "pa-4"), "limit_reached")
    # next month the limit starts afresh (the service takes the time; the API uses the clock)
    today = dt.datetime.now(LONDON)
    next_month = (today.replace(day=1) + dt.timedelta(days=32)).replace(day=2, hour=12)
    made = redeem_now(runtime, "amy", "pastry", "pa-next", now=next_month.astimezone(UTC))
    assert made["status"] == "pending"
    # the last tin
    assert redeem(shop, admin, "amy", "last-tin", "tin-amy").status_code == 201
    refused_with(redeem(shop, admin, "ben", "last-tin", "tin-ben"), "out_of_stock")
    assert catalog(shop, admin)["last-tin"]["remaining"] == 0
    assert balance(shop, admin, "amy") == 500 - 3 * 40 - 10
    assert balance(shop, admin, "ben") == 100


def test_liability_with_pending_and_arrears(pending_shop: TestClient, admin: dict[str, str], runtime: Runtime) -> None:
    shop = pending_shop
    post_events(
        shop,
        admin,
        [bought("a1", "amy", 300, ago(60)), bought("a2", "amy", 70, ago(2)), bought("b1", "ben", 160, ago(50))],
    )
    assert redeem(shop, admin, "ben", "free-coffee", "b-1").status_code == 201
    post_events(shop, admin, [refund_of("b1-back", "b1", "ben", ago(1))])  # ben held 10: owes 150
    report = liability_of(shop, admin)
    assert {k: report[k] for k in ("outstanding", "spendable", "pending", "arrears", "holders")} == {
        "outstanding": 370,
        "spendable": 300,
        "pending": 70,
        "arrears": 150,
        "holders": 1,
    }
    assert report["redeemed_by_month"] == {local_month(dt.datetime.now(UTC)): 150}
    assert report["expired_by_month"] == {}
    # ben buys again: the new beans pay his arrears first (pending does not matter for that)
    post_events(shop, admin, [bought("b2", "ben", 200, ago(0.5))])
    report = liability_of(shop, admin)
    assert (report["outstanding"], report["pending"], report["arrears"]) == (370 + 50, 70 + 50, 0)
