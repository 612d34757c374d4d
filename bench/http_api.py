"""HTTP benchmark against a real ``levelup serve`` process on the loopback interface, next to its floor.

Starts ``levelup serve`` on 127.0.0.1 and a free port (a temporary SQLite file unless
``--database`` says otherwise) with ``LEVELUP_ADMIN_KEY`` set, and the floor server
(``bench/floor_server.py``: the same uvicorn settings, one endpoint that parses the JSON body
and does one durable SQLite insert per request). It waits for ``/healthz``, applies the
``acme-sales`` program (``examples/acme-sales.yaml``) and registers the participants (untimed),
then measures:

(a) batch throughput: N batches of ``{"events": [...]}`` (default 40 x 500) -> events/s,
    one keep-alive ``httpx.Client``;
(b) single events, one per POST, from 1 client and then from ``--clients`` (8) concurrent
    keep-alive connections: first to the floor, then to Levelup, the same events each ->
    events/s, p50/p90/p99/max in ms, and Levelup / floor.

Every phase is bounded in count and time (``--max-seconds`` each). The single-event clients
are a minimal HTTP/1.1 client on asyncio in this process (about 0.05 ms of CPU a request,
where httpx takes several times that), the same for both servers. The servers are always
stopped at the end, on error too. Figures are printed, never asserted.

    python bench/http_api.py
    python bench/http_api.py --workers 2 --batches 80 --singles 2000 --concurrent 8000
    python bench/http_api.py --database postgresql://postgres@127.0.0.1:5432/test --fresh-schema
    python bench/http_api.py --database postgresql://...   # without --fresh-schema: written to as is
    python bench/http_api.py --stored-key   # events sent with a stored ingest key (looked up each request)

The clients run on the same machine as the servers and take CPU from them: on a small
machine the figures are a lower bound of what a server alone can do.
"""

from __future__ import annotations

import argparse
import asyncio
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
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import create_engine, make_url, text

from server import Server
from workload import SEED, generate

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
PROGRAM_FILE = ROOT / "examples" / "acme-sales.yaml"
PROGRAM_KEY = "acme-sales"
EVENTS_PATH = f"/api/v1/programs/{PROGRAM_KEY}/events"
FLOOR_PATH = "/floor/events"
TEAMS = ("east", "west", "north", "south")

# issue 8's targets, on the 2-core machine the figures in bench/README.md come from
TARGET_BATCH_EPS = 8_000  # HTTP batches, SQLite
TARGET_RATIO = {"sqlite": 0.6, "postgresql": 0.5}  # single events, --clients (8) concurrent, 1 worker: Levelup/floor
TARGET_CONCURRENT_P99_MS = 25.0
TARGET_ONE_CLIENT_P50_MS = 2.5


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

    @property
    def events_s(self) -> float:
        return self.events / self.wall_s if self.wall_s else 0.0


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
    started = time.perf_counter()
    for _ in range(phase.planned):
        batch = [e for _, e in zip(range(size), events, strict=False)]
        if not batch:
            break
        sent = time.perf_counter()
        response = client.post(EVENTS_PATH, json={"events": batch})
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


# A minimal HTTP/1.1 client: one request at a time per keep-alive connection, bodies prepared
# before timing, so the client's CPU (it shares the cores with the server) stays small.


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, chunked, close = 0, False, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            close = b"close" in value.lower()
    if not chunked:
        payload = await reader.readexactly(length)
    else:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            parts.append(await reader.readexactly(size + 2))
            if size == 0:
                break
        payload = b"".join(p[:-2] for p in parts)
    if close:
        raise ConnectionError("the server closed the keep-alive connection")
    return status, payload


