"""Plain leaderboards served from Redis sorted sets (``LEVELUP_REDIS_URL``), rebuilt from the database.

PostgreSQL stays the truth: ``rank_rows`` (kept by triggers, :mod:`levelup.leaderboards.ranks`) holds
every plain board's rows, and Redis a copy of them, one sorted set per board and period:

    levelup:{<program id>}:board:<source>:<key>:<period>   member: the subject, score: its value

The ``{<program id>}`` hash tag keeps a program's keys in one Redis Cluster slot. A member is the
subject's internal id written as ``MAX_ID - id`` in 19 digits, so Redis's order inside a tie
(members descending) is the database's (ids ascending), and ranks, pages and neighbourhoods are the
same from either. ``levelup:{<program id>}:ready`` holds :data:`FORMAT` and the program version the
copy was built for: without it (a flush, a new version applied) the copy is not read, the database
answers, and the copy is rebuilt in the background.

Writes follow the database: the writers of board sources (metric totals, positions) name the rows
they wrote (:func:`touched`) and, as the transaction commits, those rows are read back from
``rank_rows`` and set in Redis (:meth:`Boards.flush`). That happens before the commit, while the
participants are still locked, so two transactions on one participant update Redis in their commit
order. A Redis failure never fails a request: a write marks the program stale in this process (read
from the database and rebuilt once Redis answers), a read falls back to SQL; both log and count
``levelup_redis_fallbacks_total``, and Redis is left alone for :data:`RETRY_SECONDS` (an unreachable
host costs its time-out once, not on every request).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import redis
from sqlalchemy import Connection, Engine, event, select

from levelup.leaderboards import ranks
from levelup.observability.metrics import REDIS_FALLBACKS
from levelup.storage import tables as t
from levelup.storage.db import Database
from levelup.storage.sql import fetch_by_keys

logger = logging.getLogger("levelup.redis")

FORMAT = "1"  # the layout of the keys and members; a change makes every copy stale
MAX_ID = 10**18
CHUNK = 10_000  # members sent a pipeline while rebuilding
TOUCHED = "levelup.redis.touched"  # connection.info: (program id, source, key, period, subject id) written
MANY = 10_000  # rows touched in one transaction beyond which the program is rebuilt instead (an apply)
TIMEOUT_SECONDS = 0.5  # a Redis that does not answer by then is treated as down
RETRY_SECONDS = 5  # after a failure, the database answers alone this long
BUILD_SECONDS = 600  # a rebuild's claim expires (its process died) after this long

Row = tuple[int, str, str, str, int]  # program id, source, key, period, subject id


def grain_of(period: str) -> str:
    """The calendar grain of a period key, as ``ranks.GRAIN_OF_PERIOD`` tells it in SQL."""
    if period == "all":
        return "all"
    if len(period) == 4:
        return "year"
    if len(period) == 10:
        return "day"
    return {"W": "week", "Q": "quarter"}.get(period[5:6], "month")


def board_key(board: ranks.Board) -> str:
    return f"levelup:{{{board.program_id}}}:board:{board.source}:{board.key}:{board.period}"


def ready_key(program_id: int) -> str:
    return f"levelup:{{{program_id}}}:ready"


def member(subject_id: int) -> str:
    return f"{MAX_ID - subject_id:019d}"


def subject(member_: bytes | str) -> int:
    return MAX_ID - int(member_)


_ATTACHED: weakref.WeakKeyDictionary[Engine, Boards] = weakref.WeakKeyDictionary()


def of(connection_or_engine: Connection | Engine) -> Boards | None:
    """The Redis copy kept for this database, if Redis is configured."""
    return _ATTACHED.get(connection_or_engine.engine)


def touched(connection: Connection, rows: Iterable[Row]) -> None:
    """Name rows of board sources this transaction wrote, to copy to Redis as it commits (nothing without Redis)."""
    if connection.engine in _ATTACHED:
        connection.info.setdefault(TOUCHED, set()).update(rows)


@dataclass(frozen=True)
class Standing:
    rank: int
    value: float
    total: int


class Boards:
    """The Redis copy of one database's plain boards."""

    def __init__(self, client: redis.Redis, db: Database) -> None:
        self.client = client
        self.db = db
        self._stale: set[int] = set()  # programs whose copy missed a write here: not read until rebuilt
        self._lock = threading.Lock()
        self._building: set[int] = set()
        self._down_until = 0.0  # after a failure, Redis is not asked again until then (a hung one costs once)

    @classmethod
    def connect(cls, url: str, db: Database) -> Boards:
        """Keep ``db``'s boards in the Redis at ``url``: from now on its commits update the copy."""
        client = redis.Redis.from_url(url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS)
        boards = cls(client, db)
        _ATTACHED[db.engine] = boards
        event.listen(db.engine, "commit", boards.flush)
        event.listen(db.engine, "rollback", lambda connection: connection.info.pop(TOUCHED, None))
        return boards

    def close(self) -> None:
        event.remove(self.db.engine, "commit", self.flush)
        _ATTACHED.pop(self.db.engine, None)
        self.client.close()

    # ------------------------------------------------------------------ writes

    def flush(self, connection: Connection) -> None:
        """Copy the rows this transaction touched from ``rank_rows`` (as it sees them) to Redis."""
        rows: set[Row] | None = connection.info.pop(TOUCHED, None)
        if not rows:
            return
        by_program: dict[int, list[tuple[str, str, str, int]]] = defaultdict(list)
        for program_id, source, key, period, subject_id in rows:
            by_program[program_id].append((source, key, period, subject_id))
        for program_id, touched_keys in by_program.items():
            if program_id in self._stale:
                continue
            if self._down():
                self._stale.add(program_id)  # this write misses the copy: read from the database until rebuilt
                continue
            if len(touched_keys) > MANY:  # a whole program rewritten (an apply, a replay): rebuilt in one go instead
                self._stale.add(program_id)
                continue
            b = t.rank_boards.c
            boards = {
                (source, key, grain)
                for source, key, grain in connection.execute(
                    select(b.source, b.key, b.grain).where(b.program_id == program_id)
                )
            }
            keys = [k for k in touched_keys if (k[0], k[1], grain_of(k[2])) in boards]  # rows on no board: skipped
            if not keys:
                continue
            found = fetch_by_keys(
                connection,
                t.rank_rows,
                fixed={"program_id": program_id},
                keys=["source", "key", "period", "subject_id"],
                values=keys,
                columns=["source", "key", "period", "subject_id", "value"],
            )
            try:
                with self.client.pipeline(transaction=False) as pipe:
                    for source, key, period, subject_id, value in found:
                        pipe.zadd(board_key(ranks.Board(program_id, source, key, period)), {member(subject_id): value})
                    pipe.execute()
            except redis.RedisError as exc:
                self._fell_back("write", exc)
                self._stale.add(program_id)

    def rebuild(self, program_id: int) -> int | None:
        """Copy the program's boards afresh from ``rank_rows``; returns the rows copied (None: another process
        is at it). Readers use the database until the new copy is marked ready.

        Writes committed meanwhile are not lost: the copy is loaded with ZADD NX after the old keys are
        gone, so a value a commit set first is kept and one set later overwrites the snapshot's."""
        building = f"levelup:{{{program_id}}}:building"
        if not self.client.set(building, "1", nx=True, ex=BUILD_SECONDS):
            return None
        try:
            return self._rebuild(program_id)
        finally:
            self.client.delete(building)

    def _rebuild(self, program_id: int) -> int:
        with self.db.read() as connection:
            version = connection.execute(select(t.programs.c.version).where(t.programs.c.id == program_id)).scalar()
        self.client.delete(ready_key(program_id))
        stale = list(self.client.scan_iter(match=f"levelup:{{{program_id}}}:board:*", count=1000))
        if stale:
            self.client.delete(*stale)
        with self._lock:
            self._stale.discard(program_id)  # writes from now on land in the new copy
        copied = 0
        R = t.rank_rows.c
        query = select(R.source, R.key, R.period, R.subject_id, R.value).where(
            R.program_id == program_id,
            R.source.not_in(("n", "w")),  # normalised and windowed boards are read from the database
        )
        with self.db.read() as connection:
            result = connection.execution_options(yield_per=CHUNK).execute(query)
            for chunk in result.partitions():
                with self.client.pipeline(transaction=False) as pipe:
                    boards: dict[str, dict[str, float]] = defaultdict(dict)
                    for source, key, period, subject_id, value in chunk:
                        boards[board_key(ranks.Board(program_id, source, key, period))][member(subject_id)] = value
                    for name, members in boards.items():
                        pipe.zadd(name, members, nx=True)
                    pipe.execute()
                copied += len(chunk)
        self.client.set(ready_key(program_id), f"{FORMAT}:{version}")
        logger.info("leaderboards of program %d copied to Redis: %d rows", program_id, copied, extra={"rows": copied})
        return copied

    def rebuild_stale_later(self) -> None:
        """:meth:`rebuild_stale` in a thread of its own (at start: serving goes on from the database)."""

        def run() -> None:
            try:
                self.rebuild_stale()
            except Exception as exc:  # the first read that finds a copy stale tries again
                self._fell_back("rebuild", exc)

        threading.Thread(target=run, name="levelup-redis-rebuild", daemon=True).start()

    def rebuild_stale(self) -> list[int]:
        """Rebuild every program whose copy is missing, of another version or format, or missed a write."""
        with self.db.read() as connection:
            programs = list(connection.execute(select(t.programs.c.id, t.programs.c.version)))
        with self.client.pipeline(transaction=False) as pipe:  # a GET each, not an MGET: one slot a command
            for program_id, _ in programs:
                pipe.get(ready_key(program_id))
            markers = pipe.execute()
        stale = [p for (p, v), m in zip(programs, markers, strict=True) if m != f"{FORMAT}:{v}".encode()]
        with self._lock:
            stale = sorted({*stale, *(self._stale & {p for p, _ in programs})})
        for program_id in stale:
            self.rebuild(program_id)
        return stale

    def rebuild_later(self, program_id: int) -> None:
        """Rebuild the program's copy in a thread of its own, unless this process is already at it."""
        with self._lock:
            if program_id in self._building:
                return
            self._building.add(program_id)
        logger.warning("the Redis copy of program %d is missing or stale: the database answers meanwhile", program_id)

        def run() -> None:
            try:
                self.rebuild(program_id)
            except Exception as exc:  # Redis or the database down: the next read that finds it stale retries
                self._fell_back("rebuild", exc)
            finally:
                with self._lock:
                    self._building.discard(program_id)

        threading.Thread(target=run, name=f"levelup-redis-rebuild-{program_id}", daemon=True).start()

    # ------------------------------------------------------------------ reads

    def _ready(self, marker: object, program_id: int, version: int) -> bool:
        """Whether the copy may answer: built for this version and format, and no write missed here."""
        if marker == f"{FORMAT}:{version}".encode() and program_id not in self._stale:
            return True
        REDIS_FALLBACKS.labels("stale").inc()
        self.rebuild_later(program_id)
        return False

    def standing(self, board: ranks.Board, version: int, subject_id: int) -> Standing | bool | None:
        """Rank, value and total of one subject (None: not on the board), or False when Redis cannot answer."""
        name = board_key(board)
        if self._down():
            REDIS_FALLBACKS.labels("read").inc()
            return False
        try:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.get(ready_key(board.program_id))
                pipe.zscore(name, member(subject_id))
                pipe.zcard(name)
                marker, score, total = pipe.execute()
            if not self._ready(marker, board.program_id, version):
                return False
            if score is None:
                return None
            above = self.client.zcount(name, f"({score!r}", "+inf")
        except redis.RedisError as exc:
            self._fell_back("read", exc)
            return False
        return Standing(1 + int(above), float(score), int(total))

    def entries(
        self, board: ranks.Board, version: int, *, offset: int = 0, limit: int, around: int | None = None
    ) -> tuple[list[ranks.Entry], dict[float, int], int] | bool | None:
        """A page (``offset``, ``limit``) or ``limit`` entries each side of subject ``around``, with the ranks
        of the values :func:`ranks.needed` asks for and the total; None when ``around`` is not on the board,
        False when Redis cannot answer."""
        name = board_key(board)
        if self._down():
            REDIS_FALLBACKS.labels("read").inc()
            return False
        try:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.get(ready_key(board.program_id))
                pipe.zcard(name)
                if around is not None:
                    pipe.zrevrank(name, member(around))
                marker, total, *position = pipe.execute()
            if not self._ready(marker, board.program_id, version):
                return False
            if around is not None:
                if position[0] is None:
                    return None
                offset, stop = max(0, position[0] - limit), position[0] + limit
            else:
                stop = offset + limit - 1
            found = cast(list[tuple[bytes, float]], self.client.zrevrange(name, offset, stop, withscores=True))
            entries = [(subject(m), float(s)) for m, s in found]
            values = ranks.needed(entries) if around is not None else ranks.needed(entries, offset=offset)
            with self.client.pipeline(transaction=False) as pipe:
                for value in values:
                    pipe.zcount(name, f"({value!r}", "+inf")
                counted = pipe.execute()
        except redis.RedisError as exc:
            self._fell_back("read", exc)
            return False
        return entries, {v: 1 + int(n) for v, n in zip(values, counted, strict=True)}, int(total)

    def _down(self) -> bool:
        return time.monotonic() < self._down_until

    def _fell_back(self, use: str, exc: BaseException) -> None:
        self._down_until = time.monotonic() + RETRY_SECONDS
        REDIS_FALLBACKS.labels(use).inc()
        logger.warning(
            "Redis failed (%s): %s: %s; the database answers, Redis is tried again in %d s",
            use,
            type(exc).__name__,
            exc,
            RETRY_SECONDS,
        )
