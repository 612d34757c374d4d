"""Windowed boards kept as board rows, so they rank like plain boards (docs/web.md, "Speed").

Two kinds of board have no stored total to index: a metric over a rolling window (``last_N_days``: the
sum of the day totals of the last N local days, a sum that changes every midnight) and a currency over a
window (what was earned between two instants: a sum of ledger entries). Ranking them afresh means summing
and sorting every participant's rows at each read: hundreds of milliseconds at 100,000 participants.

So their rows are kept in ``rank_rows`` under source ``w`` (key ``<kind>/<window>/<metric or currency>``,
kind ``p``/``t`` for a participants' or teams' metric, ``c`` for a currency; ``q/<window>/<metric>/<attribute>``
for a normalised rolling board, each participant's sum ÷ their handicap) for the periods listed in
``board_windows``: a rolling board as of a local day (period = that day), a currency board over a calendar
period (period = its key). The ``rank_rows`` triggers keep their bucket counts, and a read is index seeks
and counts like any plain board's (:mod:`levelup.leaderboards.ranks`).

- **The job** (``board-windows``, every tick) fills today's period in the program's time zone and, in the
  last hour of the day, tomorrow's, and drops the others: at midnight tomorrow's rows are already there and
  exact (keeping a period costs every write, so tomorrow's is not kept all day), because
- **every write** keeps the kept periods: a metric write (``events.store.write_totals``) recomputes, for
  the subjects whose day totals changed, their sum in each kept rolling period whose days hold that day;
  a ledger posting (``ledger.posting.post``) adds each earning to its participant's row in each kept
  currency period whose instants hold the entry's (the ledger is append-only: an entry is posted once);
  a new handicap (a profile set, an erasure: :func:`handicaps_changed`) recomputes that participant's
  quotients. Late and out-of-order events, reversals and adjustments are writes like any other.
- **A read** uses the kept rows only when ``board_windows`` holds the period with the bounds the read
  would sum over; otherwise (the job has not run yet, a new time zone) the board is ranked afresh by the
  database, with the same answers. Replay and a rank rebuild refill every kept period from the sources.

A metric row is recomputed (the same exact SUM as the afresh ranking: ``storage.sql.exact_sum``, the same
in any order the rows come), so a repeated or reordered write cannot drift it; a currency row adds whole
amounts, exact in a double.

On PostgreSQL a write of a program that keeps (or has announced) a period takes the program's rank lock
before reading which periods are kept, and the job takes it before filling: a fill waits for writers in
flight and is waited for by the next ones, so no write falls between its snapshot and its commit, and two
writers never add to a row at once. Writers of such a program queue behind each other from their first
posting to their commit (bench/README measures it). A program that keeps nothing makes its writers wait for
nothing: a write looks, unlocked, and finds no period. That look is safe because a program's first periods
are *announced* (listed without bounds, committed) and filled only once every transaction that was writing
at the announcement has ended (:func:`_writers_done`, up to a minute, else at a later tick: a transaction
left open that long only keeps the board ranked afresh); a writer that starts after the announcement sees
it and takes the lock.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, func, literal, select, text

from levelup.engine.positions import EARNING_KINDS
from levelup.leaderboards import normalised
from levelup.metrics.periods import local_date, period_dates, period_key, rolling_days, window_dates, zone
from levelup.programs import service as programs
from levelup.programs.compiled import CompiledProgram
from levelup.programs.document import Leaderboard
from levelup.runtime import Runtime
from levelup.storage import tables as t
from levelup.storage.sql import bulk_insert, exact_sum

SOURCE = "w"
CHUNK = 500  # subjects a statement (with a window's days, bound parameters stay under SQLite's 32,766)
AHEAD = dt.timedelta(hours=1)  # how long before the local midnight tomorrow's periods are filled and kept
ANNOUNCED = ""  # the bounds of a period announced, not filled yet (board_windows.first_day, last_day)
WAIT_FOR_WRITERS = 60.0  # seconds the job waits for the writers in flight before a program's first fill
# the transactions writing now (their ids), and whether each still is: what a first fill waits for
_IN_FLIGHT = text("SELECT CAST(x AS text) FROM pg_snapshot_xip(pg_current_snapshot()) AS x")
_STATUS = text("SELECT x, pg_xact_status(CAST(x AS xid8)) FROM unnest(CAST(:xids AS text[])) AS x")
_LOCK = text(
    "SELECT pg_advisory_xact_lock(hashtext('levelup.rank:' || current_schema()), ((:p) % 2147483648)::integer)"
)


@dataclass(frozen=True)
class Window:
    """What a windowed board sums: ``kind`` 'p'/'t' (a metric of participants or teams), 'q' (a participants'
    metric ÷ a handicap: ``name`` is ``<metric>/<attribute>``) or 'c' (a currency earned), ``name`` the metric
    or currency, ``window`` the board's window."""

    kind: str
    window: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.window}/{self.name}"

    @property
    def metric(self) -> str:
        """The metric summed (a 'q' name's first part), or the currency."""
        return self.name.split("/", 1)[0]

    @property
    def attribute(self) -> str:
        """The handicap's participant attribute (a 'q' name's second part)."""
        return self.name.split("/", 1)[1]

    @property
    def subject_kind(self) -> str:
        """The metric totals' subject kind summed ('p' for a quotient)."""
        return "p" if self.kind == "q" else self.kind

    @staticmethod
    def parse(key: str) -> Window:
        kind, window, name = key.split("/", 2)
        return Window(kind, window, name)


