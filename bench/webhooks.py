"""Webhooks out: what the outbox costs ingestion, and how fast the worker delivers next to its floor.

On fresh SQLite files (or fresh PostgreSQL databases with ``--postgres``) it:

1. ingests the same generated events (``bench/workload.py``) into three fresh programs, one
   ``ingest()`` call a batch, ``--repeat`` times in a rotating order (the best of each is kept, the
   machine's load drifting): **no subscription**; a subscription to a type ingestion never makes
   (``redemption.created``: only the cached check runs); a subscription to **every type** (each
   award, badge, level, streak and completion becomes an outbox row) -> events/s of each;
2. delivers ``--notifications`` of those outbox rows (the rest are set aside) with the delivery
   worker (``levelup.webhooks.delivery.Worker``: claim, sign, POST, record) to a local receiver in
   a child process (HTTP/1.1 keep-alive, answers 200 to everything) -> notifications/s;
3. sends the same bodies, signed the same way, to the same receiver from a bare ``httpx.Client``
   loop (no database): the **floor** -> notifications/s, and the worker / floor ratio.

The worker sends ``LEVELUP_WEBHOOK_CONCURRENCY`` (16) POSTs at once (threads sharing one
``httpx.Client``) and the floor one at a time, so the ratio can exceed 1. The receiver, the worker
and the floor share the machine. It prints figures and never asserts.

    python bench/webhooks.py
    python bench/webhooks.py --events 20000 --notifications 5000 --repeat 5
    python bench/webhooks.py --postgres postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import tempfile
import time
import uuid
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection as Pipe
from pathlib import Path

import httpx
import orjson
from sqlalchemy import create_engine, delete, func, make_url, select, text, update

from levelup.events.ingest import batches, ingest
from levelup.programs import service as programs
from levelup.programs.validation import load_document
from levelup.runtime import Runtime
from levelup.storage import tables as t
from levelup.webhooks import delivery, service
from workload import generate

ROOT = Path(__file__).resolve().parents[1]
PROGRAM_KEY = "acme-sales"
SECRET = "bench-secret-0123456789"


class Answer200(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver would

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


class Receiver(ThreadingHTTPServer):
    request_queue_size = 128  # the default (5) refuses connections when 16 senders connect at once
    daemon_threads = True


def receive(pipe: Pipe) -> None:
    server = Receiver(("127.0.0.1", 0), Answer200)
    pipe.send(server.server_address[1])
    server.serve_forever()


def fresh(url: str, events: list[str]) -> Runtime:
    """A migrated database with the program and, if ``events``, one subscription to them."""
    runtime = Runtime.from_url(url)
    with runtime.db.write() as connection:
        record, _ = programs.apply(
            connection, load_document((ROOT / "examples" / "acme-sales.yaml").read_bytes()), actor="bench"
        )
        if events:
            service.subscribe(
                connection,
                record,
                url="http://127.0.0.1:9/",
                events=events,
                secret=SECRET,
                format="json",
                actor="bench",
            )
    return runtime


def ingest_rate(runtime: Runtime, n: int, batch: int) -> tuple[float, int]:
    started = time.perf_counter()
    for chunk in batches(generate(n, 200), batch):
        ingest(runtime, PROGRAM_KEY, chunk)
    elapsed = time.perf_counter() - started
    with runtime.db.read() as connection:
        rows = connection.execute(select(func.count()).select_from(t.webhook_outbox)).scalar_one()
    return n / elapsed, int(rows)


def keep_pending(runtime: Runtime, url: str, keep: int) -> list[bytes]:
    """Point the subscription at the receiver and make the first ``keep`` rows due again (the rest are
    set aside); returns their bodies as the worker sends them."""
    o = t.webhook_outbox.c
    with runtime.db.write() as connection:
        connection.execute(update(t.webhook_subscriptions).values(url=url))
        connection.execute(delete(t.webhook_attempts))
        first = select(o.id).order_by(o.id).limit(keep).scalar_subquery()
        connection.execute(update(t.webhook_outbox).where(o.id.not_in(first)).values(status="cancelled"))
        connection.execute(
            update(t.webhook_outbox)
            .where(o.id.in_(first))
            .values(status="pending", attempts=0, claim=None, next_at=dt.datetime.now(dt.UTC))
        )
        return [orjson.dumps(b) for b in connection.execute(select(o.body).where(o.id.in_(first))).scalars()]


def deliver_rate(runtime: Runtime, settings: delivery.Settings, count: int) -> float:
    with httpx.Client() as client:
        worker = delivery.Worker(runtime, settings, client)
        started = time.perf_counter()
        done = worker.run_until_idle()
        elapsed = time.perf_counter() - started
        worker.close()
    assert done.delivered == count, done
    return count / elapsed


def floor_rate(url: str, bodies: list[bytes]) -> float:
    started = time.perf_counter()
    with httpx.Client() as client:
        for body in bodies:
            signature = delivery.sign(SECRET, body, int(time.time()))
            headers = {"Content-Type": "application/json", delivery.SIGNATURE: signature}
            client.post(url, content=body, headers=headers).raise_for_status()
    return len(bodies) / (time.perf_counter() - started)


class Databases:
    """A fresh database per run: a SQLite file in a temporary folder, or a PostgreSQL database made on
    the server of ``postgres`` and dropped at the end."""

    def __init__(self, postgres: str | None) -> None:
        self.folder = tempfile.mkdtemp(prefix="levelup-bench-webhooks-")
        self.admin = (
            create_engine(make_url(postgres).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
            if postgres
            else None
        )
        self.made: list[str] = []

    @property
    def kind(self) -> str:
        return "sqlite" if self.admin is None else "postgresql"

    def fresh(self, run: str) -> str:
        if self.admin is None:
            return f"sqlite:///{self.folder}/{run}.db"
        name = f"bench_webhooks_{run}_{uuid.uuid4().hex[:8]}"
        with self.admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        self.made.append(name)
        return make_url(str(self.admin.url)).set(database=name).render_as_string(hide_password=False)

    def drop(self) -> None:
        if self.admin is not None:
            with self.admin.connect() as connection:
                for name in self.made:
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            self.admin.dispose()


RUNS: tuple[tuple[str, list[str]], ...] = (
    ("none", []),
    ("other", ["redemption.created"]),
    ("all", list(service.TYPES)),
)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--notifications", type=int, default=3_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measure, alternated; the best is kept")
    parser.add_argument("--postgres", help="a PostgreSQL server URL (fresh databases made there) instead of SQLite")
    args = parser.parse_args(argv)
    databases = Databases(args.postgres)
    pipe, child_end = multiprocessing.Pipe()
    receiver = multiprocessing.Process(target=receive, args=(child_end,), daemon=True)
    receiver.start()
    target = f"http://127.0.0.1:{pipe.recv()}/hook"
    try:
        print(f"ingestion: {args.events:,} events in batches of {args.batch} ({databases.kind}), best of {args.repeat}")
        rates: dict[str, float] = {}
        rows: dict[str, int] = {}
        for r in range(args.repeat):
            for run, events in RUNS[r % 3 :] + RUNS[: r % 3]:  # a different order each time: load drifts
                runtime = fresh(databases.fresh(f"{run}{r}"), events)
                rate, rows[run] = ingest_rate(runtime, args.events, args.batch)
                rates[run] = max(rates.get(run, 0.0), rate)
                if run == "all" and r == args.repeat - 1:
                    loaded = runtime  # its outbox is what the worker delivers below
                else:
                    runtime.db.dispose()
        for run, _ in RUNS:
            print(f"  subscription: {run:<6} {rates[run]:>9,.0f} events/s   outbox rows written: {rows[run]:,}")
        print(f"  every type / none: {rates['all'] / rates['none']:.2f}")
        print(f"  another type / none: {rates['other'] / rates['none']:.2f}")
        settings = delivery.Settings.from_env()
        worker = floor = 0.0
        for _ in range(args.repeat):
            bodies = keep_pending(loaded, target, args.notifications)
            worker = max(worker, deliver_rate(loaded, settings, len(bodies)))
            floor = max(floor, floor_rate(target, bodies))
        print(f"delivery of {len(bodies):,} notifications to a local receiver, best of {args.repeat}:")
        print(f"  worker (claim, sign, POST x{settings.concurrency}, record): {worker:,.0f}/s")
        print(f"  floor (the same signed POSTs, a bare httpx loop):        {floor:,.0f}/s")
        print(f"  worker / floor: {worker / floor:.2f}")
        loaded.db.dispose()
    finally:
        receiver.terminate()
        databases.drop()


if __name__ == "__main__":
    main()
