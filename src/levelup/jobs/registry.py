"""Every time-driven job in one registry, run the same way by the server's loop and the CLI.

A job is a function ``(runtime, *, now, program_keys) -> result``: idempotent, safe on several
workers at once, and bounded to the programs it is given. :func:`run` hands it one program at a
time, so a program whose data makes a job fail is logged and reported, and the other programs
(and the other jobs) still run. When every worker runs the jobs, :class:`Turns` has one of them
do each (job, program) a tick and the others skip it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import Connection, text

from levelup.challenges.closing import Closed, close_periods
from levelup.errors import NotFound
from levelup.insights import segments
from levelup.leaderboards import history, windows
from levelup.ledger import expiry
from levelup.observability.metrics import JOB_RUNS
from levelup.programs import service as programs
from levelup.referrals.service import pay_due
from levelup.runtime import Runtime
from levelup.tiers.service import review_all

logger = logging.getLogger("levelup.jobs")

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class JobFunction(Protocol[R_co]):
    def __call__(
        self, runtime: Runtime, *, now: dt.datetime | None = None, program_keys: Iterable[str] | None = None
    ) -> R_co: ...


@dataclass(frozen=True)
class Job(Generic[R]):
    """A job: its CLI name, what it does (for logs), the function, and how to tell what one run did."""

    name: str
    doing: str
    unit: str  # what ``count`` counts, e.g. "tier changes"
    function: JobFunction[R]
    count: Callable[[R], int]
    lines: Callable[[R], list[str]]  # one line per thing done, for the CLI


@dataclass(frozen=True)
class Ran:
    """One job over one program: how much it did and in words, or why it failed (``error``)."""

    job: str
    program: str
    count: int = 0
    lines: tuple[str, ...] = ()
    error: str | None = None
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


class _History:
    """The last run of each job for each program in this process, and how many runs failed: what
    ``GET …/programs/{program}/jobs`` shows the admin."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], Ran] = {}
        self._failures: Counter[tuple[str, str]] = Counter()

    def record(self, ran: Ran) -> None:
        with self._lock:
            self._last[(ran.job, ran.program)] = ran
            if ran.error is not None:
                self._failures[(ran.job, ran.program)] += 1

    def of(self, program: str) -> list[tuple[Ran | None, int]]:
        """Per job in registry order: its last run for ``program`` (None if none yet) and its failed runs."""
        with self._lock:
            return [(self._last.get((j.name, program)), self._failures[(j.name, program)]) for j in JOBS]


HISTORY = _History()


def _closed_lines(closed: list[Closed]) -> list[str]:
    return [f"{c.program} {c.challenge} {c.period}: closed, {c.paid} ledger entries paid" for c in closed]


def _expired_count(expired: list[expiry.Expired]) -> int:
    return sum(e.matured + e.lots for e in expired)


def _expired_lines(expired: list[expiry.Expired]) -> list[str]:
    return [
        f"{e.program}: {e.matured} lots now spendable, {e.lots} lots expired "
        f"({', '.join(f'{n} {c}' for c, n in e.amount.items()) or 'nothing'})"
        for e in expired
    ]


def _same(n: int) -> int:
    return n


def _no_lines(_: int) -> list[str]:
    return []


# In the order they run: settle closed periods, make pending points spendable and expire old ones,
# re-rate tiers as activity leaves their window, pay referrals whose hold has passed, and once a day assign
# RFM segments where a document's conditions read them; slide the rolling and windowed currency boards'
# kept rows to today and tomorrow; last, keep today's top of each board (the TV's change since yesterday and
# movement chart).
JOBS: tuple[Job[Any], ...] = (
    Job("close-periods", "closing periods", "periods closed", close_periods, len, _closed_lines),
    Job("expire", "expiring lots", "lots matured or expired", expiry.run, _expired_count, _expired_lines),
    Job("tiers", "reviewing tiers", "tier changes", review_all, _same, _no_lines),
    Job("referrals", "paying referrals", "referrals paid", pay_due, _same, _no_lines),
    Job("segments", "assigning RFM segments", "segment changes", segments.refresh, _same, _no_lines),
    Job("board-windows", "sliding the windowed boards' kept rows", "periods filled", windows.slide, _same, _no_lines),
    Job("board-history", "keeping today's top of each board", "board rows kept", history.record, _same, _no_lines),
)
BY_NAME = {job.name: job for job in JOBS}


