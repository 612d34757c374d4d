"""HTTP benchmark against a real ``levelup serve`` process on the loopback interface.

Starts ``levelup serve`` on 127.0.0.1 and a free port (a temporary SQLite file
unless ``--database`` says otherwise) with ``LEVELUP_ADMIN_KEY`` set, waits for
``/healthz``, applies the SPEC ``acme-sales`` program and registers the
participants (untimed), then measures with one keep-alive ``httpx.Client``:

(a) batch throughput: N batches of ``{"events": [...]}`` (default 40 x 500) -> events/s;
(b) single-event latency: one event per POST (default 2,000) -> p50/p90/p99/max in ms.

The participant registration and both phases are bounded in count and time
(``--max-seconds`` each). The server is always stopped at the end, on error
too. Figures are printed, never asserted.

    python bench/http.py
    python bench/http.py --workers 2 --batches 80 --singles 5000
    python bench/http.py --database postgresql://postgres@127.0.0.1:5432/test --fresh-schema
    python bench/http.py --database postgresql://...   # without --fresh-schema: written to as is

The client runs on the same machine as the server and takes CPU from it: on a
small machine the figures are a lower bound of what the server alone can do.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, make_url, text

from server import Server
from workload import SEED, generate

ROOT = Path(__file__).resolve().parents[1]
PROGRAM_FILE = ROOT / "examples" / "acme-sales.yaml"
PROGRAM_KEY = "acme-sales"
TEAMS = ("east", "west", "north", "south")

TARGET_BATCH_EPS = 3_000
TARGET_SINGLE_P99_MS = 20.0


# ---------------------------------------------------------------------------- data


# ---------------------------------------------------------------------------- figures


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min) {five:.2f} (5 min)"


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class Phase:
    name: str
    planned: int
    requests: int = 0
    events: int = 0
    wall_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    stopped_early: bool = False

    def fail(self, message: str) -> None:
        if len(self.failures) < 5:
            self.failures.append(message)


# ---------------------------------------------------------------------------- phases


def prepare(client: httpx.Client, n_participants: int, max_seconds: float) -> int:
    """Apply the program and register the participants in teams, with a quota (untimed).

    Bounded by ``max_seconds``: participants not registered by then are created
    on first sight by their events (in no team). Returns how many were registered.
    """
    response = client.put(
        f"/api/v1/programs/{PROGRAM_KEY}",
        content=PROGRAM_FILE.read_bytes(),
        headers={"Content-Type": "application/yaml"},
    )
    if response.status_code not in (200, 201):
        raise RuntimeError(f"applying the program: {response.status_code} {response.text[:500]}")
    rng = random.Random(SEED + 1)
    started = time.perf_counter()
    for i in range(n_participants):
        if time.perf_counter() - started > max_seconds:
            return i
        team = TEAMS[i % len(TEAMS)]
        body = {
            "name": f"Rep {i}",
            "teams": [team],
            "attributes": {"quota": rng.choice([25_000, 50_000, 100_000]), "region": team},
        }
        response = client.put(f"/api/v1/programs/{PROGRAM_KEY}/participants/rep-{i:05d}", json=body)
        if response.status_code not in (200, 201):
            raise RuntimeError(f"registering rep-{i:05d}: {response.status_code} {response.text[:500]}")
    return n_participants


@contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """A PostgreSQL schema of its own for the run, dropped at the end: the URL that uses it."""
    schema = f"bench_http_{uuid.uuid4().hex[:10]}"
    admin = create_engine(make_url(url).set(drivername="postgresql+psycopg"), connect_args={"connect_timeout": 5})
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            parsed = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
            yield parsed.render_as_string(hide_password=False)
        finally:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        admin.dispose()


def post_batches(
    client: httpx.Client, events: Iterator[dict[str, Any]], phase: Phase, size: int, max_seconds: float
) -> None:
    path = f"/api/v1/programs/{PROGRAM_KEY}/events"
    started = time.perf_counter()
    for _ in range(phase.planned):
        batch = [e for _, e in zip(range(size), events, strict=False)]
        if not batch:
            break
        sent = time.perf_counter()
        response = client.post(path, json={"events": batch})
        phase.latencies_ms.append((time.perf_counter() - sent) * 1000)
        phase.requests += 1
        if response.status_code != 200:
            phase.statuses[f"http {response.status_code}"] += len(batch)
            phase.fail(f"{response.status_code}: {response.text[:300]}")
        else:
            for result in response.json()["results"]:
                phase.statuses[result["status"]] += 1
                if result["status"] == "rejected":
                    phase.fail(f"{result['id']}: {result.get('errors')}")
            phase.events += len(batch)
        if time.perf_counter() - started > max_seconds:
            phase.stopped_early = phase.requests < phase.planned
            break
    phase.wall_s = time.perf_counter() - started


def post_singles(client: httpx.Client, events: Iterator[dict[str, Any]], phase: Phase, max_seconds: float) -> None:
    path = f"/api/v1/programs/{PROGRAM_KEY}/events"
    started = time.perf_counter()
    for _, event in zip(range(phase.planned), events, strict=False):
        sent = time.perf_counter()
        response = client.post(path, json=event)
        phase.latencies_ms.append((time.perf_counter() - sent) * 1000)
        phase.requests += 1
        if response.status_code != 200:
            phase.statuses[f"http {response.status_code}"] += 1
            phase.fail(f"{event['id']}: {response.status_code} {response.text[:300]}")
        else:
            phase.statuses[response.json()["status"]] += 1
            phase.events += 1
        if time.perf_counter() - started > max_seconds:
            phase.stopped_early = phase.requests < phase.planned
            break
    phase.wall_s = time.perf_counter() - started


# ---------------------------------------------------------------------------- report


def print_phase(phase: Phase) -> None:
    statuses = ", ".join(f"{n:,} {s}" for s, n in sorted(phase.statuses.items()))
    early = "  (stopped early: --max-seconds)" if phase.stopped_early else ""
    print(f"\n=== {phase.name} ===")
    print(f"  requests        {phase.requests:,} of {phase.planned:,}{early}")
    print(f"  events          {statuses or 'none'}")
    if phase.wall_s:
        events_s, requests_s = phase.events / phase.wall_s, phase.requests / phase.wall_s
        print(f"  throughput      {events_s:,.0f} events/s   {requests_s:,.1f} requests/s   ({phase.wall_s:.2f} s)")
    if phase.latencies_ms:
        ms = phase.latencies_ms
        print(
            f"  latency ms      p50 {percentile(ms, 50):.2f}   p90 {percentile(ms, 90):.2f}   "
            f"p99 {percentile(ms, 99):.2f}   max {max(ms):.2f}   mean {sum(ms) / len(ms):.2f}"
        )
    for failure in phase.failures:
        print(f"  failure         {failure}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", help="database URL for the server (default: a temporary SQLite file)")
    parser.add_argument(
        "--fresh-schema",
        action="store_true",
        help="with a PostgreSQL --database: run in a schema of its own, made and dropped here",
    )
    parser.add_argument("--workers", type=int, default=1, help="levelup serve --workers (default 1)")
    parser.add_argument("--batches", type=int, default=40, help="batches to POST (default 40)")
    parser.add_argument("--batch-size", type=int, default=500, help="events a batch (default 500, at most 1,000)")
    parser.add_argument("--singles", type=int, default=2_000, help="single-event POSTs (default 2,000)")
    parser.add_argument("--participants", type=int, default=1_000, help="participants (default 1,000)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed single POSTs before measuring (default 50)")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time bound of each phase (default 60)")
    parser.add_argument("--startup-timeout", type=float, default=30.0, help="seconds to wait for /healthz")
    args = parser.parse_args(argv)
    if args.fresh_schema and not (args.database or "").startswith(("postgresql", "postgres")):
        parser.error("--fresh-schema needs a PostgreSQL --database")
    if not 1 <= args.batch_size <= 1000:
        parser.error("--batch-size must be 1..1000")
    if min(args.workers, args.participants) < 1 or min(args.batches, args.singles, args.warmup) < 0:
        parser.error("counts must be positive")
    return args


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwind, so the server is stopped on the way out


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started in the background: still stop cleanly
        signal.signal(signal.SIGINT, _terminate)
    with tempfile.TemporaryDirectory(prefix="levelup-http-bench-") as directory:
        database = args.database or f"sqlite:///{Path(directory) / 'levelup.db'}"
        if args.fresh_schema:
            with fresh_schema(database) as url:
                run(args, url, Path(directory))
        else:
            run(args, database, Path(directory))


def run(args: argparse.Namespace, database: str, directory: Path) -> None:
    tag = f"{int(time.time()):x}-"  # event ids unique per run, so a reused database sees no duplicates
    shown = make_url(database).render_as_string(hide_password=True)
    print(
        f"Levelup HTTP benchmark: levelup serve --workers {args.workers} on {shown}, "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs (client on the same machine), {load()}",
        flush=True,
    )
    admin_key = secrets.token_urlsafe(24)
    server = Server(database, args.workers, admin_key, directory / "server.log")
    try:
        print(f"  server ready in {server.wait_ready(args.startup_timeout):.1f} s at {server.base_url}", flush=True)
        headers = {"Authorization": f"Bearer {admin_key}"}
        # no Nagle on the client side: a request's header and body writes go out at once
        transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=60.0, transport=transport) as client:
            started = time.perf_counter()
            registered = prepare(client, args.participants, args.max_seconds)
            took = time.perf_counter() - started
            bounded = (
                " (--max-seconds: the others are created by their events)" if registered < args.participants else ""
            )
            print(f"  program applied, {registered:,} participants registered in {took:.1f} s{bounded}")
            warmup = Phase("warm-up", args.warmup)
            post_singles(
                client, generate(args.warmup, args.participants, prefix=f"w{tag}", seed=SEED + 2), warmup, 30.0
            )
            batches = Phase(f"(a) batches of {args.batch_size}", args.batches)
            stream = generate(args.batches * args.batch_size, args.participants, prefix=f"b{tag}", seed=SEED)
            post_batches(client, stream, batches, args.batch_size, args.max_seconds)
            print_phase(batches)
            singles = Phase("(b) single-event POSTs", args.singles)
            stream = generate(args.singles, args.participants, prefix=f"s{tag}", seed=SEED + 3)
            post_singles(client, stream, singles, args.max_seconds)
            print_phase(singles)
    except BaseException:
        print(f"\nserver log (tail):\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        server.stop()
    print_summary(batches, singles, database)


def print_summary(batches: Phase, singles: Phase, database: str) -> None:
    print("\n=== summary ===")
    if batches.wall_s:
        eps = batches.events / batches.wall_s
        verdict = "meets" if eps >= TARGET_BATCH_EPS else "MISSES"
        print(f"  batch throughput {eps:,.0f} events/s   target >= {TARGET_BATCH_EPS:,}: {verdict}")
    if singles.latencies_ms:
        p99 = percentile(singles.latencies_ms, 99)
        verdict = "meets" if p99 <= TARGET_SINGLE_P99_MS else "MISSES"
        sqlite_note = "" if database.startswith("sqlite") else " (the target is for SQLite)"
        print(f"  single POST p99  {p99:.2f} ms   target <= {TARGET_SINGLE_P99_MS:.0f} ms: {verdict}{sqlite_note}")
    print(f"  {load()} at the end (other processes on the machine lower every figure)")


if __name__ == "__main__":
    main()
