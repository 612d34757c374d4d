"""Scale-out benchmark (issue 13): Redis against SQL for ranks, the live feed fanned out across processes,
and HTTP batch ingestion with several workers. Each figure is printed next to a floor measured in the
same run. It prints figures and never asserts.

1. **rank of one** at ``--participants`` (1,000,000) on PostgreSQL: the ``acme-sales`` program, the
   participants and their ``revenue-month`` rows loaded in bulk (``bench/leaderboard.py``'s loader) into
   the board, then copied to Redis (pipelined, timed). p99 of ``standing()`` (rank, value, total)
   of participants picked uniformly: from SQL (bucket counts, no Redis), from Redis (the service
   path: the participant's id from SQL, then ZSCORE, ZCARD and ZCOUNT), and the Redis part alone.
   Floors: a Redis ``PING`` round trip, and a SQL ``SELECT 1`` in a read transaction. Target: Redis
   p99 <= 0.5 ms.
2. **live-feed fan-out**: two ``levelup serve`` processes on one fresh PostgreSQL database and Redis;
   ``--clients`` (100) SSE streams open on the second, events posted to the first one at a time;
   latency from the POST's answer (committed) to each stream's receipt, p50/p99 over every
   (event, client). Floor: the round trip of the POST itself.
3. **HTTP batch events/s** with 1, 2 (``--workers``) ``levelup serve --workers N`` on PostgreSQL and
   Redis: ``--senders`` clients post batches of ``--batch`` events (distinct participants) for
   ``--seconds``. Floor: the same clients asking ``/healthz`` (routing, one ``SELECT 1``) as fast as
   they can, in requests/s, with the same workers.

    python bench/redis_ops.py                                 # all three (about 10 minutes)
    python bench/redis_ops.py --only rank --participants 100000
    python bench/redis_ops.py --only http --workers 1 2 4

Clients and servers share the machine (2 cores here): figures are a lower bound of a server alone.
"""

from __future__ import annotations

import argparse
import os
import queue
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis
from sqlalchemy import create_engine, make_url, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
import leaderboard as lb
from levelup.leaderboards import ranks, redis_board
from levelup.leaderboards import service as boards
from levelup.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]
LEVELUP = Path(sys.executable).with_name("levelup")
ADMIN_KEY = f"bench-{uuid.uuid4().hex}"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
P = "/api/v1/programs/acme-sales"
TARGET_MS = 0.5


def percentile(values: Sequence[float], q: float) -> float:
    return lb.percentile(values, q)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def timed(call: Callable[[], Any], samples: int, budget: float) -> list[float]:
    out: list[float] = []
    stop = time.perf_counter() + budget
    for _ in range(samples):
        started = time.perf_counter()
        call()
        out.append(time.perf_counter() - started)
        if time.perf_counter() > stop and len(out) >= 20:
            break
    return out


def line(name: str, values: Sequence[float]) -> None:
    print(
        f"  {name:<44} p50 {ms(percentile(values, 0.5)):>11}  p99 {ms(percentile(values, 0.99)):>11}  (n={len(values)})"
    )


# ---------------------------------------------------------------------------- 1. rank of one


