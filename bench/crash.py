"""Crash runs: ``levelup serve`` killed with SIGKILL again and again under load, then the books checked.

Clients send purchases (one event a request, and batches), refunds of purchases already
acknowledged (whole and partial) and redemptions of a reward with little stock, from several
threads, while the server is killed at random moments and restarted. Every request whose answer
never came is sent again after the last restart (and some that were answered, as a CRM retry
would), until each is answered. Then, reading the database itself:

- every acknowledged event is stored exactly once, and every acknowledged redemption once;
- each balance equals the sum of its ledger, and no balance is negative;
- the reward is not oversold (redeemed ≤ stock, and equals the redemptions made);
- replay recomputes exactly what is stored.

    python bench/crash.py                                   # SQLite, 20 kills
    python bench/crash.py --database postgresql://postgres@127.0.0.1:5432/test --fresh-schema --kills 20

It prints the counts (events sent and acknowledged, kills, anything lost: 0) and exits non-zero
if a check fails. ``tests/storage/test_crash_runs.py`` runs a short one on both databases.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import secrets
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

try:  # run as a script from the repository (bench/ on the path) or imported as bench.crash by the tests
    from server import Server
except ImportError:  # pragma: no cover - the import path depends on how this module is loaded
    from bench.server import Server

from levelup.events.replay import replay
from levelup.runtime import Runtime
from levelup.storage import tables as t

PROGRAM = "crash-shop"
DOCUMENT = f"""\
program: {PROGRAM}
name: Crash shop
currencies:
  - {{key: points, name: Points, spendable: true}}
metrics:
  - {{key: spend, event: purchase.completed, aggregate: sum, value: data.amount}}
rules:
  - {{key: purchase, event: purchase.completed, award: {{points: data.amount}}}}
rewards:
  - {{key: voucher, name: Voucher, cost: {{points: 40}}, stock: 25}}