async def _client(
    port: int,
    head: bytes,
    bodies: Iterator[tuple[str, bytes]],
    phase: Phase,
    deadline: float,
    single_answer: bool,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        for event_id, body in bodies:  # shared by the clients: each takes the next event
            request = head + str(len(body)).encode() + b"\r\n\r\n" + body
            sent = time.perf_counter()
            status, payload = await _exchange(reader, writer, request)
            phase.latencies_ms.append((time.perf_counter() - sent) * 1000)
            phase.requests += 1
            if status != 200:
                phase.statuses[f"http {status}"] += 1
                phase.fail(f"{event_id}: {status} {payload[:300]!r}")
            else:
                outcome = orjson.loads(payload)["status"] if single_answer else "accepted"
                phase.statuses[outcome] += 1
                phase.events += outcome == "accepted"
            if sent > deadline:
                phase.stopped_early = True
                break
    finally:
        writer.close()


def post_singles(
    port: int,
    path: str,
    headers: dict[str, str],
    events: Sequence[dict[str, Any]],
    clients: int,
    phase: Phase,
    max_seconds: float,
) -> None:
    """POST ``events`` one per request from ``clients`` concurrent keep-alive connections."""
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "Content-Length: "
    prepared = [(e["id"], orjson.dumps(e)) for e in events]

    async def run() -> None:
        shared = iter(prepared)
        started = time.perf_counter()
        deadline = started + max_seconds
        await asyncio.gather(
            *(_client(port, head.encode(), shared, phase, deadline, path == EVENTS_PATH) for _ in range(clients))
        )
        phase.wall_s = time.perf_counter() - started

    asyncio.run(run())
    if phase.stopped_early:
        phase.stopped_early = phase.requests < phase.planned


# ---------------------------------------------------------------------------- report


def print_phase(phase: Phase) -> None:
    statuses = ", ".join(f"{n:,} {s}" for s, n in sorted(phase.statuses.items()))
    early = "  (stopped early: --max-seconds)" if phase.stopped_early else ""
    print(f"\n=== {phase.name} ===")
    print(f"  requests        {phase.requests:,} of {phase.planned:,}{early}")
    print(f"  events          {statuses or 'none'}")
    if phase.wall_s:
        requests_s = phase.requests / phase.wall_s
        print(
            f"  throughput      {phase.events_s:,.0f} events/s   {requests_s:,.1f} requests/s   ({phase.wall_s:.2f} s)"
        )
    if phase.latencies_ms:
        ms = phase.latencies_ms
        print(
            f"  latency ms      p50 {percentile(ms, 50):.2f}   p90 {percentile(ms, 90):.2f}   "
            f"p99 {percentile(ms, 99):.2f}   max {max(ms):.2f}   mean {sum(ms) / len(ms):.2f}"
        )
    for failure in phase.failures:
        print(f"  failure         {failure}")
    sys.stdout.flush()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", help="database URL for the server (default: a temporary SQLite file)")
    parser.add_argument(
        "--fresh-schema",
        action="store_true",
        help="with a PostgreSQL --database: run in a schema of its own, made and dropped here",
    )
    parser.add_argument("--workers", type=int, default=1, help="levelup serve --workers (default 1)")
    parser.add_argument("--batches", type=int, default=40, help="batches to POST (default 40; 0: none)")
    parser.add_argument("--batch-size", type=int, default=500, help="events a batch (default 500, at most 1,000)")
    parser.add_argument("--singles", type=int, default=1_000, help="single-event POSTs from 1 client (default 1,000)")
    parser.add_argument(
        "--concurrent", type=int, default=4_000, help="single-event POSTs from --clients clients (default 4,000)"
    )
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument(
        "--stored-key", action="store_true", help="send events with a stored ingest key, not the bootstrap admin key"
    )
    parser.add_argument("--participants", type=int, default=1_000, help="participants (default 1,000)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed single POSTs to each server (default 50)")
    parser.add_argument("--max-seconds", type=float, default=45.0, help="time bound of each phase (default 45)")
    parser.add_argument("--startup-timeout", type=float, default=30.0, help="seconds to wait for /healthz")
    args = parser.parse_args(argv)
    if args.fresh_schema and not (args.database or "").startswith(("postgresql", "postgres")):
        parser.error("--fresh-schema needs a PostgreSQL --database")
    if not 1 <= args.batch_size <= 1000:
        parser.error("--batch-size must be 1..1000")
    if min(args.workers, args.participants, args.clients) < 1:
        parser.error("--workers, --participants and --clients must be positive")
    if min(args.batches, args.singles, args.concurrent, args.warmup) < 0:
        parser.error("counts must not be negative")
    return args


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwind, so the servers are stopped on the way out


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


@dataclass
class Singles:
    floor: dict[int, Phase] = field(default_factory=dict)  # by number of clients
    levelup: dict[int, Phase] = field(default_factory=dict)


def run(args: argparse.Namespace, database: str, directory: Path) -> None:
    tag = f"{int(time.time()):x}-"  # event ids unique per run, so a reused database sees no duplicates
    shown = make_url(database).render_as_string(hide_password=True)
    print(
        f"Levelup HTTP benchmark: levelup serve --workers {args.workers} on {shown}, "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs (clients on the same machine), {load()}",
        flush=True,
    )
    admin_key = secrets.token_urlsafe(24)
    batches = Phase(f"(a) batches of {args.batch_size}", args.batches)
    singles = Singles()
    with ExitStack() as stack:
        floor_db = directory / "floor.db"
        floor_command = [sys.executable, str(BENCH / "floor_server.py"), "--database", str(floor_db)]
        floor = Server(database, 1, admin_key, directory / "floor.log", command=floor_command)
        stack.callback(floor.stop)
        server = Server(database, args.workers, admin_key, directory / "server.log")
        stack.callback(server.stop)
        try:
            print(f"  server ready in {server.wait_ready(args.startup_timeout):.1f} s at {server.base_url}", flush=True)
            floor.wait_ready(args.startup_timeout)
            print(f"  {floor.log_tail(1).strip()} at {floor.base_url}", flush=True)
            headers = {"Authorization": f"Bearer {admin_key}"}
            # no Nagle on the client side: a request's header and body writes go out at once
            transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
            with httpx.Client(base_url=server.base_url, headers=headers, timeout=60.0, transport=transport) as client:
                started = time.perf_counter()
                registered = prepare(client, args.participants, args.max_seconds)
                took = time.perf_counter() - started
                bounded = " (--max-seconds: the others are created by their events)"
                print(
                    f"  program applied, {registered:,} participants registered in {took:.1f} s"
                    f"{bounded if registered < args.participants else ''}"
                )
                if args.stored_key:  # what a CRM sends: a stored key, looked up (and its use noted) per request
                    made = client.post("/api/v1/keys", json={"role": "ingest", "programs": [PROGRAM_KEY]})
                    made.raise_for_status()
                    headers = {"Authorization": f"Bearer {made.json()['key']}"}
                    client.headers.update(headers)
                stream = generate(args.batches * args.batch_size, args.participants, prefix=f"b{tag}", seed=SEED)
                if args.batches:
                    post_batches(client, stream, batches, args.batch_size, args.max_seconds)
                    print_phase(batches)
            for prefix, port, path in (("f", floor.port, FLOOR_PATH), ("l", server.port, EVENTS_PATH)):
                warm = generate(args.warmup, args.participants, prefix=f"w{prefix}{tag}", seed=SEED + 2)
                post_singles(port, path, headers, list(warm), 1, Phase("warm-up", args.warmup), 30.0)
            for clients, count in ((1, args.singles), (args.clients, args.concurrent)):
                if not count:
                    continue
                # the same events to both servers (ids differ per run, not per server: they are separate)
                events = list(generate(count, args.participants, prefix=f"s{clients}-{tag}", seed=SEED + 3 + clients))
                for name, target, port, path in (
                    ("floor (parse + one durable SQLite insert)", singles.floor, floor.port, FLOOR_PATH),
                    ("Levelup", singles.levelup, server.port, EVENTS_PATH),
                ):
                    phase = Phase(f"(b) single-event POSTs, {clients} client(s): {name}", count)
                    post_singles(port, path, headers, events, clients, phase, args.max_seconds)
                    target[clients] = phase
                    print_phase(phase)
        except BaseException:
            print(f"\nserver log (tail):\n{server.log_tail()}", file=sys.stderr)
            print(f"\nfloor log (tail):\n{floor.log_tail()}", file=sys.stderr)
            raise
    print_summary(batches, singles, database, args)


def print_summary(batches: Phase, singles: Singles, database: str, args: argparse.Namespace) -> None:
    backend = "sqlite" if database.startswith("sqlite") else "postgresql"

    def verdict(ok: bool) -> str:
        return "meets" if ok else "MISSES"

    print("\n=== summary ===")
    if batches.wall_s:
        eps = batches.events_s
        note = "" if backend == "sqlite" else " (the target is for SQLite)"
        met = verdict(eps >= TARGET_BATCH_EPS)
        print(f"  batch throughput   {eps:,.0f} events/s   target >= {TARGET_BATCH_EPS:,}: {met}{note}")
    print(f"  single events      {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8}   (Levelup: --workers {args.workers})")
    for clients in sorted(set(singles.floor) | set(singles.levelup)):
        for name, phase in (("floor", singles.floor.get(clients)), ("Levelup", singles.levelup.get(clients))):
            if phase is None or not phase.latencies_ms:
                continue
            ms = phase.latencies_ms
            print(
                f"    {clients} client(s), {name:<8} {phase.events_s:>9,.0f} {percentile(ms, 50):>8.2f} "
                f"{percentile(ms, 99):>8.2f}"
            )
    concurrent_floor, concurrent = singles.floor.get(args.clients), singles.levelup.get(args.clients)
    if concurrent and concurrent_floor and concurrent_floor.events_s and args.clients > 1:
        ratio = concurrent.events_s / concurrent_floor.events_s
        wanted = TARGET_RATIO[backend]
        print(
            f"  {args.clients} clients: Levelup / floor {ratio:.2f}   target >= {wanted} on {backend}: "
            f"{verdict(ratio >= wanted)}" + ("" if args.workers == 1 else " (the target is for 1 worker)")
        )
        p99 = percentile(concurrent.latencies_ms, 99)
        print(
            f"  {args.clients} clients: Levelup p99 {p99:.2f} ms   target <= {TARGET_CONCURRENT_P99_MS:.0f} ms: "
            f"{verdict(p99 <= TARGET_CONCURRENT_P99_MS)}"
        )
    one = singles.levelup.get(1)
    if one and one.latencies_ms:
        p50 = percentile(one.latencies_ms, 50)
        print(
            f"  1 client:  Levelup p50 {p50:.2f} ms   target <= {TARGET_ONE_CLIENT_P50_MS} ms: "
            f"{verdict(p50 <= TARGET_ONE_CLIENT_P50_MS)}"
        )
    print(f"  {load()} at the end (other processes on the machine lower every figure)")


if __name__ == "__main__":
    main()