def bench_rank(args: argparse.Namespace) -> None:
    print(f"rank of one at {args.participants:,} participants, PostgreSQL, Redis {args.redis}")
    target = lb.postgres_target(args.postgres)
    if isinstance(target, str):
        print(f"  PostgreSQL unreachable: {target}")
        return
    client = redis.Redis.from_url(args.redis)
    client.flushdb()
    runtime = Runtime.from_url(target.url)  # no LEVELUP_REDIS_URL here: the copy is attached below, timed
    try:
        values = lb.board_values(args.participants)
        # the boards first: an apply rebuilds metric totals from the event log, which has none here
        record = lb.apply(runtime, lb.ACME)
        started = time.perf_counter()
        subjects = load(runtime, record.id, values)
        with runtime.db.engine.connect() as connection:
            autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
            for table in ("participants", "metric_totals", "rank_rows", "rank_buckets"):
                autocommit.exec_driver_sql(f"VACUUM ANALYZE {table}")
        print(f"  loaded and filled in {time.perf_counter() - started:.1f} s (not a target)")
        with runtime.db.read() as connection:
            compiled = runtime.programs.compiled(connection, record)
        rng = random.Random(lb.SEED)
        on_board = [i for i, v in enumerate(values) if v]  # a zero total is not on the board
        picks = [rng.choice(on_board) for _ in range(args.samples)]
        external = [f"rep-{i:07d}" for i in picks]
        internal = [subjects[i] for i in picks]
        board = ranks.Board(record.id, "p", "revenue", lb.PERIOD)

        def standing_sql(i: int) -> Any:
            with runtime.db.read() as connection:
                return boards.standing(connection, record, compiled, lb.BOARD, external[i], period=lb.PERIOD)

        sql_answers = [standing_sql(i) for i in range(20)]
        sql_times = timed(lambda: standing_sql(rng.randrange(len(picks))), args.samples, args.max_seconds)

        copy = redis_board.Boards.connect(args.redis, runtime.db)
        started = time.perf_counter()
        copied = copy.rebuild(record.id)
        print(f"  copied to Redis in {time.perf_counter() - started:.1f} s ({copied:,} rows, pipelined; not a target)")
        redis_answers = [standing_sql(i) for i in range(20)]  # the same service call, now answered by Redis
        check = "ok" if redis_answers == sql_answers else f"MISMATCH {redis_answers[:2]} vs {sql_answers[:2]}"
        redis_times = timed(lambda: standing_sql(rng.randrange(len(picks))), args.samples, args.max_seconds)
        version = record.version
        redis_part = timed(
            lambda: copy.standing(board, version, internal[rng.randrange(len(picks))]), args.samples, args.max_seconds
        )
        ping = timed(client.ping, args.samples, args.max_seconds)

        def select_one() -> None:
            with runtime.db.read() as connection:
                connection.exec_driver_sql("SELECT 1")

        floor_sql = timed(select_one, args.samples, args.max_seconds)
        print(f"  answers from Redis equal those from SQL: {check}")
        line("standing() from SQL (bucket counts)", sql_times)
        line("  floor: SELECT 1 in a read transaction", floor_sql)
        line("standing() with Redis (id from SQL + Redis)", redis_times)
        line("rank from Redis alone (ZSCORE+ZCARD, ZCOUNT)", redis_part)
        line("  floor: Redis PING", ping)
        p99 = percentile(redis_part, 0.99) * 1000
        print(f"  target: rank from Redis p99 <= {TARGET_MS} ms: {'meets' if p99 <= TARGET_MS else 'MISSES'}")
        copy.close()
    finally:
        runtime.db.dispose()
        target.cleanup()
        client.flushdb()


def load(runtime: Runtime, program_id: int, values: Sequence[float]) -> list[int]:
    """``bench/leaderboard.py``'s bulk load in sessions of its own with the row triggers off (one per row,
    twice over, takes many minutes at 1,000,000), then the board rows filled set-based as an apply does
    (``ranks.rebuild``, whose inserts the bucket triggers count)."""
    url = make_url(runtime.db.url)
    options = f"{url.query.get('options', '')} -csession_replication_role=replica".strip()
    loader = Runtime.from_url(url.update_query_dict({"options": options}).render_as_string(hide_password=False))
    try:
        subjects = lb.load(loader, program_id, values)
    finally:
        loader.db.dispose()
    with runtime.db.write() as connection:
        ranks.rebuild(connection, program_id)
    return subjects


# ---------------------------------------------------------------------------- servers