"""
CUSTOMERS = [f"cus-{i}" for i in range(12)]
TIMEOUT = 10.0


@dataclass
class Request:
    """One request as a client means it: sent until answered, the same body every time."""

    path: str
    body: dict[str, Any]
    kind: str  # "event", "batch", "refund", "redeem"
    answered: int | None = None  # the status of the answer that came back, if one did

    @property
    def event_ids(self) -> list[str]:
        if self.kind == "batch":
            return [e["id"] for e in self.body["events"]]
        return [self.body["id"]] if self.kind in ("event", "refund") else []


@dataclass
class Report:
    database: str
    kills: int = 0
    requests: int = 0
    answered_before_resend: int = 0
    resent: int = 0
    events_acknowledged: int = 0
    redemptions_acknowledged: int = 0
    failures: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"database                {self.database}",
            f"kills (SIGKILL)         {self.kills}",
            f"requests                {self.requests:,} ({self.answered_before_resend:,} answered before the last "
            f"restart, {self.resent:,} sent again after it)",
            f"events acknowledged     {self.events_acknowledged:,}, every one stored exactly once: "
            f"{'yes' if not self.failures else 'see below'}",
            f"redemptions acknowledged {self.redemptions_acknowledged:,}",
            f"lost                    {sum('missing' in f for f in self.failures)}",
            *(f"FAILED: {f}" for f in self.failures),
        ]


class Cluster:
    """The server, restarted on a new port after each kill; clients ask for the current address."""

    def __init__(self, database: str, workers: int, folder: Path) -> None:
        self.database, self.workers, self.folder = database, workers, folder
        self.admin_key = secrets.token_urlsafe(16)
        self._lock = threading.Lock()
        self._starts = 0
        self.server = self._start()

    def _start(self) -> Server:
        self._starts += 1
        server = Server(
            self.database,
            self.workers,
            self.admin_key,
            self.folder / f"server-{self._starts}.log",
            env={"LEVELUP_CLOSE_EVERY": "0", "LEVELUP_DELIVER": "0"},
        )
        try:
            server.wait_ready(120)  # a loaded 2-core machine has taken over 60 s to start two workers
        except RuntimeError:
            server.stop()  # not left running behind the run's back
            raise
        return server

    @property
    def base_url(self) -> str:
        with self._lock:
            return self.server.base_url

    def kill_and_restart(self) -> None:
        with self._lock:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.server.process.pid, signal.SIGKILL)
            self.server.process.wait(30)
            self.server.stop()  # closes its log
            self.server = self._start()

    def stop(self) -> None:
        self.server.stop()


def send(cluster: Cluster, client: httpx.Client, request: Request) -> bool:
    """Send once; True when an answer came back (any status: the request was decided)."""
    try:
        response = client.post(cluster.base_url + request.path, json=request.body)
    except httpx.TransportError:
        return False
    if response.status_code >= 500:  # the server was stopping: not an answer about this request
        return False
    request.answered = response.status_code
    return True


def client_loop(cluster: Cluster, seed: int, stop: threading.Event, out: list[Request]) -> None:
    """Purchases, refunds of acknowledged purchases, and redemptions, until ``stop``."""
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {cluster.admin_key}"}
    acknowledged: list[str] = []
    refunded: set[str] = set()
    n = 0
    base = f"/api/v1/programs/{PROGRAM}"
    with httpx.Client(headers=headers, timeout=TIMEOUT) as client:
        while not stop.is_set():
            n += 1
            roll = rng.random()
            customer = rng.choice(CUSTOMERS)
            purchase = {
                "id": f"s{seed}-{n}",
                "type": "purchase.completed",
                "participant": customer,
                "data": {"amount": rng.randint(5, 60)},
            }
            if roll < 0.45:
                request = Request(f"{base}/events", purchase, "event")
            elif roll < 0.65:
                batch = [{**purchase, "id": f"s{seed}-{n}-{i}"} for i in range(rng.randint(2, 6))]
                request = Request(f"{base}/events", {"events": batch}, "batch")
            elif roll < 0.8 and len(acknowledged) > len(refunded):
                target = rng.choice([a for a in acknowledged if a not in refunded])
                refunded.add(target)
                owner = target.split("@")[1]
                body: dict[str, Any] = {
                    "id": f"s{seed}-{n}-refund",
                    "type": "purchase.refunded",
                    "participant": owner,
                    "reverses": target.split("@")[0],
                }
                if rng.random() < 0.5:
                    body["portion"] = 0.5
                request = Request(f"{base}/events", body, "refund")
            else:
                body = {"participant": customer, "reward": "voucher", "idempotency_key": f"s{seed}-{n}-redeem"}
                request = Request(f"{base}/redemptions", body, "redeem")
            out.append(request)
            if send(cluster, client, request) and request.kind == "event" and request.answered == 200:
                acknowledged.append(f"{purchase['id']}@{customer}")


def crash_run(
    database: str, *, kills: int, seed: int, folder: Path, clients: int = 4, workers: int | None = None
) -> Report:
    """Run the load with ``kills`` SIGKILLs, resend what was never answered, check the books. ``workers``:
    server processes (default: 1 on SQLite, whose writers queue anyway, 2 on PostgreSQL)."""
    workers = workers or (1 if database.startswith("sqlite") else 2)
    report = Report(database.split(":", 1)[0])
    cluster = Cluster(database, workers, folder)
    try:
        with httpx.Client(base_url=cluster.base_url, timeout=TIMEOUT) as admin:
            applied = admin.put(
                f"/api/v1/programs/{PROGRAM}",
                content=DOCUMENT,
                headers={"Authorization": f"Bearer {cluster.admin_key}", "Content-Type": "application/yaml"},
            )
            applied.raise_for_status()
        stop = threading.Event()
        sent: list[list[Request]] = [[] for _ in range(clients)]
        threads = [
            threading.Thread(target=client_loop, args=(cluster, seed * 100 + i, stop, sent[i])) for i in range(clients)
        ]
        for thread in threads:
            thread.start()
        rng = random.Random(seed)
        for _ in range(kills):
            time.sleep(rng.uniform(0.3, 1.2))
            cluster.kill_and_restart()
            report.kills += 1
        time.sleep(0.3)
        stop.set()
        for thread in threads:
            thread.join()
        requests = [r for per_client in sent for r in per_client]
        report.requests = len(requests)
        report.answered_before_resend = sum(r.answered is not None for r in requests)
        _resend(cluster, requests, random.Random(seed), report)
        _check(database, requests, report)
    finally:
        cluster.stop()
    return report


def _resend(cluster: Cluster, requests: list[Request], rng: random.Random, report: Report) -> None:
    """Everything never answered, until answered, in the order first sent; and a tenth of the answered
    ones again (a CRM's retry), which must change nothing."""
    again = [r for r in requests if r.answered is None or rng.random() < 0.1]
    report.resent = len(again)
    with httpx.Client(headers={"Authorization": f"Bearer {cluster.admin_key}"}, timeout=TIMEOUT) as client:
        for request in again:
            deadline = time.monotonic() + 60
            first = request.answered
            while not send(cluster, client, request):
                if time.monotonic() > deadline:
                    report.failures.append(f"no answer for {request.kind} {request.body} after 60 s")
                    break
                time.sleep(0.2)
            if first is not None and first in (200, 201) and request.answered not in (200, 201):
                report.failures.append(f"a retried {request.kind} answered {request.answered} (was {first})")


def _check(database: str, requests: list[Request], report: Report) -> None:
    runtime = Runtime.from_url(database, migrate=False)
    try:
        with runtime.db.read() as connection:
            program_id = connection.execute(select(t.programs.c.id).where(t.programs.c.key == PROGRAM)).scalar_one()
            stored = dict(
                connection.execute(
                    select(t.events.c.event_id, func.count())
                    .where(t.events.c.program_id == program_id)
                    .group_by(t.events.c.event_id)
                ).all()
            )
            wanted = {i for r in requests if r.answered in (200, 201) for i in r.event_ids}
            report.events_acknowledged = len(wanted)
            for event_id in sorted(wanted):
                if stored.get(event_id) != 1:
                    report.failures.append(f"event {event_id} missing or stored {stored.get(event_id, 0)} times")
            keys = [r.body["idempotency_key"] for r in requests if r.kind == "redeem" and r.answered in (200, 201)]
            report.redemptions_acknowledged = len(keys)
            made = dict(
                connection.execute(
                    select(t.redemptions.c.idempotency_key, func.count())
                    .where(t.redemptions.c.program_id == program_id)
                    .group_by(t.redemptions.c.idempotency_key)
                ).all()
            )
            report.failures += [f"redemption {k} missing" for k in keys if made.get(k) != 1]
            ledger = dict(
                connection.execute(
                    select(t.ledger_entries.c.participant_id, func.sum(t.ledger_entries.c.amount))
                    .where(t.ledger_entries.c.program_id == program_id)
                    .group_by(t.ledger_entries.c.participant_id)
                ).all()
            )
            for participant, available, arrears in connection.execute(
                select(t.positions.c.participant_id, t.positions.c.available, t.positions.c.arrears).where(
                    t.positions.c.program_id == program_id
                )
            ):
                if available < 0 or available - arrears != ledger.get(participant, 0):
                    report.failures.append(
                        f"participant {participant}: balance {available} − arrears {arrears} ≠ ledger "
                        f"{ledger.get(participant, 0)}"
                    )
            redeemed = connection.execute(
                select(func.coalesce(func.sum(t.reward_counts.c.redeemed), 0)).where(
                    t.reward_counts.c.program_id == program_id
                )
            ).scalar_one()
            live = sum(made.values())
            if redeemed > 25 or redeemed != live:
                report.failures.append(f"voucher: stock 25, counted {redeemed}, redemptions {live}")
        mismatches = replay(runtime, PROGRAM).mismatches
        report.failures += [f"replay: {m}" for m in mismatches[:10]]
    finally:
        runtime.db.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", help="a PostgreSQL URL (default: a temporary SQLite file)")
    parser.add_argument("--fresh-schema", action="store_true", help="run in a new PostgreSQL schema, dropped after")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="levelup-crash-"))
    print(f"$ python bench/crash.py {' '.join(sys.argv[1:])}   (logs in {folder})")
    with contextlib.ExitStack() as stack:
        database = args.database or f"sqlite:///{folder / 'levelup.db'}"
        if args.database and args.fresh_schema:
            from http_api import fresh_schema  # a script's sibling, as bench/redemptions.py uses it

            database = stack.enter_context(fresh_schema(args.database))
        started = time.perf_counter()
        report = crash_run(database, kills=args.kills, seed=args.seed, folder=folder)
    print("\n".join(report.lines()))
    print(f"wall time               {time.perf_counter() - started:.0f} s; load average {os.getloadavg()[0]:.2f}")
    return 1 if report.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