@dataclass(frozen=True)
class Span:
    """One period of a windowed board: its label in ``rank_rows.period`` and what it sums over (local days
    ``first``..``last``; for a currency, the instants ``starts_at`` ≤ at < ``ends_at``)."""

    period: str
    first: str
    last: str
    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None


def of_board(board: Leaderboard) -> Window | None:
    """The kept rows that can serve ``board``: a metric board over a rolling window (normalised or not), or a
    participants' currency board over a window other than ``all``, not normalised (a normalised board on a
    calendar window is :mod:`levelup.leaderboards.normalised`'s)."""
    rolling = board.metric is not None and rolling_days(board.window) is not None
    if board.normalize is not None:
        if not rolling or board.by != "participant":
            return None
        found = Window("q", board.window, f"{board.metric}/{board.normalize.rsplit('.', 1)[1]}")
    elif rolling and board.metric is not None:
        found = Window("t" if board.by == "team" else "p", board.window, board.metric)
    elif board.currency is not None and board.window != "all" and board.by == "participant":
        found = Window("c", board.window, board.currency)
    else:
        return None
    return found if len(found.key) <= t.rank_rows.c.key.type.length else None  # type: ignore[attr-defined]


def span(window: Window, timezone: str, today: dt.date, period: str | None = None) -> Span | None:
    """The period of ``window`` a read on ``today`` ranks (a calendar ``period`` asked for, else the
    current one), with its bounds as the afresh ranking computes them."""
    if rolling_days(window.window) is not None:
        dates = window_dates(window.window, today)
        label = today.isoformat()
    else:
        label = period or period_key(window.window, today)
        dates = period_dates(label)
    if dates is None:
        return None
    first, last = dates
    if window.kind != "c":
        return Span(label, first.isoformat(), last.isoformat())
    tz = zone(timezone)
    starts = dt.datetime.combine(first, dt.time(), tz).astimezone(dt.UTC)
    ends = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tz).astimezone(dt.UTC)
    return Span(label, first.isoformat(), last.isoformat(), starts, ends)


def kept_board(
    connection: Connection, program_id: int, compiled: CompiledProgram, board: Leaderboard, today: dt.date, period: str
) -> tuple[str, str] | None:
    """(key, period) of ``board``'s kept rows in ``rank_rows`` for the period a read ranks, when that period is
    kept with the bounds the read would sum over; else None (rank it afresh)."""
    window = of_board(board)
    if window is None:
        return None
    wanted = span(window, compiled.timezone, today, None if rolling_days(board.window) else period)
    if wanted is None:
        return None
    w = t.board_windows.c
    row = connection.execute(
        select(w.first_day, w.last_day, w.starts_at, w.ends_at).where(
            w.program_id == program_id, w.key == window.key, w.period == wanted.period
        )
    ).first()
    if row is None or Span(wanted.period, *row) != wanted:
        return None
    return window.key, wanted.period


# ---------------------------------------------------------------------------- the job


