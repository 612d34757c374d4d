"""The delivery worker: claims due notifications, POSTs them signed, retries with backoff, logs attempts.

At least once, one worker at a time per notification. A claim is a conditional UPDATE that moves the
row's ``next_at`` a lease ahead under a fresh claim token (PostgreSQL picks the rows with ``FOR UPDATE
SKIP LOCKED``, so workers never wait on each other; SQLite has one writer at a time). A worker that dies
mid-delivery loses its rows when the lease ends and another sends them again, with the same ``id``;
an answer recorded after the lease was lost changes nothing (the update names the claim token). The
worker claims no more than it can send within the lease if every POST timed out
(:attr:`Settings.claim_size`), so a live worker records its answers before its claim could be lost.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import math
import os
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import Connection, bindparam, exists, select, update

from levelup import __version__
from levelup.observability.metrics import WEBHOOK_DELIVERIES
from levelup.programs.service import ProgramCache, ProgramRecord
from levelup.runtime import Runtime
from levelup.storage import tables as t
from levelup.storage.sql import bulk_insert
from levelup.webhooks.formats import Names, render

logger = logging.getLogger("levelup.webhooks")
SIGNATURE = "Levelup-Signature"
IDLE_SECONDS = 0.5  # how often an idle worker looks for due notifications (a read, no write lock)


def sign(secret: str, body: bytes, at: int) -> str:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``: what a receiver recomputes to trust a POST."""
    digest = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def _env(name: str, default: float) -> float:
    value = os.environ.get(name)
    return default if value is None or value == "" else float(value)


@dataclass(frozen=True)
class Settings:
    """How the worker sends; each field has its ``LEVELUP_WEBHOOK_<FIELD>`` environment variable."""

    attempts: int = 10  # the last one failing leaves the notification failed
    backoff: float = 30.0  # seconds before the first retry; doubled each time, with jitter
    max_backoff: float = 6 * 3600.0
    timeout: float = 10.0  # seconds for one POST
    lease: float = 60.0  # seconds a claim holds a batch: its POSTs must end within it (see claim_size)
    batch: int = 64  # notifications claimed at once
    concurrency: int = 16  # POSTs in flight at once

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.batch < 1 or self.concurrency < 1:
            raise ValueError("webhook attempts, batch and concurrency must be at least 1")
        if self.lease <= self.timeout:
            raise ValueError(
                f"the webhook lease ({self.lease:g} s) must be longer than the timeout ({self.timeout:g} s)"
            )

    @property
    def claim_size(self) -> int:
        """Notifications claimed at once: ``batch``, or fewer when their POSTs, sent to time-outs
        ``concurrency`` at a time, would not all end within the lease."""
        waves = math.ceil(self.lease / self.timeout) - 1
        return min(self.batch, self.concurrency * waves)

    @classmethod
    def from_env(cls) -> Settings:
        d = cls()
        return cls(
            attempts=int(_env("LEVELUP_WEBHOOK_ATTEMPTS", d.attempts)),
            backoff=_env("LEVELUP_WEBHOOK_BACKOFF", d.backoff),
            max_backoff=_env("LEVELUP_WEBHOOK_MAX_BACKOFF", d.max_backoff),
            timeout=_env("LEVELUP_WEBHOOK_TIMEOUT", d.timeout),
            lease=_env("LEVELUP_WEBHOOK_LEASE", d.lease),
            batch=int(_env("LEVELUP_WEBHOOK_BATCH", d.batch)),
            concurrency=int(_env("LEVELUP_WEBHOOK_CONCURRENCY", d.concurrency)),
        )

    def delay(self, attempts: int) -> float:
        """Seconds before the next try after ``attempts`` failed ones: exponential, capped, jittered
        (between half and all of it) so receivers coming back are not hit by every retry at once."""
        full = min(self.max_backoff, self.backoff * 2.0 ** (attempts - 1))
        return full * random.uniform(0.5, 1.0)


@dataclass(frozen=True)
class Claimed:
    """A notification this worker holds until its lease ends."""

    id: int
    program: str
    notification: str
    attempts: int
    url: str
    secret: str
    payload: bytes


@dataclass(frozen=True)
class Result:
    claimed: Claimed
    at: dt.datetime
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True)
class Round:
    """What one claim-send-record round did."""

    claimed: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0

    def __add__(self, other: Round) -> Round:
        return Round(
            self.claimed + other.claimed,
            self.delivered + other.delivered,
            self.retrying + other.retrying,
            self.failed + other.failed,
        )


def _due(connection: Connection, now: dt.datetime) -> bool:
    o = t.webhook_outbox.c
    return bool(connection.execute(select(exists().where(o.status == "pending", o.next_at <= now))).scalar())


def claim(
    connection: Connection, programs: ProgramCache, token: str, now: dt.datetime, settings: Settings
) -> list[Claimed]:
    """Take up to ``settings.claim_size`` due notifications for ``settings.lease`` seconds under ``token``."""
    o, s = t.webhook_outbox.c, t.webhook_subscriptions.c
    due = (
        select(o.id)
        .where(o.status == "pending", o.next_at <= now)
        .order_by(o.next_at)
        .limit(settings.claim_size)
        .with_for_update(skip_locked=True)  # PostgreSQL; SQLite's single writer needs no row lock
    )
    ids = connection.execute(
        update(t.webhook_outbox)
        .where(o.id.in_(due.scalar_subquery()), o.status == "pending", o.next_at <= now)
        .values(claim=token, next_at=now + dt.timedelta(seconds=settings.lease))
        .returning(o.id)
    ).scalars()
    rows = connection.execute(
        select(o.id, o.program_id, o.notification, o.attempts, o.body, s.url, s.secret, s.format)
        .join(t.webhook_subscriptions, s.id == o.subscription_id)
        .where(o.id.in_(list(ids)))
        .order_by(o.id)
    ).all()
    names = _names(connection, programs, [r for r in rows if r.format != "json"])
    return [
        Claimed(
            r.id,
            r.body["program"],
            r.notification,
            r.attempts,
            r.url,
            r.secret,
            render(r.format, r.body, names.get(r.program_id, Names())),
        )
        for r in rows
    ]


