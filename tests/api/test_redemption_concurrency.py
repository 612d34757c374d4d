"""Concurrent redemptions through a real ``levelup serve``: no balance overspent, no stock oversold.

The guarantee: "concurrent redemptions never overspend a balance or oversell stock", and
retries are always safe. A real server is started (4 worker processes on
PostgreSQL, 1 on SQLite, whose writers queue) on a fresh database, on a free loopback
port, and requests are fired at it at the same moment over real HTTP (asyncio + httpx,
one connection a request). Then the books are read back from the database itself:

- one participant with coins for exactly 7 redemptions sends 100 at once: 7 are made
  (201), 93 refused (409 ``insufficient_balance``), the balance ends at 0;
- 100 requests from 50 participants, all with coins, race for a reward with stock 25:
  exactly 25 are made, 75 refused (409 ``out_of_stock``);
- 20 requests with the same idempotency key and body: one redemption (one 201, the
  rest 200 with the same id);
- the same idempotency key sent for different participants at once: one redemption,
  the rest 409 ``idempotency_conflict`` (never a 500).

After each burst: every balance equals the sum of its ledger entries (available −
arrears) and the sum of its lots, never went below zero in ledger order, each
redemption has its debit and lot draws, and ``reward_counts`` equals the redemptions.

PostgreSQL runs when ``LEVELUP_TEST_POSTGRES_URL`` is set (the test skips and says so
otherwise). Everything is bounded in time: the server start, each request and each burst.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from bench.server import Server
from sqlalchemy import Engine, func, select
from sqlalchemy.pool import QueuePool

from levelup.storage import tables as t
from levelup.storage.db import Database
from tests.conftest import POSTGRES_URL, fresh_database

ADMIN_KEY = "concurrency-admin-key"
STARTUP_TIMEOUT = 60.0  # seconds for the server to answer /healthz (migrations included)
REQUEST_TIMEOUT = 60.0  # one request
BURST_TIMEOUT = 120.0  # one burst of concurrent requests
WORKERS = {"sqlite": 1, "postgres": 4}

COST = 100  # coins a redemption costs (both rewards)
STOCK = 25  # the scarce reward's stock
RICH_AFFORDS = 7  # redemptions the one participant can pay for
RICH_REQUESTS = 100
RACERS = 50  # participants racing for the scarce stock ...
RACER_REQUESTS = 2  # ... with this many requests each (and coins for all of them)
STORM = 20  # requests with one idempotency key
PROBES = 20  # participants sending one idempotency key between them


def program(key: str) -> dict[str, Any]:
    """Coins earned by deals (100 a deal.won) or adjustments; a plain reward and a scarce one."""
    return {
        "program": key,
        "name": "Redemption race",
        "currencies": [{"key": "coins", "name": "Coins", "spendable": True}],
        "rules": [{"key": "deal", "event": "deal.won", "award": {"coins": COST}, "explain": "100 coins a deal"}],
        "rewards": [
            {"key": "voucher", "name": "Voucher", "cost": {"coins": COST}},
            {"key": "scarce", "name": "Scarce thing", "cost": {"coins": COST}, "stock": STOCK},
        ],
    }


# --------------------------------------------------------------------------- the server


@dataclass
class Served:
    kind: str
    server: Server
    engine: Engine  # the test's own connection to the server's database, to read the books

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_KEY}"}

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.base_url, headers=self.admin, timeout=REQUEST_TIMEOUT)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A real server (4 workers on PostgreSQL, 1 on SQLite) over a fresh database, for this module."""
    kind: str = request.param
    folder = tmp_path_factory.mktemp(f"redeem-{kind}")
    for url in fresh_database(kind, folder):  # skips, saying why, without PostgreSQL
        server = Server(url, WORKERS[kind], ADMIN_KEY, folder / "server.log", env={"LEVELUP_CLOSE_EVERY": "0"})
        database = Database(url)
        try:
            server.wait_ready(STARTUP_TIMEOUT)
            yield Served(kind, server, database.engine)
        finally:
            server.stop()
            database.dispose()


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: dict[str, Any]
    request: dict[str, Any]

    @property
    def code(self) -> str | None:
        return self.body.get("code")


