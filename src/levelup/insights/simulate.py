"""Simulation (backtest): a draft document scored over the stored events of a window, beside the document in
force scored the same way, in memory, writing nothing.

One read of the event log in ingestion order (``replay.stored_events``: chunks, a server-side cursor) feeds
two worlds, one per document, each event with its participant as it was when scored (teams, tier,
suspension). Scoring never crosses participants, so with ``parallel`` each worker process reads and scores
the events of its share of the participants (ids modulo the workers) by both documents, and the parent
merges the shares before closing (a team's value sums its members' parts, whatever worker scored them).
Like live ingestion, a fresh :class:`World` takes each chunk over the same states, so the
effects it keeps for reversals are a chunk's, not the log's: the events reversed later in the window are
kept aside (a set read first), and memory is bounded by the participants, not the events.

Periods of team goals and competitions that end inside the window are closed at the end as
``challenges.closing.settle`` would, from the simulated totals: rewards and prizes go to the balances (a
race places its finishers by the event time they reached the target). Redemptions, adjustments, kudos,
expiry and referral payments are not events: they are not simulated.
Boards are shown as of the day of the window's last event. Tiers are taken as each event recorded them
(a draft's multipliers apply to them; its thresholds are not re-rated), as replay does. A reversal of an
event before the window has nothing to undo and is skipped.
"""

from __future__ import annotations

import datetime as dt
import gc
import math
import multiprocessing
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from multiprocessing.connection import Connection as Connection_
from multiprocessing.connection import wait
from typing import Any, NamedTuple

from sqlalchemy import Connection, func, select

from levelup.challenges.closing import _awards, _settled_here
from levelup.engine.goals import eligible
from levelup.engine.model import WHOLE, BookedEntry, Effects, Event, ParticipantState, ReversedEvent
from levelup.engine.positions import EARNING_KINDS, apply, move
from levelup.engine.world import World
from levelup.errors import FieldError, Invalid
from levelup.events.replay import CHUNK as CHUNK  # a world's share of the log, as read (tests make it small)
from levelup.events.replay import StoredEvent, as_when_scored, participant_rows, stored_events
from levelup.events.store import event_from_row
from levelup.insights.common import Bucket, window
from levelup.leaderboards.service import Row, rank
from levelup.metrics.periods import (
    grain_of,
    local_date,
    period_dates,
    period_end,
    period_key,
    range_key,
    rolling_days,
    window_dates,
    zone,
)
from levelup.participants import repository as participants
from levelup.programs import service as programs
from levelup.programs.compiled import CompiledProgram
from levelup.programs.document import Challenge, Leaderboard, ProgramDocument
from levelup.runtime import Runtime
from levelup.storage import tables as t
from levelup.storage.db import Database

TOP = 10
MAX_CHANGES = 100
PERCENTILES = (10, 25, 50, 75, 90, 99)
Progress = Callable[[int], None]


@lru_cache(maxsize=4096)
def _grain(period: str) -> str | None:
    try:
        return grain_of(period)
    except ValueError:
        return None  # a one-off range key