def run(
    runtime: Runtime,
    names: Sequence[str] | None = None,
    *,
    now: dt.datetime | None = None,
    program_keys: Iterable[str] | None = None,
    turns: Turns | None = None,
) -> list[Ran]:
    """Run the jobs ``names`` (default: all, in registry order) for every program (or ``program_keys``),
    one program at a time; a (job, program) whose turn another worker has (see :class:`Turns`; by default
    turns for this run alone) is skipped, and left out of the result. An unknown job or program is refused
    (:class:`NotFound`) before anything runs."""
    unknown = [n for n in names or () if n not in BY_NAME]
    if unknown:
        raise NotFound(f"no job {unknown[0]!r} (jobs: {', '.join(BY_NAME)})")
    jobs = [BY_NAME[n] for n in names] if names else list(JOBS)
    now = now or dt.datetime.now(dt.UTC)
    with runtime.db.read() as connection:
        keys = [p.key for p in programs.selected(connection, program_keys)]
    mine = turns or Turns(runtime)
    done: list[Ran] = []
    try:
        for job in jobs:
            for key in keys:
                if mine.take(job.name, key):
                    done.append(_run_one(runtime, job, key, now))
                else:
                    JOB_RUNS.labels(job.name, "skipped").inc()
    finally:
        if turns is None:
            mine.close()
    return done


# Session advisory locks: the first key names the lock space (per schema, as tests share a server), the
# second the (job, program, tick). Two int4 keys never meet the one-bigint keys of the scoring lock.
_TRY_LOCK = text("SELECT pg_try_advisory_lock(hashtext('levelup.job:' || current_schema()), hashtext(:turn))")


class Turns:
    """Which (job, program) this worker does in one tick, when several workers run the same jobs.

    On PostgreSQL a worker takes a session advisory lock per (job, program, tick), tried and never
    waited for: whoever holds it does the job, the others skip it. The locks stay held until
    :meth:`close`, which the server's loop calls only when the next tick starts: a worker still
    busy with its tick finds the pairs another already did held, not free to do twice. The
    CLI's one-off run uses no tick and closes its turns when the run ends. On SQLite (one process)
    every turn is ours.
    """

    def __init__(self, runtime: Runtime, tick: str = "") -> None:
        self.runtime = runtime
        self.tick = tick
        self._connection: Connection | None = None  # holds the locks; taken on first use

    def take(self, job: str, key: str) -> bool:
        if self.runtime.db.is_sqlite:
            return True
        if self._connection is None:
            self._connection = self.runtime.db.engine.connect()
        held = bool(self._connection.execute(_TRY_LOCK, {"turn": f"{job}:{key}:{self.tick}"}).scalar())
        self._connection.commit()  # a session lock outlives the transaction; the connection stays ours
        return held

    def close(self) -> None:
        """Let the turns go (before the connection goes back to the pool, which would keep them)."""
        if self._connection is not None:
            try:
                self._connection.execute(text("SELECT pg_advisory_unlock_all()"))
                self._connection.commit()
            finally:
                self._connection.close()
                self._connection = None


def _run_one(runtime: Runtime, job: Job[R], key: str, now: dt.datetime) -> Ran:
    try:
        result = job.function(runtime, now=now, program_keys=[key])
    except Exception as exc:  # one program's failure must not stop the others; retried on the next run
        logger.exception("%s failed for program %s", job.doing, key)
        ran = Ran(job.name, key, error=f"{type(exc).__name__}: {exc}")
    else:
        ran = Ran(job.name, key, job.count(result), tuple(job.lines(result)))
    JOB_RUNS.labels(job.name, "failed" if ran.error else "done").inc()
    HISTORY.record(ran)
    return ran