async def _burst(base_url: str, path: str, bodies: Sequence[dict[str, Any]]) -> list[Reply]:
    """POST every body at once: one connection each, all released together by one gate."""
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=REQUEST_TIMEOUT, limits=limits) as client:
        gate = asyncio.Event()

        async def one(body: dict[str, Any]) -> Reply:
            await gate.wait()
            response = await client.post(path, json=body)
            try:
                parsed = response.json()
            except ValueError:
                parsed = {"text": response.text[:500]}
            return Reply(response.status_code, response.headers.get("content-type", ""), parsed, body)

        tasks = [asyncio.create_task(one(body)) for body in bodies]
        await asyncio.sleep(0.05)  # every task is waiting at the gate
        gate.set()
        return await asyncio.wait_for(asyncio.gather(*tasks), BURST_TIMEOUT)


def burst(served: Served, program_key: str, bodies: Sequence[dict[str, Any]]) -> list[Reply]:
    """Fire the bodies at once; every refusal must be problem+json. Server errors are returned, not judged:
    each test first checks that nothing unsafe happened, then that every request was answered properly."""
    replies = asyncio.run(_burst(served.server.base_url, f"/api/v1/programs/{program_key}/redemptions", bodies))
    refused = [r for r in replies if r.status == 409]
    assert all(r.content_type.startswith("application/problem+json") for r in refused), refused[:3]
    return replies


def answered(served: Served, replies: Sequence[Reply]) -> None:
    """Every request got 200, 201 or 409: no server error (with the errors the server logged, if any)."""
    errors = [r for r in replies if r.status not in (200, 201, 409)]
    if errors:
        outcome = dict(Counter((r.status, r.code) for r in replies))
        logged = sorted({line.strip() for line in served.server.log_tail(2000).splitlines() if "Error:" in line})
        pytest.fail(
            f"{served.kind}, {WORKERS[served.kind]} workers: {len(errors)} of {len(replies)} requests not answered "
            f"200/201/409 ({outcome}), e.g. {errors[0]}\nerrors in the server log:\n" + "\n".join(logged[:5]),
            pytrace=False,
        )


def set_up(served: Served, program_key: str, funds: dict[str, tuple[int, int]]) -> None:
    """Apply the program, then fund each participant with ``(deals, adjustment)``: 100 coins a deal.won
    event, plus a manual credit; and check the balances the API then shows."""
    base = f"/api/v1/programs/{program_key}"
    when = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    with served.client() as client:
        response = client.put(base, json=program(program_key))
        assert response.status_code == 201, response.text
        events = [
            {"id": f"{p}-deal-{n}", "type": "deal.won", "participant": p, "occurred_at": when, "data": {"amount": 1}}
            for p, (deals, _) in funds.items()
            for n in range(deals)
        ]
        for start in range(0, len(events), 1000):
            response = client.post(f"{base}/events", json={"events": events[start : start + 1000]})
            assert response.status_code == 200, response.text
            assert {r["status"] for r in response.json()["results"]} == {"accepted"}, response.text
        for p, (_, extra) in funds.items():
            if extra:
                body = {"participant": p, "currency": "coins", "amount": extra, "note": "seed", "idempotency_key": p}
                response = client.post(f"{base}/adjustments", json=body)
                assert response.status_code == 201, response.text
        for p, (deals, extra) in funds.items():
            response = client.get(f"{base}/participants/{p}")
            assert response.status_code == 200, response.text
            assert response.json()["balances"]["coins"] == deals * COST + extra, response.text


# --------------------------------------------------------------------------- the books


@dataclass(frozen=True)
class Books:
    balance: dict[str, int]  # participant → available coins
    redemptions: dict[int, tuple[str, str, str]]  # id → (participant, reward, idempotency key)
    reward_counts: dict[str, int]


