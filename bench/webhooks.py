"""Webhooks out: what the outbox costs ingestion, and how fast the worker delivers next to its floor.

On a temporary SQLite file (or ``--database``, an empty database written to as is) it:

1. ingests the same generated events (``bench/workload.py``) into three fresh programs, one
   ``ingest()`` call a batch: **no subscription**; a subscription to a type ingestion never makes
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
    python bench/webhooks.py --events 20000 --notifications 5000
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection as Pipe
from pathlib import Path

import httpx
import orjson
from sqlalchemy import func, select, update

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


def deliver_rate(runtime: Runtime, url: str, keep: int) -> tuple[float, list[bytes]]:
    """Point the subscription at the receiver, keep the first ``keep`` rows pending, deliver them."""
    o = t.webhook_outbox.c
    with runtime.db.write() as connection:
        connection.execute(update(t.webhook_subscriptions).values(url=url))
        first = select(o.id).order_by(o.id).limit(keep).scalar_subquery()
        connection.execute(update(t.webhook_outbox).where(o.id.not_in(first)).values(status="cancelled"))
        bodies = [
            orjson.dumps(b)
            for b in connection.execute(select(o.body).where(o.status == "pending").order_by(o.id)).scalars()
        ]

    with httpx.Client() as client:
        worker = delivery.Worker(runtime, delivery.Settings.from_env(), client)
        started = time.perf_counter()
        done = worker.run_until_idle()
        elapsed = time.perf_counter() - started
        worker.close()
    assert done.delivered == len(bodies), done
    return len(bodies) / elapsed, bodies


def floor_rate(url: str, bodies: list[bytes]) -> float:
    started = time.perf_counter()
    with httpx.Client() as client:
        for body in bodies:
            signature = delivery.sign(SECRET, body, int(time.time()))
            headers = {"Content-Type": "application/json", delivery.SIGNATURE: signature}
            client.post(url, content=body, headers=headers).raise_for_status()
    return len(bodies) / (time.perf_counter() - started)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--notifications", type=int, default=3_000)
    parser.add_argument("--database", help="a database URL per run, {run} replaced by the run's name")
    args = parser.parse_args(argv)
    folder = tempfile.mkdtemp(prefix="levelup-bench-webhooks-")

    def url(run: str) -> str:
        return args.database.format(run=run) if args.database else f"sqlite:///{folder}/{run}.db"

    pipe, child_end = multiprocessing.Pipe()
    receiver = multiprocessing.Process(target=receive, args=(child_end,), daemon=True)
    receiver.start()
    target = f"http://127.0.0.1:{pipe.recv()}/hook"
    try:
        print(f"ingestion: {args.events:,} events in batches of {args.batch} ({url('none').split(':')[0]})")
        rates = {}
        for run, events in (("none", []), ("other", ["redemption.created"]), ("all", list(service.TYPES))):
            runtime = fresh(url(run), events)
            rate, rows = ingest_rate(runtime, args.events, args.batch)
            rates[run] = rate
            print(f"  subscription: {run:<6} {rate:>9,.0f} events/s   outbox rows written: {rows:,}")
            if run != "all":
                runtime.db.dispose()
        print(f"  every type / none: {rates['all'] / rates['none']:.2f}")
        print(f"  another type / none: {rates['other'] / rates['none']:.2f}")
        worker, bodies = deliver_rate(runtime, target, args.notifications)
        floor = floor_rate(target, bodies)
        print(f"delivery of {len(bodies):,} notifications to a local receiver:")
        print(f"  worker (claim, sign, POST x{delivery.Settings.from_env().concurrency}, record): {worker:,.0f}/s")
        print(f"  floor (the same signed POSTs, a bare httpx loop):        {floor:,.0f}/s")
        print(f"  worker / floor: {worker / floor:.2f}")
        runtime.db.dispose()
    finally:
        receiver.terminate()


if __name__ == "__main__":
    main()