def _names(connection: Connection, programs: ProgramCache, rows: list[Any]) -> dict[int, Names]:
    """Display names for the chat formats, per program: its document in force and the people named."""
    out = {}
    for program_id in {r.program_id for r in rows}:
        program = connection.execute(
            select(t.programs.c.id, t.programs.c.key, t.programs.c.version).where(t.programs.c.id == program_id)
        ).one()
        document = programs.compiled(connection, ProgramRecord(*program)).doc
        people = {
            p
            for r in rows
            if r.program_id == program_id
            for p in (r.body["participant"], r.body["data"].get("from"))
            if isinstance(p, str)
        }
        p = t.participants.c
        found = connection.execute(
            select(p.external_id, p.name).where(
                p.program_id == program_id, p.external_id.in_(people), p.name.is_not(None)
            )
        )
        out[program_id] = Names(document, {external_id: name for external_id, name in found})
    return out


def record(connection: Connection, token: str, results: list[Result], settings: Settings) -> Round:
    """Log every attempt and move each notification on: delivered, due again after a backoff, or failed
    after the last attempt. A notification whose claim was lost meanwhile (see the module) stays as it is."""
    bulk_insert(
        connection,
        t.webhook_attempts,
        [
            {
                "outbox_id": r.claimed.id,
                "at": r.at,
                "status_code": r.status_code,
                "error": r.error,
                "duration_ms": r.duration_ms,
            }
            for r in results
        ],
    )
    o = t.webhook_outbox.c
    held = (o.id == bindparam("oid")) & (o.claim == token)
    moves: dict[str, list[dict[str, Any]]] = {"delivered": [], "pending": [], "failed": []}
    for r in results:
        attempts = r.claimed.attempts + 1
        status = "delivered" if r.ok else "failed" if attempts >= settings.attempts else "pending"
        WEBHOOK_DELIVERIES.labels(r.claimed.program, "retry" if status == "pending" else status).inc()
        due = r.at + dt.timedelta(seconds=settings.delay(attempts)) if status == "pending" else r.at
        moves[status].append(
            {"oid": r.claimed.id, "n": attempts, "due": due, "done": None if status == "pending" else r.at}
        )
    for status, params in moves.items():
        if params:
            connection.execute(
                update(t.webhook_outbox)
                .where(held)
                .values(
                    status=status,
                    attempts=bindparam("n"),
                    next_at=bindparam("due"),
                    done_at=bindparam("done"),
                    claim=None,
                ),
                params,
            )
    return Round(len(results), len(moves["delivered"]), len(moves["pending"]), len(moves["failed"]))


class Worker:
    """Delivers the outbox of one database; several may run at once, in one process or many.

    Blocking on purpose: httpx's sync client sends a POST for a fraction of the CPU its async client
    takes (whose pool slows down as connections are added), so ``concurrency`` threads share one
    ``httpx.Client`` and the server runs the worker in a thread of its own.
    """

    def __init__(self, runtime: Runtime, settings: Settings, client: httpx.Client) -> None:
        self.runtime = runtime
        self.settings = settings
        self.client = client
        self._pool = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="levelup-webhook")

    def close(self) -> None:
        self._pool.shutdown()

    def _send(self, claimed: Claimed) -> Result:
        headers = {
            "Content-Type": "application/json",
            SIGNATURE: sign(claimed.secret, claimed.payload, int(time.time())),
            "User-Agent": f"levelup/{__version__}",
        }
        started = time.perf_counter()
        status_code, error = None, None
        try:
            response = self.client.post(
                claimed.url, content=claimed.payload, headers=headers, timeout=self.settings.timeout
            )
            status_code = response.status_code
        except httpx.TimeoutException:
            error = "timeout"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        elapsed = round((time.perf_counter() - started) * 1000)
        return Result(claimed, dt.datetime.now(dt.UTC), status_code, error, elapsed)

    def run_once(self, now: dt.datetime | None = None) -> Round:
        """Claim what is due at ``now`` (default: the clock), send it, record the answers."""
        token = uuid.uuid4().hex
        now = now or dt.datetime.now(dt.UTC)
        with self.runtime.db.read() as connection:  # a read first: an idle poll takes no write lock
            if not _due(connection, now):
                return Round()
        with self.runtime.db.write() as connection:
            claimed = claim(connection, self.runtime.programs, token, now, self.settings)
        results = list(self._pool.map(self._send, claimed))
        if not results:
            return Round()
        with self.runtime.db.write() as connection:
            return record(connection, token, results, self.settings)

    def run_until_idle(self) -> Round:
        """Rounds until nothing is due: what ``levelup deliver`` does without ``--forever``."""
        total = Round()
        while (done := self.run_once()).claimed:
            total += done
        return total

    def run_forever(self, idle: float, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set, looking again after ``idle`` seconds when nothing is due; errors
        are logged (the database may be down for a while) and the loop goes on."""
        while not stop.is_set():
            try:
                done = self.run_once()
            except Exception:
                logger.exception("webhook delivery failed; trying again")
                done = Round()
            if not done.claimed:
                stop.wait(idle)