@dataclass
class Scenario:
    """One document scored over the window: its world's states and what the report needs beside them."""

    program: CompiledProgram
    to: dt.datetime
    states: dict[str, ParticipantState] = field(default_factory=dict)
    person: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)  # (metric, period) → id → value
    # (metric, period) → team → member → the member's part of the team's value (see ``team``)
    team_parts: dict[tuple[str, str], dict[str, dict[str, float]]] = field(default_factory=dict)
    earned: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)  # (board, period) → id → earned
    finished: dict[tuple[str, str, str], dt.datetime] = field(default_factory=dict)  # race, period, id → reached at
    kept: dict[str, ReversedEvent] = field(default_factory=dict)  # events reversed later in the window
    reversed_by: dict[str, str] = field(default_factory=dict)
    prizes: list[dict[str, Any]] = field(default_factory=list)
    unsettled: list[dict[str, str]] = field(default_factory=list)  # periods that began before the window
    events: int = 0
    skipped: int = 0
    world: World | None = None

    def __post_init__(self) -> None:
        doc = self.program.doc
        self.last: dt.datetime | None = None  # the window's last event: boards are shown as of its day
        # the metric periods read here: the boards' grains (a rolling board sums days), and what closing settles
        self.exact: dict[str, set[str]] = defaultdict(set)
        self.grains: dict[str, set[str]] = defaultdict(set)
        for board in doc.leaderboards:
            if board.metric is not None:
                self.grains[board.metric].add(_board_grain(board))
        for c in self._closed_here():
            assert c.metric is not None
            if c.every:
                self.grains[c.metric].add(c.every)
            elif c.start and c.end:
                self.exact[c.metric].add(range_key(c.start, c.end))
        self.currency_boards = {
            b.key: (b.currency, Bucket(self.program.timezone, _board_grain(b)))
            for b in doc.leaderboards
            if b.currency is not None and b.window != "all"
        }

    def _closed_here(self) -> list[Challenge]:
        return [c for c in self.program.doc.challenges if _settled_here(c) and c.metric]

    def _board_periods(self, board: Leaderboard, today: dt.date) -> set[str]:
        """The periods a board shows as of ``today`` (a rolling board sums its days)."""
        if rolling_days(board.window) is None:
            return {period_key(board.window, today)}
        first, last = window_dates(board.window, today) or (today, today)
        return {(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)}

    def new_world(self) -> World:
        """A world for the next chunk over the same states; earlier events come from ``kept``."""
        self.world = World(
            lambda _v: self.program,
            states=self.states,
            find_earlier=self.kept.get,
            reversed_earlier=self.reversed_by.get,
            kept=self.program.kept,
            remember=(),  # ``kept`` holds every event reversed later in the window (``score``)
        )
        return self.world

    def score(self, row: StoredEvent, event: Event, names: Mapping[str, Any], reversed_later: set[str]) -> None:
        """Score ``event`` (``row`` read as the engine's event, built once for every scenario)."""
        assert self.world is not None
        as_when_scored(self.world.state(row.external_id), row, names)
        try:
            effects = self.world.process(event, self.program)
        except Invalid:
            self.skipped += 1  # a reversal of an event outside the window
            return
        self.events += 1
        self.last = max(self.last or event.occurred_at, event.occurred_at)
        self._fold(effects)
        if event.id in reversed_later:
            self.kept[event.id] = _as_reversed(effects)
        if event.reverses is not None and event.reverses in self.kept:
            self.kept[event.reverses] = replace(self.kept[event.reverses], refunded=effects.refunded)
            if effects.refunded == WHOLE:
                self.reversed_by[event.reverses] = event.id

    def _fold(self, effects: Effects) -> None:
        who = effects.event.participant
        for m in effects.metrics:
            if m.period in self.exact.get(m.metric, ()) or _grain(m.period) in self.grains.get(m.metric, ()):
                if m.team is None:
                    values = self.person.setdefault((m.metric, m.period), {})
                else:
                    values = self.team_parts.setdefault((m.metric, m.period), {}).setdefault(m.team, {})
                values[who] = values.get(who, 0.0) + m.delta
        for board, (currency, bucket) in self.currency_boards.items():
            for e in effects.ledger:
                if e.currency == currency and e.kind in EARNING_KINDS:
                    values_ = self.earned.setdefault((board, bucket(e.at)), {})
                    values_[who] = values_.get(who, 0) + e.amount
        for done in effects.completions:
            if self.program.challenges[done.challenge].format != "race":
                continue
            key = (done.challenge, done.period, who)
            if done.completed:
                self.finished.setdefault(key, effects.event.occurred_at)
            else:
                self.finished.pop(key, None)

    @cached_property
    def team(self) -> dict[tuple[str, str], dict[str, float]]:
        """(metric, period) → team → value, read once every event is in: the members' parts summed exactly
        (``math.fsum``), so a team's value does not depend on how workers shared the participants."""
        return {
            key: {team: math.fsum(parts.values()) for team, parts in teams.items()}
            for key, teams in self.team_parts.items()
        }

    def part(self) -> Part:
        """What this scenario holds, for the parent to merge with the other workers' (:meth:`merge`). The
        states leave behind what only scoring reads (metric values, counters, streaks, quest progress: most
        of a state), since closing and the report read positions, badges, completions and who they are."""
        states = {
            k: replace(s, metrics={}, counters={}, last_award={}, streaks={}, quests={}) for k, s in self.states.items()
        }
        return Part(
            states, self.person, self.team_parts, self.earned, self.finished, self.events, self.skipped, self.last
        )

    def merge(self, part: Part) -> None:
        """Take in a worker's part: its participants are no other worker's, its teams' members may be."""
        self.states.update(part.states)
        self.finished.update(part.finished)
        for key, values in part.person.items():
            self.person.setdefault(key, {}).update(values)
        for key, counts in part.earned.items():
            self.earned.setdefault(key, {}).update(counts)
        for key, teams in part.team_parts.items():
            mine = self.team_parts.setdefault(key, {})
            for team, parts in teams.items():
                mine.setdefault(team, {}).update(parts)
        self.events += part.events
        self.skipped += part.skipped
        if part.last is not None:
            self.last = max(self.last or part.last, part.last)

    def close(self, start: dt.datetime, members: Mapping[str, list[str]]) -> None:
        """Settle every period of a team goal or competition that ends inside the window, as the server would;
        one that began before the window is listed in ``unsettled`` instead (its totals here hold only the
        window's share of it, so settling it would pay others than the server paid)."""
        tz = zone(self.program.timezone)
        for c in self._closed_here():
            assert c.metric is not None
            spans: dict[str, tuple[dt.date, dt.datetime]]  # period → (its first local day, the instant it ends)
            if c.start and c.end and not c.every:
                last = dt.datetime.combine(c.end + dt.timedelta(days=1), dt.time(), tz)
                spans = {range_key(c.start, c.end): (c.start, last)}
            else:
                source = self.team if c.mode == "team" else self.person
                spans = {
                    p: (dates[0], end)
                    for (metric, p) in source
                    if metric == c.metric
                    and _grain(p) == c.every
                    and (end := period_end(p, self.program.timezone))
                    and (dates := period_dates(p))
                }
            for period, (first, end) in sorted(spans.items()):
                if not start < end <= self.to:  # no grace: the window's end is the time
                    continue
                if dt.datetime.combine(first, dt.time(), tz) < start:
                    self.unsettled.append({"challenge": c.key, "period": period})
                else:
                    self._settle(c, period, members)

    def _settle(self, c: Challenge, period: str, members: Mapping[str, list[str]]) -> None:
        assert c.metric is not None
        if c.mode == "team":
            values = {k: v for k, v in self.team.get((c.metric, period), {}).items() if not c.teams or k in c.teams}
        else:
            condition = self.program.eligibility.get(c.key)
            values = {
                k: v
                for k, v in self.person.get((c.metric, period), {}).items()
                if eligible(c, self.states[k], condition, self.program.challenge_holdouts.get(c.key, ()))
            }
        if c.kind == "goal":
            winners = [(s, 0, _awards(c.reward)) for s in sorted(values) if c.target and values[s] >= c.target]
        else:
            prizes = {p.rank: _awards(p.award) for p in c.prizes or []}
            ranked = (
                self._race(c, period)
                if c.format == "race"
                else rank([Row(s, None, v) for s, v in values.items() if v > 0])
            )
            winners = [(row.id, r, prizes[r]) for r, row in ranked if r in prizes]
        kind = "challenge" if c.kind == "goal" else "prize"
        for subject, place, awards in winners:
            paid = [] if c.draft else awards
            for participant in members.get(subject, []) if c.mode == "team" else [subject]:
                state = self.states.get(participant) or self.states.setdefault(
                    participant, ParticipantState(participant)
                )
                if state.status != "active":
                    continue  # a suspended participant earns nothing
                for currency, amount in paid:
                    position = state.position(currency)
                    apply(position, move(position, amount, kind))
            self.prizes.append(
                {"challenge": c.key, "period": period, "rank": place or None, "winner": subject, "awards": dict(paid)}
            )

    def _race(self, c: Challenge, period: str) -> list[tuple[int, Row]]:
        """Finishers placed by the event time they reached the target (the same instant shares a place)."""
        done = sorted((at, who) for (key, p, who), at in self.finished.items() if (key, p) == (c.key, period))
        placed: list[tuple[int, Row]] = []
        for i, (at, who) in enumerate(done):
            same = placed and done[i - 1][0] == at
            placed.append((placed[-1][0] if same else i + 1, Row(who, None, at.timestamp())))
        return placed

    def report(self) -> dict[str, Any]:
        doc = self.program.doc
        currencies = [c.key for c in doc.currencies]
        balances = {
            pid: {c: s.positions[c].net for c in currencies if c in s.positions and s.positions[c].net}
            for pid, s in sorted(self.states.items())
        }
        totals = {c: sum(b.get(c, 0) for b in balances.values()) for c in currencies}
        holders: dict[tuple[str, str], set[str]] = defaultdict(set)
        grants: dict[tuple[str, str], int] = defaultdict(int)
        completions: dict[str, int] = defaultdict(int)
        for pid, s in self.states.items():
            for badge, grade, _period in s.badges:
                holders[(badge, grade)].add(pid)
                grants[(badge, grade)] += 1
            for challenge, _period in s.completions:
                completions[challenge] += 1
        for prize in self.prizes:
            if prize["rank"] is None:
                completions[prize["challenge"]] += 1  # a team goal reached
        return {
            "events": self.events,
            "skipped": self.skipped,
            "totals": totals,
            "participants": {pid: b for pid, b in balances.items() if b},
            "distribution": {c: _distribution([b.get(c, 0) for b in balances.values()]) for c in currencies},
            "badges": [
                {
                    "badge": b.key,
                    "grade": g.name,
                    "holders": len(holders[(b.key, g.name)]),
                    "grants": grants[(b.key, g.name)],
                }
                for b in doc.badges
                for g in b.grades
            ],
            "challenges": [{"challenge": c.key, "completions": completions[c.key]} for c in doc.challenges],
            "leaderboards": [self._board(b) for b in doc.leaderboards],
            "prizes": self.prizes,
            "unsettled": self.unsettled,
            "liability": {
                c.key: {
                    "outstanding": sum(
                        s.positions[c.key].available for s in self.states.values() if c.key in s.positions
                    ),
                    "arrears": sum(s.positions[c.key].arrears for s in self.states.values() if c.key in s.positions),
                }
                for c in doc.currencies
                if c.spendable
            },
        }

    def _board(self, board: Leaderboard) -> dict[str, Any]:
        today = local_date(self.last or self.to - dt.timedelta(microseconds=1), self.program.timezone)
        period = board.window if rolling_days(board.window) else period_key(board.window, today)
        values: dict[str, float] = defaultdict(float)
        if board.metric is not None:
            source = self.team if board.by == "team" else self.person
            for p in self._board_periods(board, today):
                for subject, v in source.get((board.metric, p), {}).items():
                    values[subject] += v
        elif board.window == "all":
            assert board.currency is not None
            values = {
                k: s.positions[board.currency].earned for k, s in self.states.items() if board.currency in s.positions
            }
        else:
            for p in self._board_periods(board, today):
                for subject, n in self.earned.get((board.key, p), {}).items():
                    values[subject] += n
        if board.normalize:
            attribute = board.normalize.rsplit(".", 1)[1]
            divided = {}
            for k, v in values.items():
                divisor = self.states[k].attributes.get(attribute) if k in self.states else None
                if isinstance(divisor, int | float) and not isinstance(divisor, bool) and divisor > 0:
                    divided[k] = v / divisor
            values = divided
        ranked = rank([Row(k, self.states[k].name if k in self.states else None, v) for k, v in values.items()])
        return {
            "key": board.key,
            "period": period,
            "total": len(ranked),
            "entries": [{"rank": r, "id": row.id, "name": row.name, "value": row.value} for r, row in ranked[:TOP]],
        }


