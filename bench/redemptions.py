"""Redemption benchmark: concurrent clients against a real multi-worker ``levelup serve`` on PostgreSQL.

Starts ``levelup serve --workers N`` (default 4) on 127.0.0.1 and a free port, over a
PostgreSQL schema of its own (made here, dropped at the end, on error too). Untimed set-up:
a program with coins (100 a ``deal.won``), an unlimited ``voucher`` and a ``scarce`` reward
with ``--stock``, each of ``--participants`` funded with ``--balance`` coins by events.

Then ``--clients`` threads (default 8), each with one keep-alive connection, send
``POST /redemptions`` one after another until ``--requests`` are sent (default 4,000) or
``--max-seconds`` pass (default 60). Each request is for a participant drawn at random, for
the scarce reward with probability ``--scarce-share``, with an idempotency key of its own.
The draws are seeded: the same options send the same requests. By default participants
ask for more than they can pay and the stock runs out halfway, so the three outcomes (201,
409 ``insufficient_balance``, 409 ``out_of_stock``) all happen under contention.

Printed: redemptions made a second (201s) and requests answered a second, latency
p50/p90/p99/max by outcome, and the oversell check read from the database afterwards:
201s for the scarce reward against its stock and ``reward_counts``, each participant's
redemption rows against what they were funded with and against their balance, negative
balances, and the ledger against the positions. The oversell count must be 0. Figures are
printed, never asserted.

    python bench/redemptions.py
    python bench/redemptions.py --workers 2 --clients 16 --requests 10000
    python bench/redemptions.py --postgres postgresql://postgres@127.0.0.1:5432/test
    python bench/redemptions.py --sqlite            # the same on a SQLite file (1 worker: one writer)

PostgreSQL comes from ``--postgres``, or ``LEVELUP_BENCH_POSTGRES_URL``, or
``postgresql://postgres@127.0.0.1:5432/test``. The clients run on the same machine as the
server and take CPU from it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import secrets
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, func, make_url, select, text

from http_api import fresh_schema, load, percentile
from levelup.storage import tables as t
from server import Server

PROGRAM_KEY = "redeem-bench"
COST = 100
TARGET_P99_MS = 50.0  # issue 8: PostgreSQL, 4 workers, 8 clients
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
SEED = 20261130


def program(stock: int) -> dict[str, Any]:
    return {
        "program": PROGRAM_KEY,
        "name": "Redemption benchmark",
        "currencies": [{"key": "coins", "name": "Coins", "spendable": True}],
        "rules": [{"key": "deal", "event": "deal.won", "award": {"coins": COST}, "explain": "100 coins a deal"}],
        "rewards": [
            {"key": "voucher", "name": "Voucher", "cost": {"coins": COST}},
            {"key": "scarce", "name": "Scarce thing", "cost": {"coins": COST}, "stock": stock},
        ],
    }


@dataclass
class Outcomes:
    """What the clients saw: latency by outcome, and the 201s by participant and reward."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    made: Counter[tuple[str, str]] = field(default_factory=Counter)  # (participant, reward) → 201s
    retried: int = 0  # 200s: a key seen before (none are sent; counted in case)
    failures: list[str] = field(default_factory=list)
    sent: int = 0
    wall_s: float = 0.0
    stopped_early: bool = False

    def record(self, outcome: str, ms: float, body: dict[str, Any], participant: str, reward: str) -> None:
        with self.lock:
            self.latencies_ms[outcome].append(ms)
            if outcome == "201 made":
                self.made[(participant, reward)] += 1
            elif outcome == "200 retry":
                self.retried += 1
            elif not outcome.startswith("409") and len(self.failures) < 5:
                self.failures.append(f"{participant} {reward}: {outcome} {str(body)[:300]}")


# ---------------------------------------------------------------------------- set-up