def _wanted(compiled: CompiledProgram, now: dt.datetime) -> dict[tuple[str, str], Span]:
    """(key, period) → bounds of each period to keep at ``now``: today's of each windowed board of the document,
    and tomorrow's in the last :data:`AHEAD` of the day."""
    today = local_date(now, compiled.timezone)
    tomorrow = today + dt.timedelta(days=1)
    midnight = dt.datetime.combine(tomorrow, dt.time(), zone(compiled.timezone))
    days = (today, tomorrow) if midnight - now <= AHEAD else (today,)
    wanted: dict[tuple[str, str], Span] = {}
    for board in compiled.doc.leaderboards:
        window = of_board(board)
        for day in days if window is not None else ():
            assert window is not None
            found = span(window, compiled.timezone, day)
            if found is not None:
                wanted[(window.key, found.period)] = found
    return wanted


def slide_program(connection: Connection, program_id: int, compiled: CompiledProgram, now: dt.datetime) -> int:
    """Keep exactly the periods :func:`_wanted` says: drop the others (any kept under other bounds, any
    announced), fill the missing ones from the sources. Returns the periods filled."""
    _lock(connection, program_id)
    wanted = _wanted(compiled, now)
    filled = 0
    for key, kept in _kept(connection, program_id, announced=True):
        if wanted.get((key, kept.period)) != kept:
            _drop(connection, program_id, key, kept.period)
        else:
            del wanted[(key, kept.period)]
    for (key, _), missing in sorted(wanted.items()):
        _write(connection, program_id, Window.parse(key), missing, None)
        connection.execute(
            t.board_windows.insert().values(
                program_id=program_id,
                key=key,
                period=missing.period,
                first_day=missing.first,
                last_day=missing.last,
                starts_at=missing.starts_at,
                ends_at=missing.ends_at,
            )
        )
        filled += 1
    return filled


def slide(runtime: Runtime, *, now: dt.datetime | None = None, program_keys: Iterable[str] | None = None) -> int:
    """The jobs' entry: slide every program's (or ``program_keys``') windowed boards to ``now``, one program a
    transaction; returns the periods filled."""
    now = now or dt.datetime.now(dt.UTC)
    with runtime.db.read() as connection:
        keys = [p.key for p in programs.selected(connection, program_keys)]
    filled = 0
    for key in keys:
        with runtime.db.write() as connection:
            program = programs.find(connection, key)
            announced = _announce(connection, program.id, _wanted(runtime.programs.compiled(connection, program), now))
        if announced and not _writers_done(runtime):
            continue  # a transaction is still in flight: filled at a later tick
        with runtime.db.write() as connection:
            program = programs.find(connection, key)
            filled += slide_program(connection, program.id, runtime.programs.compiled(connection, program), now)
    return filled


def _announce(connection: Connection, program_id: int, wanted: dict[tuple[str, str], Span]) -> bool:
    """PostgreSQL, a program that keeps no period yet: list the periods to fill as announced (no bounds: a read
    ranks afresh, a write keeps nothing there, but takes the lock). True while the program has announced
    periods only: the caller commits, then waits for the writers in flight — they looked, found nothing and
    took no lock (:func:`_kept_for_writing`) — before filling; every later writer sees the announcement."""
    if connection.dialect.name != "postgresql" or not wanted:
        return False
    rows = _kept(connection, program_id, announced=True)
    if not rows:
        marks = [
            {"program_id": program_id, "key": key, "period": period, "first_day": ANNOUNCED, "last_day": ANNOUNCED}
            for key, period in sorted(wanted)
        ]
        connection.execute(t.board_windows.insert(), marks)
        return True
    return all(kept.first == ANNOUNCED for _, kept in rows)


def _writers_done(runtime: Runtime) -> bool:
    """Wait, up to :data:`WAIT_FOR_WRITERS`, for every transaction that was writing when this is called (on
    PostgreSQL: the in-progress ids of a snapshot taken now); False if some still are."""
    deadline = time.monotonic() + WAIT_FOR_WRITERS
    with runtime.db.engine.connect() as connection:
        xids = [str(x) for x in connection.execute(_IN_FLIGHT).scalars()]
        while xids:
            statuses = connection.execute(_STATUS, {"xids": xids}).all()
            xids = [x for x, status in statuses if status == "in progress"]
            if not xids or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        connection.rollback()
    return not xids


def refill(connection: Connection, program_id: int) -> None:
    """Every kept period recomputed from the sources (replay, a rebuild of the metrics or of the rank rows)."""
    for key, kept in _kept_for_writing(connection, program_id):
        _write(connection, program_id, Window.parse(key), kept, None)


# ---------------------------------------------------------------------------- the writes