class Part(NamedTuple):
    """A scenario as one worker leaves it, over its share of the participants (:meth:`Scenario.part`)."""

    states: dict[str, ParticipantState]
    person: dict[tuple[str, str], dict[str, float]]
    team_parts: dict[tuple[str, str], dict[str, dict[str, float]]]
    earned: dict[tuple[str, str], dict[str, int]]
    finished: dict[tuple[str, str, str], dt.datetime]
    events: int
    skipped: int
    last: dt.datetime | None


def _board_grain(board: Leaderboard) -> str:
    return "day" if rolling_days(board.window) else board.window


def _as_reversed(effects: Effects) -> ReversedEvent:
    """An event as a later reversal needs it (what ``World`` keeps for the events of its own chunk)."""
    entries = tuple(
        BookedEntry(e.key, e.currency, e.amount, e.kind, e.rule, e.rule_version, e.explain) for e in effects.ledger
    )
    return ReversedEvent(effects.event, effects.program_version, effects.teams, entries)


def _distribution(values: list[int]) -> dict[str, float]:
    """Nearest-rank percentiles, the mean and the extremes of the balances of everyone in the window."""
    if not values:
        return {}
    ordered = sorted(values)
    out: dict[str, float] = {f"p{q}": ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1] for q in PERCENTILES}
    return out | {"min": ordered[0], "max": ordered[-1], "mean": sum(ordered) / len(ordered)}