def set_up(client: httpx.Client, participants: list[str], balance: int, stock: int) -> None:
    """Apply the program and fund every participant with ``balance`` coins (deal.won events, 100 each)."""
    base = f"/api/v1/programs/{PROGRAM_KEY}"
    response = client.put(base, json=program(stock))
    if response.status_code not in (200, 201):
        raise RuntimeError(f"applying the program: {response.status_code} {response.text[:500]}")
    when = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    events = [
        {"id": f"{p}-deal-{n}", "type": "deal.won", "participant": p, "occurred_at": when, "data": {"amount": 1}}
        for p in participants
        for n in range(balance // COST)
    ]
    for start in range(0, len(events), 1000):
        response = client.post(f"{base}/events", json={"events": events[start : start + 1000]})
        if response.status_code != 200:
            raise RuntimeError(f"funding: {response.status_code} {response.text[:500]}")
        rejected = [r for r in response.json()["results"] if r["status"] == "rejected"]
        if rejected:
            raise RuntimeError(f"funding: rejected events, e.g. {rejected[0]}")


def plan(args: argparse.Namespace, participants: list[str]) -> list[tuple[str, str]]:
    """The requests, in order: (participant, reward), seeded."""
    rng = random.Random(SEED)
    return [
        (rng.choice(participants), "scarce" if rng.random() < args.scarce_share else "voucher")
        for _ in range(args.requests)
    ]


# ---------------------------------------------------------------------------- the run


def run_clients(
    args: argparse.Namespace, base_url: str, headers: dict[str, str], requests: list[tuple[str, str]]
) -> Outcomes:
    outcomes = Outcomes()
    path = f"/api/v1/programs/{PROGRAM_KEY}/redemptions"
    tag = secrets.token_hex(4)
    next_index = iter(range(len(requests)))
    take = threading.Lock()
    started = time.perf_counter()
    deadline = started + args.max_seconds
    gate = threading.Barrier(args.clients)

    def client_loop() -> None:
        transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        with httpx.Client(base_url=base_url, headers=headers, timeout=30.0, transport=transport) as client:
            client.get("/healthz")  # the connection is open before the clock matters
            gate.wait()
            while time.perf_counter() < deadline:
                with take:
                    i = next(next_index, None)
                    if i is None:
                        return
                    outcomes.sent += 1
                participant, reward = requests[i]
                body = {"participant": participant, "reward": reward, "idempotency_key": f"{tag}-{i}"}
                sent = time.perf_counter()
                try:
                    response = client.post(path, json=body)
                    status = response.status_code
                    try:
                        answer = response.json()
                    except ValueError:
                        answer = {"text": response.text[:300]}
                except httpx.HTTPError as exc:
                    status, answer = 0, {"error": repr(exc)}
                ms = (time.perf_counter() - sent) * 1000
                if status == 201:
                    outcome = "201 made"
                elif status == 200:
                    outcome = "200 retry"
                elif status == 409:
                    outcome = f"409 {answer.get('code')}"
                else:
                    outcome = f"{status or 'transport'} error"
                outcomes.record(outcome, ms, answer, participant, reward)

    threads = [threading.Thread(target=client_loop, name=f"client-{n}") for n in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(args.max_seconds + 60)
    outcomes.wall_s = time.perf_counter() - started
    outcomes.stopped_early = outcomes.sent < len(requests)
    return outcomes


@dataclass
class Check:
    """The oversell check, from the database."""

    lines: list[tuple[str, int, str]] = field(default_factory=list)  # (what, count of violations, detail)

    @property
    def oversold(self) -> int:
        return sum(n for _, n, _ in self.lines)


def check(database: str, outcomes: Outcomes, participants: list[str], balance: int, stock: int) -> Check:
    url = make_url(database)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    engine = create_engine(url)
    p, pos, led, r, rc = t.participants.c, t.positions.c, t.ledger_entries.c, t.redemptions.c, t.reward_counts.c
    try:
        with engine.connect() as connection, connection.begin():
            program_id = connection.execute(select(t.programs.c.id).where(t.programs.c.key == PROGRAM_KEY)).scalar_one()
            names = dict(connection.execute(select(p.id, p.external_id).where(p.program_id == program_id)).all())
            rows: Counter[tuple[str, str]] = Counter()
            for pid, reward, n in connection.execute(
                select(r.participant_id, r.reward, func.count())
                .where(r.program_id == program_id, r.status != "cancelled")
                .group_by(r.participant_id, r.reward)
            ):
                rows[(names[pid], reward)] = int(n)
            available = {
                names[pid]: (int(a), int(arrears))
                for pid, a, arrears in connection.execute(
                    select(pos.participant_id, pos.available, pos.arrears).where(
                        pos.program_id == program_id, pos.currency == "coins"
                    )
                )
            }
            ledger = {
                names[pid]: int(total)
                for pid, total in connection.execute(
                    select(led.participant_id, func.sum(led.amount))
                    .where(led.program_id == program_id, led.currency == "coins")
                    .group_by(led.participant_id)
                )
            }
            counted = connection.execute(
                select(rc.redeemed).where(rc.program_id == program_id, rc.reward == "scarce")
            ).scalar_one_or_none()
    finally:
        engine.dispose()

    result = Check()
    scarce_201 = sum(n for (_, reward), n in outcomes.made.items() if reward == "scarce")
    scarce_rows = sum(n for (_, reward), n in rows.items() if reward == "scarce")
    result.lines.append(("scarce 201s over stock", max(0, scarce_201 - stock), f"{scarce_201:,} 201s, stock {stock:,}"))
    result.lines.append(
        ("scarce rows over stock", max(0, scarce_rows - stock), f"{scarce_rows:,} redemption rows, stock {stock:,}")
    )
    result.lines.append(
        ("reward_counts != rows", abs((counted or 0) - scarce_rows), f"reward_counts.redeemed {counted or 0:,}")
    )
    made_total, rows_total = sum(outcomes.made.values()), sum(rows.values())
    result.lines.append(("rows != 201s", abs(rows_total - made_total), f"{rows_total:,} rows, {made_total:,} 201s"))
    overspent = [name for name in participants if COST * sum(rows[(name, w)] for w in ("voucher", "scarce")) > balance]
    result.lines.append(("participants overspent", len(overspent), f"{', '.join(overspent[:5]) or 'none'}"))
    wrong = [
        name
        for name in participants
        if available.get(name, (0, 0))[0] != balance - COST * sum(rows[(name, w)] for w in ("voucher", "scarce"))
    ]
    result.lines.append(("balance != funded - spent", len(wrong), f"{', '.join(wrong[:5]) or 'none'}"))
    negative = [name for name, (a, _) in available.items() if a < 0]
    result.lines.append(("negative balances", len(negative), f"{', '.join(negative[:5]) or 'none'}"))
    unbalanced = [name for name, (a, arrears) in available.items() if ledger.get(name, 0) != a - arrears]
    result.lines.append(("ledger != available - arrears", len(unbalanced), f"{', '.join(unbalanced[:5]) or 'none'}"))
    return result


# ---------------------------------------------------------------------------- report


def print_report(args: argparse.Namespace, outcomes: Outcomes, result: Check) -> None:
    wall = outcomes.wall_s
    answered = sum(len(v) for v in outcomes.latencies_ms.values())
    made = len(outcomes.latencies_ms.get("201 made", []))
    early = "  (stopped early: --max-seconds)" if outcomes.stopped_early else ""
    print(f"\n=== {answered:,} of {args.requests:,} redemption requests in {wall:.2f} s{early} ===")
    print(f"  {'outcome':<26} {'count':>7} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    everything: list[float] = []
    for outcome, ms in sorted(outcomes.latencies_ms.items()):
        everything += ms
        print(
            f"  {outcome:<26} {len(ms):>7,} {percentile(ms, 50):>8.2f} {percentile(ms, 90):>8.2f} "
            f"{percentile(ms, 99):>8.2f} {max(ms):>8.2f}"
        )
    if everything:
        print(
            f"  {'all':<26} {len(everything):>7,} {percentile(everything, 50):>8.2f} "
            f"{percentile(everything, 90):>8.2f} {percentile(everything, 99):>8.2f} {max(everything):>8.2f}"
        )
    for failure in outcomes.failures:
        print(f"  failure   {failure}")
    print("\n=== oversell check (from the database) ===")
    for what, n, detail in result.lines:
        print(f"  {what:<30} {n:>5}   {detail}")
    verdict = "none" if result.oversold == 0 else "OVERSOLD"
    print("\n=== summary ===")
    if wall:
        print(f"  redemptions made   {made / wall:,.1f} /s   ({made:,} 201s)")
        print(f"  requests answered  {answered / wall:,.1f} /s   with {args.clients} clients")
    if everything:
        print(f"  latency (all)      p50 {percentile(everything, 50):.2f} ms   p99 {percentile(everything, 99):.2f} ms")
    print(f"  oversell count     {result.oversold}   ({verdict}; must be 0)")
    if everything:
        p99 = percentile(everything, 99)
        setting = "PostgreSQL, 4 workers, 8 clients"
        ours = not args.sqlite and args.workers == 4 and args.clients == 8
        met = "meets" if p99 <= TARGET_P99_MS and result.oversold == 0 else "MISSES"
        print(
            f"  target ({setting}) p99 <= {TARGET_P99_MS:.0f} ms and 0 oversold: {met} "
            f"(p99 {p99:.2f} ms, {result.oversold} oversold)" + ("" if ours else f"; this run is not {setting}")
        )
    print(f"  {load()} at the end (other processes on the machine lower every figure)")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", help="PostgreSQL URL (default: LEVELUP_BENCH_POSTGRES_URL or localhost/test)")
    parser.add_argument("--sqlite", action="store_true", help="a temporary SQLite file instead (forces 1 worker)")
    parser.add_argument("--workers", type=int, default=4, help="levelup serve --workers (default 4)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--requests", type=int, default=4_000, help="redemption requests in all (default 4,000)")
    parser.add_argument("--participants", type=int, default=200, help="participants (default 200)")
    parser.add_argument("--balance", type=int, default=1_500, help="coins each participant gets (default 1,500)")
    parser.add_argument("--stock", type=int, default=600, help="stock of the scarce reward (default 600)")
    parser.add_argument("--scarce-share", type=float, default=0.3, help="share of requests for it (default 0.3)")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time bound of the run (default 60)")
    parser.add_argument("--startup-timeout", type=float, default=60.0, help="seconds to wait for /healthz")
    args = parser.parse_args(argv)
    if min(args.workers, args.clients, args.requests, args.participants) < 1 or args.stock < 0:
        parser.error("counts must be positive")
    if args.balance < COST or args.balance % COST:
        parser.error(f"--balance must be a positive multiple of {COST}")
    if not 0 <= args.scarce_share <= 1:
        parser.error("--scarce-share must be in 0..1")
    if args.sqlite:
        args.workers = 1
    return args


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwind, so the server is stopped and the schema dropped


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, _terminate)
    with tempfile.TemporaryDirectory(prefix="levelup-redeem-bench-") as directory:
        if args.sqlite:
            run(args, f"sqlite:///{Path(directory) / 'levelup.db'}", Path(directory))
            return
        postgres = args.postgres or os.environ.get("LEVELUP_BENCH_POSTGRES_URL") or DEFAULT_POSTGRES
        try:
            probe = create_engine(make_url(postgres).set(drivername="postgresql+psycopg"))
            with probe.connect() as connection:
                connection.execute(text("SELECT 1"))
            probe.dispose()
        except Exception as exc:
            print(f"PostgreSQL at {make_url(postgres).render_as_string()} unreachable: {exc.__class__.__name__}: {exc}")
            sys.exit(2)
        with fresh_schema(postgres) as url:
            run(args, url, Path(directory))


def run(args: argparse.Namespace, database: str, directory: Path) -> None:
    shown = make_url(database).render_as_string(hide_password=True)
    print(
        f"Levelup redemption benchmark: levelup serve --workers {args.workers} on {shown}, {args.clients} clients, "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs (clients on the same machine), {load()}",
        flush=True,
    )
    admin_key = secrets.token_urlsafe(24)
    server = Server(database, args.workers, admin_key, directory / "server.log")
    participants = [f"member-{i:04d}" for i in range(args.participants)]
    try:
        print(f"  server ready in {server.wait_ready(args.startup_timeout):.1f} s at {server.base_url}", flush=True)
        headers = {"Authorization": f"Bearer {admin_key}"}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=60.0) as client:
            started = time.perf_counter()
            set_up(client, participants, args.balance, args.stock)
            took = time.perf_counter() - started
        requests = plan(args, participants)
        asked = Counter(reward for _, reward in requests)
        print(
            f"  set-up in {took:.1f} s: {args.participants:,} participants with {args.balance:,} coins "
            f"({args.balance // COST} redemptions each), scarce stock {args.stock:,}; "
            f"plan: {asked['voucher']:,} voucher + {asked['scarce']:,} scarce requests",
            flush=True,
        )
        outcomes = run_clients(args, server.base_url, headers, requests)
    except BaseException:
        print(f"\nserver log (tail):\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        server.stop()
    print_report(args, outcomes, check(database, outcomes, participants, args.balance, args.stock))


if __name__ == "__main__":
    main()