def metrics_written(connection: Connection, program_id: int, written: Iterable[tuple[str, str, str, int]]) -> None:
    """After a metric write of ``written`` (metric, period, subject kind, subject id): recompute the changed
    subjects' rows in each kept rolling period that holds a changed day."""
    days = [(m, p, k, s) for m, p, k, s in written if len(p) == 10 and p[4] == "-"]  # day keys only
    if not days:
        return
    for key, kept in _kept_for_writing(connection, program_id):
        window = Window.parse(key)
        if window.kind == "c":
            continue
        metric, kind = window.metric, window.subject_kind
        subjects = {s for m, p, k, s in days if m == metric and k == kind and kept.first <= p <= kept.last}
        if subjects:
            _write(connection, program_id, window, kept, sorted(subjects))


def handicaps_changed(connection: Connection, program_id: int, participants: Iterable[int]) -> None:
    """After participants' attributes changed (a profile set, an erasure): recompute their quotients in each
    kept period of a normalised rolling board (a participant with no positive handicap leaves it)."""
    ids = sorted(set(participants))
    if not ids:
        return
    for key, kept in _kept_for_writing(connection, program_id):
        if key.startswith("q/"):
            _write(connection, program_id, Window.parse(key), kept, ids)


def posted(connection: Connection, program_id: int, entries: Iterable[tuple[int, str, str, int, dt.datetime]]) -> None:
    """After ledger entries (participant id, currency, kind, amount, at) are appended: add the earnings to the
    participants' rows in each kept currency period that holds the entry's instant. Added, not summed again:
    the ledger is append-only and each entry is posted once, and summing a participant's entries would read
    their whole history (the ledger is indexed by participant and id, not by time)."""
    earned = [(p, c, amount, at) for p, c, kind, amount, at in entries if kind in EARNING_KINDS]
    if not earned:
        return
    for key, kept in _kept_for_writing(connection, program_id):
        window = Window.parse(key)
        if window.kind != "c":
            continue
        assert kept.starts_at is not None and kept.ends_at is not None
        added: dict[int, int] = {}
        for p, c, amount, at in earned:
            if c == window.name and kept.starts_at <= at < kept.ends_at:
                added[p] = added.get(p, 0) + amount
        if added:
            _add(connection, program_id, window, kept, added)


def _lock(connection: Connection, program_id: int) -> None:
    """The program's rank lock until the transaction ends (PostgreSQL; SQLite has a single writer)."""
    if connection.dialect.name == "postgresql":
        connection.execute(_LOCK, {"p": program_id})


def _kept(connection: Connection, program_id: int, *, announced: bool = False) -> list[tuple[str, Span]]:
    """The program's kept periods (and, with ``announced``, those announced and not filled yet)."""
    w = t.board_windows.c
    query = select(w.key, w.period, w.first_day, w.last_day, w.starts_at, w.ends_at).where(w.program_id == program_id)
    if not announced:
        query = query.where(w.first_day != ANNOUNCED)
    return [(r.key, Span(r.period, r.first_day, r.last_day, r.starts_at, r.ends_at)) for r in connection.execute(query)]


def _kept_for_writing(connection: Connection, program_id: int) -> list[tuple[str, Span]]:
    """The kept periods a write must keep, read under the program's rank lock — taken only when the program keeps
    or announces a period (PostgreSQL): a program with no windowed board makes its writers wait for nothing.
    The unlocked look is safe because a program's first periods are announced, and filled only once the
    writers that looked before the announcement have ended (:func:`_announce`)."""
    if connection.dialect.name == "postgresql":
        w = t.board_windows.c
        if connection.execute(select(w.program_id).where(w.program_id == program_id).limit(1)).first() is None:
            return []
        _lock(connection, program_id)
    return _kept(connection, program_id)


def _drop(connection: Connection, program_id: int, key: str, period: str) -> None:
    r, w = t.rank_rows.c, t.board_windows.c
    connection.execute(
        t.rank_rows.delete().where(r.program_id == program_id, r.source == SOURCE, r.key == key, r.period == period)
    )
    connection.execute(t.board_windows.delete().where(w.program_id == program_id, w.key == key, w.period == period))