def _team_members(connection: Connection, program_id: int) -> dict[str, list[str]]:
    """Team → its members now (closing pays the members of a team as they are when it closes)."""
    query = (
        select(t.teams.c.external_id, t.participants.c.external_id.label("member"))
        .join(t.memberships, t.memberships.c.team_id == t.teams.c.id)
        .join(t.participants, t.participants.c.id == t.memberships.c.participant_id)
        .where(t.teams.c.program_id == program_id)
    )
    out: dict[str, list[str]] = defaultdict(list)
    for team, member in connection.execute(query):
        out[team].append(member)
    return out


def _reversed_in(connection: Connection, program_id: int, start: dt.datetime, end: dt.datetime) -> set[str]:
    """Events the window's reversals name: the only ones kept once their chunk is done."""
    e = t.events.c
    query = select(e.reverses).where(
        e.program_id == program_id, e.reverses.is_not(None), e.occurred_at >= start, e.occurred_at < end
    )
    return set(connection.execute(query).scalars())


class Known(NamedTuple):
    """A participant's name and attributes, and the stored inputs live scoring was handed (segment
    assignments, frozen ``target: auto`` targets), as ``as_scored`` reads them."""

    name: str | None
    attributes: Any
    segments: tuple[tuple[dt.datetime, str], ...] = ()
    targets: dict[tuple[str, str], float] = {}  # noqa: RUF012 (shared empty default, never written)