@contextmanager
def fresh_database(url: str) -> Iterator[str]:
    """A fresh PostgreSQL database next to ``url``'s (several processes share it), dropped at the end."""
    name = f"bench_ops_{uuid.uuid4().hex[:10]}"
    admin = create_engine(make_url(url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def servers(database: str, redis_url: str, count: int, workers: int = 1) -> Iterator[list[str]]:
    env = {**os.environ, "LEVELUP_ADMIN_KEY": ADMIN_KEY, "LEVELUP_REDIS_URL": redis_url, "LEVELUP_DELIVER": "0"}
    started = []
    try:
        for _ in range(count):
            port = free_port()
            command = [str(LEVELUP), "serve", "--port", str(port), "--workers", str(workers), "--database", database]
            process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            started.append((f"http://127.0.0.1:{port}", process))
        deadline = time.monotonic() + 120
        for base, process in started:
            while True:
                with suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"levelup serve on {base} did not start")
                time.sleep(0.1)
        yield [base for base, _ in started]
    finally:
        for _, process in started:
            process.terminate()
        for _, process in started:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def apply_program(base: str) -> None:
    response = httpx.put(
        f"{base}{P}", content=lb.ACME, headers={**ADMIN, "Content-Type": "application/yaml"}, timeout=60
    )
    response.raise_for_status()


# ---------------------------------------------------------------------------- 2. fan-out


def bench_fanout(args: argparse.Namespace) -> None:
    print(f"live-feed fan-out: {args.clients} SSE clients on one server, events posted to another")
    redis.Redis.from_url(args.redis).flushdb()
    with fresh_database(args.postgres) as database:
        Runtime.from_url(database).db.dispose()  # migrated once, before the servers start
        with servers(database, args.redis, 2) as (poster, streamer):
            apply_program(poster)
            received: queue.Queue[tuple[int, str, float]] = queue.Queue()
            opened = threading.Barrier(args.clients + 1, timeout=60)
            stop = threading.Event()

            def listen(n: int) -> None:
                url = f"{streamer}{P}/stream"
                with (
                    suppress(httpx.HTTPError),
                    httpx.Client(timeout=None) as client,
                    client.stream("GET", url, headers=ADMIN) as response,
                ):
                    opened.wait()
                    for raw in response.iter_lines():
                        if stop.is_set():
                            return
                        if raw.startswith("data: "):
                            who = orjson.loads(raw[6:]).get("participant") or ""
                            if who.startswith("fan-"):
                                received.put((n, who, time.perf_counter()))

            threads = [threading.Thread(target=listen, args=(n,), daemon=True) for n in range(args.clients)]
            for thread in threads:
                thread.start()
            opened.wait()
            time.sleep(1)
            latencies: list[float] = []
            round_trips: list[float] = []
            with httpx.Client(headers=ADMIN) as client:
                for i in range(args.events):
                    who = f"fan-{i}"
                    body = {"id": f"fan-{i}", "type": "deal.won", "participant": who, "data": {"amount": 100}}
                    started = time.perf_counter()
                    client.post(f"{poster}{P}/events", json=body).raise_for_status()
                    answered = time.perf_counter()
                    round_trips.append(answered - started)
                    got: dict[int, float] = {}  # client -> when its first message of the event arrived
                    deadline = time.monotonic() + 10
                    while len(got) < args.clients and time.monotonic() < deadline:
                        with suppress(queue.Empty):
                            n, participant, at = received.get(timeout=1)
                            if participant == who:
                                got.setdefault(n, at)
                    latencies += [max(0.0, at - answered) for at in got.values()]
                    if len(got) < args.clients:
                        print(f"  event {i}: {len(got)} of {args.clients} clients within 10 s")
                    while not received.empty():  # other messages of the same event (awards, levels)
                        received.get_nowait()
            stop.set()
            line(f"commit -> each of {args.clients} streams (other process)", latencies)
            line("  floor: the POST's own round trip", round_trips)


# ---------------------------------------------------------------------------- 3. HTTP batch throughput


def bench_http(args: argparse.Namespace) -> None:
    print(f"HTTP batch ingestion, PostgreSQL + Redis, {args.senders} senders, batches of {args.batch}")
    for workers in args.workers:
        redis.Redis.from_url(args.redis).flushdb()
        with fresh_database(args.postgres) as database:
            Runtime.from_url(database).db.dispose()
            with servers(database, args.redis, 1, workers=workers) as [base]:
                apply_program(base)
                events = run_senders(base, args, batches=True)
                floor = run_senders(base, args, batches=False)
                print(f"  {workers} worker(s): {events:10,.0f} events/s   floor: /healthz {floor:8,.0f} requests/s")


def run_senders(base: str, args: argparse.Namespace, *, batches: bool) -> float:
    done = [0] * args.senders
    stop_at = time.monotonic() + args.seconds

    def send(n: int) -> None:
        with httpx.Client(headers=ADMIN, timeout=60) as client:
            k = 0
            while time.monotonic() < stop_at:
                if batches:
                    body = {
                        "events": [
                            {
                                "id": f"h-{n}-{k}-{j}",
                                "type": "deal.won",
                                "participant": f"rep-{n}-{j % 200}",
                                "data": {"amount": 1000 + j},
                            }
                            for j in range(args.batch)
                        ]
                    }
                    client.post(f"{base}{P}/events", json=body).raise_for_status()
                    done[n] += args.batch
                else:
                    client.get(f"{base}/healthz").raise_for_status()
                    done[n] += 1
                k += 1

    started = time.monotonic()
    threads = [threading.Thread(target=send, args=(n,)) for n in range(args.senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.monotonic() - started)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["rank", "fanout", "http"], action="append")
    parser.add_argument("--postgres", default=os.environ.get("LEVELUP_TEST_POSTGRES_URL", lb.DEFAULT_POSTGRES))
    parser.add_argument("--redis", default=os.environ.get("LEVELUP_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
    parser.add_argument("--participants", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--max-seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--events", type=int, default=30)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=15.0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    chosen = args.only or ["rank", "fanout", "http"]
    for name, run in (("rank", bench_rank), ("fanout", bench_fanout), ("http", bench_http)):
        if name in chosen:
            run(args)


if __name__ == "__main__":
    main()