def books(served: Served, program_key: str) -> Books:
    """Read the books from the database and check that they agree with each other:

    ledger sum == available − arrears; sum of lots remaining == available; 0 <= pending <= available;
    the running ledger sum never below zero; each redemption debited once, with lot draws of its cost;
    reward_counts.redeemed == the redemptions not cancelled, per reward with a stock.
    """
    p, pos, led, lot = t.participants.c, t.positions.c, t.ledger_entries.c, t.lots.c
    r, d, rc = t.redemptions.c, t.redemption_draws.c, t.reward_counts.c
    with served.engine.connect() as connection, connection.begin():
        program_id = connection.execute(select(t.programs.c.id).where(t.programs.c.key == program_key)).scalar_one()
        names = dict(connection.execute(select(p.id, p.external_id).where(p.program_id == program_id)).all())
        coins = select(t.positions).where(pos.program_id == program_id, pos.currency == "coins")
        positions = {row.participant_id: row for row in connection.execute(coins)}
        amounts: dict[int, list[int]] = {}
        for pid, amount in connection.execute(
            select(led.participant_id, led.amount)
            .where(led.program_id == program_id, led.currency == "coins")
            .order_by(led.id)
        ):
            amounts.setdefault(pid, []).append(int(amount))
        lots = dict(
            connection.execute(
                select(lot.participant_id, func.sum(lot.remaining))
                .where(lot.program_id == program_id, lot.currency == "coins")
                .group_by(lot.participant_id)
            ).all()
        )
        redemptions = connection.execute(select(t.redemptions).where(r.program_id == program_id)).all()
        debits = dict(
            connection.execute(
                select(led.idempotency_key, led.amount).where(led.program_id == program_id, led.kind == "redemption")
            ).all()
        )
        drawn = dict(
            connection.execute(
                select(d.redemption_id, func.sum(d.amount))
                .join(t.redemptions, r.id == d.redemption_id)
                .where(r.program_id == program_id)
                .group_by(d.redemption_id)
            ).all()
        )
        counts = dict(connection.execute(select(rc.reward, rc.redeemed).where(rc.program_id == program_id)).all())

    assert set(amounts) == set(positions), "a participant with entries but no position, or the reverse"
    for pid, row in positions.items():
        who = names[pid]
        assert row.available >= 0 and row.arrears >= 0, (who, row)
        assert 0 <= row.pending <= row.available, (who, row)
        assert sum(amounts[pid]) == row.available - row.arrears, (who, sum(amounts[pid]), row)
        assert int(lots.get(pid) or 0) == row.available, (who, lots.get(pid), row)
        running = 0
        for amount in amounts[pid]:  # one participant's entries are written under its lock: id order is time order
            running += amount
            assert running >= 0, f"{who}'s balance went below zero in ledger order: {amounts[pid]}"
    assert len(debits) == len(redemptions), (len(debits), len(redemptions))
    for row in redemptions:
        assert debits.get(f"redemption:{row.id}") == -row.cost, (row, debits.get(f"redemption:{row.id}"))
        assert int(drawn.get(row.id) or 0) == row.cost, (row, drawn.get(row.id))
    live = Counter(row.reward for row in redemptions if row.status != "cancelled")
    for reward, redeemed in counts.items():  # kept for rewards with a stock only
        assert redeemed == live[reward], (reward, redeemed, live)
    return Books(
        balance={names[pid]: int(row.available) for pid, row in positions.items()},
        redemptions={int(row.id): (names[row.participant_id], row.reward, row.idempotency_key) for row in redemptions},
        reward_counts={k: int(v) for k, v in counts.items()},
    )


def made(replies: Sequence[Reply]) -> dict[int, tuple[str, str, str]]:
    """The redemptions the 201s announced, as the books list them."""
    out: dict[int, tuple[str, str, str]] = {}
    for reply in replies:
        if reply.status == 201:
            assert reply.body["status"] == "pending", reply
            assert reply.body["cost"] == {"coins": COST}, reply
            out[reply.body["id"]] = (reply.body["participant"], reply.body["reward"], reply.body["idempotency_key"])
    return out


# --------------------------------------------------------------------------- the tests


def test_concurrent_redemptions_never_overspend_nor_oversell(served: Served) -> None:
    key = "race"
    rich = "rich"  # 5 deals and an adjustment: 700 coins, exactly 7 vouchers
    racers = [f"racer-{i:02d}" for i in range(RACERS)]  # 200 coins each: enough for all their requests
    funds = {rich: (5, RICH_AFFORDS * COST - 5 * COST), **{name: (RACER_REQUESTS, 0) for name in racers}}
    set_up(served, key, funds)

    bodies = [{"participant": rich, "reward": "voucher", "idempotency_key": f"rich-{n}"} for n in range(RICH_REQUESTS)]
    bodies += [
        {"participant": name, "reward": "scarce", "idempotency_key": f"{name}-{n}"}
        for n in range(RACER_REQUESTS)
        for name in racers
    ]
    assert len(bodies) == 200
    started = time.monotonic()
    replies = burst(served, key, bodies)
    took = time.monotonic() - started

    for_rich = [r for r in replies if r.request["participant"] == rich]
    scarce = [r for r in replies if r.request["reward"] == "scarce"]
    outcome = Counter((r.request["reward"], r.status, r.code) for r in replies)
    summary = f"{served.kind}, {WORKERS[served.kind]} workers, {took:.1f} s: {dict(outcome)}"
    rich_made = sum(r.status == 201 for r in for_rich)
    wins = Counter(r.request["participant"] for r in scarce if r.status == 201)

    # safety, whatever else happened: nothing overspent, nothing oversold, the books agree
    assert rich_made <= RICH_AFFORDS, summary
    assert sum(wins.values()) <= STOCK, summary
    assert {r.code for r in for_rich if r.status == 409} <= {"insufficient_balance"}, summary
    assert {r.code for r in scarce if r.status == 409} <= {"out_of_stock"}, summary
    state = books(served, key)
    assert state.redemptions == made(replies), "the 201s and the redemption rows differ"
    assert state.reward_counts == {"scarce": sum(wins.values())}, state.reward_counts
    assert state.balance[rich] == (RICH_AFFORDS - rich_made) * COST
    for name in racers:
        assert state.balance[name] == (RACER_REQUESTS - wins[name]) * COST, name

    # and every request answered: exactly 7 vouchers for the one participant, exactly the stock for the racers
    answered(served, replies)
    assert Counter(r.status for r in for_rich) == {201: RICH_AFFORDS, 409: RICH_REQUESTS - RICH_AFFORDS}, summary
    assert Counter(r.status for r in scarce) == {201: STOCK, 409: len(scarce) - STOCK}, summary
    assert state.balance[rich] == 0
    with served.client() as client:  # the API says the same
        catalog = client.get(f"/api/v1/programs/{key}/rewards").json()["rewards"]
        assert {r["key"]: r["remaining"] for r in catalog} == {"voucher": None, "scarce": 0}
        assert client.get(f"/api/v1/programs/{key}/participants/{rich}").json()["balances"]["coins"] == 0