GC_PACE = 200_000  # allocations between two young-generation collections while scoring (Python's default: 700)


class _Pace:
    """How many simulations are scoring in this process, and the pace they found."""

    lock = threading.Lock()
    depth = 0
    saved: tuple[int, int, int] = gc.get_threshold()


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Collect garbage less often while scoring. The loop makes many small objects and few cycles, while the
    states it keeps grow: at the default pace (a pass every 700 allocations, rescanning young states) it spent
    about a fifth of its time there, at 50,000 still 4 % (bench/simulate.py). Process-wide, so nested and
    concurrent simulations (HTTP requests) count: the last one out restores the pace found."""
    with _Pace.lock:
        if _Pace.depth == 0:
            _Pace.saved = gc.get_threshold()
            gc.set_threshold(GC_PACE, *_Pace.saved[1:])
        _Pace.depth += 1
    try:
        yield
    finally:
        with _Pace.lock:
            _Pace.depth -= 1
            if _Pace.depth == 0:
                gc.set_threshold(*_Pace.saved)


@dataclass(frozen=True)
class Log:
    """Where a worker reads the log from, as the parent sees it: the database, the snapshot to read in
    (PostgreSQL: the parent's, exported; SQLite numbers events in commit order, so ``upto`` is enough),
    and the last event of the window the parent saw."""

    url: str
    program_id: int
    start: dt.datetime
    end: dt.datetime
    upto: int
    snapshot: str | None = None
    chunk: int = 0  # the parent's CHUNK (tests make it small): a spawned worker would import its own


def _read(log: Log, share: tuple[int, int] | None = None) -> Iterator[StoredEvent]:
    """The window's events as the parent's snapshot holds them (a worker's ``share`` of the participants'),
    read in this process."""
    database = Database(log.url, pool=False, keep_copies=False)
    try:
        with database.engine.connect() as connection:
            if log.snapshot is not None:
                connection = connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                if log.snapshot is not None:
                    connection.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{log.snapshot}'")
                for row in stored_events(connection, log.program_id, start=log.start, end=log.end, share=share):
                    if row.seq > log.upto:
                        break
                    yield row
    finally:
        database.dispose()


def _feed(
    rows: Iterator[StoredEvent],
    scenarios: list[Scenario],
    names: Mapping[str, Any],
    reversed_later: set[str],
    progress: Progress | None,
    chunk: int,
) -> int:
    """Every row scored by every scenario, a fresh world each ``chunk`` rows; progress told a chunk at a time."""
    seen = 0
    for row in rows:
        if seen % chunk == 0:
            for s in scenarios:
                s.new_world()
            if progress and seen:
                progress(chunk)
        event = event_from_row(row)
        for s in scenarios:
            s.score(row, event, names, reversed_later)
        seen += 1
    if progress:
        progress(seen % chunk or (chunk if seen else 0))
    return seen


def _score_apart(
    pipe: Connection_,
    log: Log,
    documents: list[tuple[dict[str, Any], int]],
    share: tuple[int, int],
    names: dict[str, Known],
    reversed_later: set[str],
) -> None:
    """A worker process: its share of the participants scored by every document, over the log it reads
    itself (nothing is pickled an event); progress, then each scenario's part (or the error), sent back."""
    try:
        scenarios = [Scenario(CompiledProgram(ProgramDocument.model_validate(d), v), log.end) for d, v in documents]
        with fewer_collections():
            seen = _feed(
                _read(log, share), scenarios, names, reversed_later, lambda n: pipe.send(("progress", n)), log.chunk
            )
        pipe.send(("done", (seen, [s.part() for s in scenarios])))
    except Exception as exc:  # the parent raises it: a worker must never hang the simulation
        pipe.send(("failed", f"{exc.__class__.__name__}: {exc}"))


MAX_WORKERS = 8


def workers() -> int:
    """How many processes share the participants: one a CPU, at least two, at most MAX_WORKERS."""
    return max(2, min(MAX_WORKERS, os.cpu_count() or 1))


def _in_parallel(
    log: Log,
    documents: list[tuple[dict[str, Any], int]],
    names: dict[str, Known],
    reversed_later: set[str],
    progress: Progress | None,
    count: int,
) -> tuple[int, list[list[Part]]]:
    """The participants shared among ``count`` processes (the engine is CPU-bound: one core each; scoring
    never crosses participants), each scoring its share by every document and reading its share of the log
    in the parent's snapshot. Returns the events seen and, per worker, a part per document."""
    context = multiprocessing.get_context("spawn")  # never fork a threaded server
    pipes, processes = [], []
    try:
        for k in range(count):
            mine, theirs = context.Pipe(duplex=False)
            process = context.Process(
                target=_score_apart, args=(theirs, log, documents, (k, count), names, reversed_later)
            )
            process.start()
            theirs.close()  # the worker's end is the worker's: if it dies, a receive here ends instead of waiting
            pipes.append(mine)
            processes.append(process)
        done: dict[int, tuple[int, list[Part]]] = {}
        while len(done) < len(pipes):
            for ready in wait([p for i, p in enumerate(pipes) if i not in done]):
                assert isinstance(ready, Connection_)
                i = pipes.index(ready)
                try:
                    kind, body = ready.recv()
                except EOFError:
                    raise RuntimeError("a simulation worker died") from None
                if kind == "failed":
                    raise RuntimeError(f"a simulation worker failed: {body}")
                if kind == "done":
                    done[i] = body
                elif progress:
                    progress(body)
        return sum(seen for seen, _ in done.values()), [done[i][1] for i in range(count)]
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()


def _log(connection: Connection, program_id: int, start: dt.datetime, end: dt.datetime) -> Log | None:
    """The log as this transaction sees it, for workers to read; None when they cannot (an in-memory
    SQLite database is this process's alone)."""
    url = connection.engine.url
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        return None
    e = t.events.c
    upto = connection.execute(
        select(func.max(e.seq)).where(e.program_id == program_id, e.occurred_at >= start, e.occurred_at < end)
    ).scalar_one()
    snapshot = None
    if connection.dialect.name == "postgresql":
        snapshot = connection.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
    return Log(url.render_as_string(hide_password=False), program_id, start, end, upto or 0, snapshot, CHUNK)


def simulate(
    connection: Connection,
    program: programs.ProgramRecord,
    current: CompiledProgram,
    draft: ProgramDocument,
    start: dt.datetime,
    end: dt.datetime,
    progress: Progress | None = None,
    *,
    parallel: bool = False,
) -> dict[str, Any]:
    """The draft and the document in force scored over the events of [start, end), and what changes.
    ``parallel``: the participants shared among worker processes (:func:`workers`), each scoring its share by
    both documents. Off by default: it pays on idle cores only (bench/simulate.py)."""
    window(start, end)
    if draft.program != program.key:
        raise Invalid("another program", errors=[FieldError("document.program", f"must be {program.key!r}")])
    rows_of = participant_rows(connection, program.id)
    segments, targets = participants.stored_inputs(connection, program.id)
    names = {k: Known(r.name, r.attributes, segments.get(k, ()), targets.get(k, {})) for k, r in rows_of.items()}
    reversed_later = _reversed_in(connection, program.id, start, end)
    members = _team_members(connection, program.id)
    scenarios = [Scenario(current, end), Scenario(CompiledProgram(draft, program.version + 1), end)]
    log = _log(connection, program.id, start, end) if parallel else None
    if log is not None:
        documents = [
            (programs.document_of(connection, program), program.version),
            (draft.model_dump(mode="json", by_alias=True, exclude_none=True), program.version + 1),
        ]
        seen, shares = _in_parallel(log, documents, names, reversed_later, progress, workers())
        for parts in shares:
            for scenario, part in zip(scenarios, parts, strict=True):
                scenario.merge(part)
    else:
        rows = stored_events(connection, program.id, start=start, end=end)
        with fewer_collections():
            seen = _feed(rows, scenarios, names, reversed_later, progress, CHUNK)
    for s in scenarios:
        s.close(start, members)
    now, then = (s.report() for s in scenarios)
    return {
        "program": program.key,
        "version": program.version,
        "window": {"from": start.isoformat(), "to": end.isoformat(), "events": seen},
        "current": now,
        "draft": then,
        "changes": changes(now, then, current.doc, {k: r.name for k, r in names.items()}),
    }


def _signed(n: float) -> str:
    return f"{n:+,.0f}" if float(n).is_integer() else f"{n:+,.2f}"


def changes(
    now: dict[str, Any], then: dict[str, Any], doc: ProgramDocument, names: Mapping[str, str | None]
) -> list[dict[str, Any]]:
    """What the draft changes, in plain words, biggest first within each kind (at most MAX_CHANGES)."""
    label = {c.key: c.name for c in doc.currencies}
    out: list[dict[str, Any]] = []

    def add(kind: str, key: str, before: float, after: float, text: str) -> None:
        out.append({"kind": kind, "key": key, "before": before, "after": after, "text": text})

    for c in sorted(set(now["totals"]) | set(then["totals"])):
        a, b = now["totals"].get(c, 0), then["totals"].get(c, 0)
        if a != b:
            add("total", c, a, b, f"{label.get(c, c)} in all: {a:,} → {b:,} ({_signed(b - a)})")
    for c in sorted(set(now["liability"]) | set(then["liability"])):
        a = now["liability"].get(c, {}).get("outstanding", 0)
        b = then["liability"].get(c, {}).get("outstanding", 0)
        if a != b:
            add("liability", c, a, b, f"{label.get(c, c)} outstanding: {a:,} → {b:,}")
    count = {(x["badge"], x["grade"]): x["holders"] for x in now["badges"]}
    for x in then["badges"]:
        before = count.pop((x["badge"], x["grade"]), 0)
        if before != x["holders"]:
            add(
                "badge",
                f"{x['badge']}:{x['grade']}",
                before,
                x["holders"],
                f"{x['badge']} {x['grade']}: {before} → {x['holders']} holders",
            )
    for (badge, grade), before in count.items():
        if before:
            add("badge", f"{badge}:{grade}", before, 0, f"{badge} {grade}: {before} → 0 holders (gone from the draft)")
    done = {x["challenge"]: x["completions"] for x in now["challenges"]}
    for x in then["challenges"]:
        before = done.pop(x["challenge"], 0)
        if before != x["completions"]:
            add(
                "challenge",
                x["challenge"],
                before,
                x["completions"],
                f"{x['challenge']}: {before} → {x['completions']} completions",
            )
    leaders = {b["key"]: b["entries"][0]["id"] if b["entries"] else None for b in now["leaderboards"]}
    for b in then["leaderboards"]:
        first = b["entries"][0]["id"] if b["entries"] else None
        if b["key"] in leaders and leaders[b["key"]] != first:
            add("leaderboard", b["key"], 0, 0, f"{b['key']}: first {leaders[b['key']]} → {first}")
    deltas = []
    for pid in set(now["participants"]) | set(then["participants"]):
        a, b = now["participants"].get(pid, {}), then["participants"].get(pid, {})
        for c in set(a) | set(b):
            if a.get(c, 0) != b.get(c, 0):
                deltas.append((-abs(b.get(c, 0) - a.get(c, 0)), pid, c, a.get(c, 0), b.get(c, 0)))
    for _, pid, c, a, b in sorted(deltas):
        add("participant", pid, a, b, f"{names.get(pid) or pid}: {_signed(b - a)} {label.get(c, c)}")
    return out[:MAX_CHANGES]


def run(
    runtime: Runtime,
    program_key: str,
    draft: ProgramDocument,
    start: dt.datetime,
    end: dt.datetime,
    progress: Progress | None = None,
    *,
    parallel: bool = False,
) -> dict[str, Any]:
    """The simulation in one read-only transaction: one snapshot of the log, the participants and the
    reversals (the workers read a copy of it: PostgreSQL's exported snapshot, SQLite's last event seen)."""
    with runtime.db.read() as connection:
        record = programs.find(connection, program_key)
        current = runtime.programs.compiled(connection, record)
        return simulate(connection, record, current, draft, start, end, progress, parallel=parallel)


def count_events(runtime: Runtime, program_key: str, start: dt.datetime, end: dt.datetime) -> int:
    """How many events the window holds (the progress bar's total)."""
    with runtime.db.read() as connection:
        e = t.events.c
        program_id = programs.find(connection, program_key).id
        query = select(func.count()).where(e.program_id == program_id, e.occurred_at >= start, e.occurred_at < end)
        return int(connection.execute(query).scalar_one())