def sums(connection: Connection, program_id: int, window: Window, kept: Span, ids: Sequence[int] | None) -> Select[Any]:
    """(subject id, sum) of each subject with a row in the period: the afresh ranking's own sums
    (``leaderboards.service``; a quotient's sum divided as it divides, the participants without a positive
    handicap left off), of ``ids`` only when given."""
    if window.kind == "q":
        raw = sums(connection, program_id, Window("p", window.window, window.metric), kept, ids).subquery()
        p = t.participants.c
        handicap = normalised.divisor(connection, window.attribute)
        return (
            select(raw.c[0], raw.c[1] / handicap)
            .select_from(raw.join(t.participants, p.id == raw.c[0]))
            .where(handicap > 0)
        )
    if window.kind == "c":
        c = t.ledger_entries.c
        query = (
            select(c.participant_id, func.sum(c.amount))
            .where(
                c.program_id == program_id,
                c.currency == window.name,
                c.kind.in_(EARNING_KINDS),
                c.at >= kept.starts_at,
                c.at < kept.ends_at,
            )
            .group_by(c.participant_id)
        )
        return query if ids is None else query.where(c.participant_id.in_(ids))
    m = t.metric_totals.c
    mine = (m.program_id == program_id, m.metric == window.name, m.subject_kind == window.kind)
    query = select(m.subject_id, exact_sum(m.value)).group_by(m.subject_id)
    if ids is None:  # every day total in the window: the afresh ranking's own condition
        return query.where(*mine, m.period >= kept.first, m.period <= kept.last, func.length(m.period) == 10)
    # a few subjects: the same rows (a key of length 10 is a day's, and ISO days sort as dates) as primary-key
    # seeks, each subject's day in the window, rather than a range over every subject's days
    first, last = dt.date.fromisoformat(kept.first), dt.date.fromisoformat(kept.last)
    day_keys = [(first + dt.timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
    return query.where(*mine, m.period.in_(day_keys), m.subject_id.in_(ids))


def _write(connection: Connection, program_id: int, window: Window, kept: Span, ids: list[int] | None) -> None:
    """Replace the period's rows (of ``ids``; all of them when None) with their sums, recomputed."""
    r = t.rank_rows.c
    mine = [r.program_id == program_id, r.source == SOURCE, r.key == window.key, r.period == kept.period]
    columns = ["program_id", "source", "key", "period", "subject_id", "value"]
    for start in range(0, len(ids), CHUNK) if ids is not None else [None]:
        chunk = None if start is None or ids is None else ids[start : start + CHUNK]
        where = mine if chunk is None else [*mine, r.subject_id.in_(chunk)]
        connection.execute(t.rank_rows.delete().where(*where))
        raw = sums(connection, program_id, window, kept, chunk).subquery()
        fresh = select(
            literal(program_id), literal(SOURCE), literal(window.key), literal(kept.period), raw.c[0], raw.c[1]
        )
        connection.execute(t.rank_rows.insert().from_select(columns, fresh))


def _add(connection: Connection, program_id: int, window: Window, kept: Span, added: dict[int, int]) -> None:
    """Add ``added`` (subject id → amount) to the period's rows, making those missing: read, then each row
    deleted and inserted anew (the ``rank_rows`` triggers count inserts and deletes)."""
    r = t.rank_rows.c
    mine = [r.program_id == program_id, r.source == SOURCE, r.key == window.key, r.period == kept.period]
    ids = sorted(added)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        where = [*mine, r.subject_id.in_(chunk)]
        now = dict(connection.execute(select(r.subject_id, r.value).where(*where)).all())
        connection.execute(t.rank_rows.delete().where(*where))
        rows = [
            {
                "program_id": program_id,
                "source": SOURCE,
                "key": window.key,
                "period": kept.period,
                "subject_id": s,
                "value": float(now.get(s, 0)) + added[s],
            }
            for s in chunk
        ]
        bulk_insert(connection, t.rank_rows, rows)


def stored(connection: Connection, program_id: int) -> dict[tuple[str, str, int], float]:
    """The rows kept for a program, keyed (key, period, subject id): what :func:`expected` must equal."""
    r = t.rank_rows.c
    rows = connection.execute(
        select(r.key, r.period, r.subject_id, r.value).where(r.program_id == program_id, r.source == SOURCE)
    )
    return {(key, period, int(subject)): float(value) for key, period, subject, value in rows}


def expected(connection: Connection, program_id: int) -> dict[tuple[str, str, int], float]:
    """The rows the kept periods should hold, summed afresh from the sources."""
    found: dict[tuple[str, str, int], float] = {}
    for key, kept in _kept(connection, program_id):
        for subject, value in connection.execute(sums(connection, program_id, Window.parse(key), kept, None)):
            found[(key, kept.period, int(subject))] = float(value)
    return found