def test_a_retry_storm_makes_one_redemption(served: Served) -> None:
    key = "storm"
    set_up(served, key, {"stormy": (0, 3 * COST)})  # coins for 3: a second redemption would go through
    body = {"participant": "stormy", "reward": "voucher", "idempotency_key": "checkout-42"}
    replies = burst(served, key, [dict(body) for _ in range(STORM)])

    state = books(served, key)
    assert len(state.redemptions) == 1, state.redemptions
    assert state.redemptions == made(replies)
    assert state.balance == {"stormy": 2 * COST}
    answered(served, replies)
    statuses = Counter(r.status for r in replies)
    assert statuses == {201: 1, 200: STORM - 1}, f"{served.kind}: {dict(statuses)} {replies[:3]}"
    assert len({r.body["id"] for r in replies}) == 1, replies


def test_one_key_for_several_participants_is_one_redemption_and_conflicts(served: Served) -> None:
    """The idempotency key is the program's: sent at once for several participants, one redemption is made
    and the others are told 409 ``idempotency_conflict`` (bad input gets a clear error), not a 500."""
    key = "probe"
    probes = [f"probe-{i}" for i in range(PROBES)]
    set_up(served, key, {name: (0, COST) for name in probes})
    bodies = [{"participant": name, "reward": "voucher", "idempotency_key": "shared-key"} for name in probes]
    replies = burst(served, key, bodies)

    state = books(served, key)
    assert len(state.redemptions) == 1, state.redemptions
    assert state.redemptions == made(replies)
    assert sorted(state.balance.values()) == [0] + [COST] * (PROBES - 1)
    answered(served, replies)
    assert Counter(r.status for r in replies) == {201: 1, 409: PROBES - 1}, replies
    assert {r.code for r in replies if r.status == 409} == {"idempotency_conflict"}, replies


def test_the_connections_of_four_workers_fit_in_postgres() -> None:
    """``levelup serve --workers 4`` on PostgreSQL must not open more connections than the server accepts;
    otherwise a burst of requests is answered 500 ("sorry, too many clients already") instead of waiting.

    Each worker builds one ``Database`` (``Runtime.from_url``); its pool may hold ``pool_size + max_overflow``
    connections at once. Four of them must fit in ``max_connections − superuser_reserved_connections``.
    """
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL not configured: set LEVELUP_TEST_POSTGRES_URL (bash .ci/run does)")
    database = Database(POSTGRES_URL)
    try:
        pool = database.engine.pool
        assert isinstance(pool, QueuePool), pool
        per_worker = pool.size() + pool._max_overflow
        with database.engine.connect() as connection:
            allowed = int(connection.exec_driver_sql("SHOW max_connections").scalar_one())
            reserved = int(connection.exec_driver_sql("SHOW superuser_reserved_connections").scalar_one())
    finally:
        database.dispose()
    workers = WORKERS["postgres"]
    assert workers * per_worker <= allowed - reserved, (
        f"{workers} workers x {per_worker} connections each (pool_size {pool.size()} + max_overflow "
        f"{pool._max_overflow}, src/levelup/storage/db.py) = {workers * per_worker} > max_connections {allowed} "
        f"- {reserved} reserved: a burst of requests gets 500s"
    )
