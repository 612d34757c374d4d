"""Leaderboards at scale (docs/api.md): plain boards are answered from ``rank_rows`` and the bucket
counts of ``rank_buckets`` (migration 0004, kept by triggers); here that equals the naive ranking.

Every test runs on SQLite and on PostgreSQL. Hypothesis runs many examples in one database per
test, so each example applies the acme-sales document under a program key of its own.
The naive ranking is the definition: sort by value descending, then internal id (order of first
appearance); a row's rank is 1 + the rows with a greater value (ties share it: 1, 2, 2, 4).
"""

from __future__ import annotations

import importlib.util
import math
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, delete, select, text

from levelup.errors import NotFound
from levelup.events.ingest import ingest
from levelup.events.replay import replay
from levelup.leaderboards import normalised, ranks
from levelup.leaderboards.service import leaderboard, standing
from levelup.metrics.periods import grain_of
from levelup.participants import repository as participants
from levelup.programs import service as programs
from levelup.programs.validation import load_document
from levelup.runtime import Runtime
from levelup.storage import tables as t
from levelup.storage.db import MIGRATIONS, Database
from levelup.storage.sql import add_checked, upsert_add
from tests.conftest import EXAMPLES, ROOT

ACME_TEXT = (EXAMPLES / "acme-sales.yaml").read_text()
DB_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# (board key, source, metric or currency, period written, subject kind)
BOARDS = {
    "revenue-month": ("p", "revenue", "2026-11"),
    "team-revenue": ("t", "revenue", "2026-Q4"),
    "xp-all": ("e", "xp", "all"),
}
NOISE_PERIODS = ("2026-11-20", "2026-W47", "2026", "all")  # kept in metric_totals, on no plain board


def new_program(runtime: Runtime, document: str = ACME_TEXT) -> tuple[str, programs.ProgramRecord]:
    key = f"acme-{uuid.uuid4().hex[:12]}"
    text_ = re.sub(r"(?m)^program: acme-sales$", f"program: {key}", document)
    with runtime.db.write() as connection:
        record, _ = programs.apply(connection, load_document(text_, program=key), actor="scale-test")
    return key, record


# ---------------------------------------------------------------------------- the naive ranking


@dataclass
class Model:
    """What a board holds: subject (internal id) → value, and the external ids."""

    values: dict[int, float]
    names: dict[int, str]

    def ranked(self) -> list[tuple[int, str, float]]:
        ordered = sorted(self.values.items(), key=lambda item: (-item[1], item[0]))
        return [(1 + sum(v > value for v in self.values.values()), self.names[s], value) for s, value in ordered]


def shown(body: dict[str, Any]) -> list[tuple[int, str, float]]:
    return [(e["rank"], e["id"], float(e["value"])) for e in body["entries"]]


def close(expected: list[tuple[int, str, float]]) -> list[tuple[int, str, float]]:
    """Values as the response rounds them (six decimals for fractions)."""
    return [(r, i, float(int(v)) if float(v).is_integer() else round(v, 6)) for r, i, v in expected]


@contextmanager
def deep_pages_from(offset: int) -> Iterator[None]:
    """Make pages from ``offset`` on find their bucket from the counts (the path deep pages take)."""
    saved = ranks.DEEP_OFFSET
    ranks.DEEP_OFFSET = offset
    try:
        yield
    finally:
        ranks.DEEP_OFFSET = saved


# ---------------------------------------------------------------------------- writes, as the write paths do them


def add_metric(connection: Connection, program_id: int, kind: str, period: str, subject: int, delta: float) -> None:
    """What ingestion does: an upsert adding the delta (with the same shape for a period on no board)."""
    rows = [
        {"program_id": program_id, "metric": "revenue", "period": p, "subject_kind": kind, "subject_id": subject}
        | {"value": delta}
        for p in (period, *NOISE_PERIODS)
    ]
    upsert_add(
        connection,
        t.metric_totals,
        rows,
        keys=["program_id", "metric", "period", "subject_kind", "subject_id"],
        add=["value"],
    )


def add_earned(connection: Connection, program_id: int, subject: int, delta: int) -> None:
    """What ledger.move_positions does: a zero row if none, then an UPDATE adding the deltas."""
    row = {"participant_id": subject, "currency": "xp", "program_id": program_id}
    add_checked(
        connection,
        t.positions,
        [row | {"available": 0, "arrears": 0, "earned": delta}],
        keys=["participant_id", "currency"],
        add=["available", "arrears", "earned"],
    )


def remove(connection: Connection, program_id: int, source: str, period: str, subject: int) -> None:
    """What replay's rebuild does to every row of a program (here one row at a time)."""
    if source == "e":
        p = t.positions.c
        connection.execute(delete(t.positions).where(p.participant_id == subject, p.currency == "xp"))
        return
    m = t.metric_totals.c
    connection.execute(
        delete(t.metric_totals).where(
            m.program_id == program_id, m.subject_kind == source, m.period == period, m.subject_id == subject
        )
    )


def board_rows_expected(connection: Connection, program_id: int) -> set[tuple[Any, ...]]:
    """rank_rows as the definition says: every source row of a registered board (grain by Python)."""
    b = t.rank_boards.c
    boards = {
        (r.source, r.key, r.grain) for r in connection.execute(select(t.rank_boards).where(b.program_id == program_id))
    }
    out = set()
    m = t.metric_totals.c
    for r in connection.execute(
        select(m.subject_kind, m.metric, m.period, m.subject_id, m.value).where(m.program_id == program_id)
    ):
        try:
            grain = grain_of(r.period)
        except ValueError:
            continue
        if (r.subject_kind, r.metric, grain) in boards:
            out.add((r.subject_kind, r.metric, r.period, r.subject_id, float(r.value)))
    p = t.positions.c
    for r in connection.execute(select(p.currency, p.participant_id, p.earned).where(p.program_id == program_id)):
        if ("e", r.currency, "all") in boards:
            out.add(("e", r.currency, "all", r.participant_id, float(r.earned)))
    kept = normalised.expected(connection, program_id).items()  # normalised boards: value ÷ handicap
    return out | {(normalised.SOURCE, key, period, subject, value) for (key, period, subject), value in kept}


def board_rows_kept(connection: Connection, program_id: int) -> set[tuple[Any, ...]]:
    c = t.rank_rows.c
    rows = connection.execute(select(t.rank_rows).where(c.program_id == program_id))
    return {(r.source, r.key, r.period, r.subject_id, float(r.value)) for r in rows}


def assert_in_step(connection: Connection, program_id: int) -> None:
    """The trigger-kept copies and counts equal a recount from the source rows."""
    assert board_rows_kept(connection, program_id) == board_rows_expected(connection, program_id)
    assert ranks.counts(connection, program_id) == ranks.recount(connection, program_id)


# ---------------------------------------------------------------------------- the property


deltas = st.one_of(
    st.integers(-3, 6).map(float),  # small values: ties
    st.integers(1_000, 1_004).map(float),  # distinct values inside one bucket (0.39% wide)
    st.sampled_from([0.0, -0.5, 0.5, 2.5, 1e-3, 99.99, 12_000.0, -12_000.0, 1e9, 3.0e15]),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
)


@DB_SETTINGS
@given(data=st.data())
def test_fast_path_equals_the_naive_ranking(runtime: Runtime, data: st.DataObject) -> None:
    """Random writes (new rows, increments, reversals to zero or below, deletions), then every page,
    deep page and neighbourhood of the board equals the naive ranking, and the counts a recount."""
    _, record = new_program(runtime)
    board_key = data.draw(st.sampled_from(sorted(BOARDS)), label="board")
    source, _, period = BOARDS[board_key]
    people = data.draw(st.permutations([f"p{i:02d}" for i in range(data.draw(st.integers(1, 9)))]), label="created")
    ops = data.draw(
        st.lists(st.tuples(st.integers(0, len(people) - 1), st.none() | deltas), min_size=1, max_size=30), label="ops"
    )
    model = Model({}, {})
    with runtime.db.write() as connection:
        if source == "t":
            ids = {}
            for name in people:  # one at a time: internal ids follow this order
                ids.update(participants.ensure_teams(connection, record.id, [name]))
        else:
            ids = {name: participants.ensure(connection, record.id, [name])[0][name] for name in people}
        model.names = {i: name for name, i in ids.items()}
        for index, delta in ops:
            subject = ids[people[index]]
            if delta is None:
                remove(connection, record.id, source, period, subject)
                model.values.pop(subject, None)
            elif source == "e":
                add_earned(connection, record.id, subject, int(delta))
                model.values[subject] = model.values.get(subject, 0.0) + int(delta)
            else:
                add_metric(connection, record.id, source, period, subject, delta)
                model.values[subject] = model.values.get(subject, 0.0) + delta
    expected = close(model.ranked())

    def board(**params: Any) -> dict[str, Any]:
        with runtime.db.read() as connection:
            compiled = runtime.programs.compiled(connection, record)
            body = leaderboard(connection, record, compiled, board_key, period=period, **params)
        assert body["total"] == len(expected)
        return body

    n = len(expected)
    assert shown(board(limit=max(n, 1))) == expected
    offset = data.draw(st.integers(0, n + 1), label="offset")
    limit = data.draw(st.integers(1, n + 2), label="limit")
    assert shown(board(limit=limit, offset=offset)) == expected[offset : offset + limit]
    with deep_pages_from(0):
        assert shown(board(limit=limit, offset=offset)) == expected[offset : offset + limit]
        assert shown(board(limit=1, offset=max(n - 1, 0))) == expected[n - 1 :]
    for position, (rank, name, value) in enumerate(expected):
        wide = data.draw(st.integers(1, 3), label="around limit")
        around = board(around=name, limit=wide)
        assert shown(around) == expected[max(0, position - wide) : position + wide + 1], name
        with runtime.db.read() as connection:
            compiled = runtime.programs.compiled(connection, record)
            mine = standing(connection, record, compiled, board_key, name, period=period)
        assert (mine["rank"], mine["id"], float(mine["value"]), mine["total"]) == (rank, name, value, n)
    gone = [name for name in people if ids[name] not in model.values]
    with runtime.db.read() as connection:
        compiled = runtime.programs.compiled(connection, record)
        for name in gone:
            with pytest.raises(NotFound):
                leaderboard(connection, record, compiled, board_key, period=period, around=name)
        assert_in_step(connection, record.id)


# ---------------------------------------------------------------------------- every write path keeps the counts


def deals(prefix: str, n: int) -> list[dict[str, Any]]:
    """Deals over November and December for five reps in two teams, with reversals of some."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        out.append(
            {
                "id": f"{prefix}{i}",
                "type": "deal.won",
                "participant": f"rep-{(i * 7) % 5}",
                "occurred_at": f"2026-{11 + i % 2}-{1 + i % 28:02d}T15:00:00Z",
                "data": {"amount": 500 + (i * 1_237) % 9_000},
            }
        )
        if i % 4 == 3:
            out.append(
                {
                    "id": f"{prefix}undo-{i}",
                    "type": "deal.reopened",
                    "participant": f"rep-{(i * 7) % 5}",
                    "occurred_at": f"2026-{11 + i % 2}-{1 + i % 28:02d}T16:00:00Z",
                    "data": {},
                    "reverses": f"{prefix}{i}",
                }
            )
    return out


def snapshot(runtime: Runtime, record: programs.ProgramRecord) -> list[dict[str, Any]]:
    with runtime.db.read() as connection:
        compiled = runtime.programs.compiled(connection, record)
        return [
            leaderboard(connection, record, compiled, k, period=p, limit=50)
            for k, p in [
                ("revenue-month", "2026-11"),
                ("revenue-month", "2026-12"),
                ("team-revenue", "2026-Q4"),
                ("xp-all", "all"),
            ]
        ]


def register_teams(runtime: Runtime, record: programs.ProgramRecord) -> None:
    with runtime.db.write() as connection:
        for i in range(5):
            participants.set_profile(
                connection, record.id, f"rep-{i}", name=f"Rep {i}", teams=["east" if i % 2 else "west"], attributes=None
            )


def test_ingestion_and_replay_keep_rows_and_counts_in_step(runtime: Runtime) -> None:
    """Live ingestion (with reversals), then replay's rebuild (delete everything, write it anew):
    the copies and counts equal a recount each time, and the boards read the same before and after."""
    key, record = new_program(runtime)
    register_teams(runtime, record)
    for start in range(0, 60, 20):
        outcomes = ingest(runtime, key, deals(f"d{start}-", 20))
        assert {o.status for o in outcomes} == {"accepted"}
    with runtime.db.read() as connection:
        assert_in_step(connection, record.id)
        assert {
            (b.source, b.key, b.grain)
            for b in connection.execute(select(t.rank_boards).where(t.rank_boards.c.program_id == record.id))
        } == {
            ("p", "revenue", "month"),
            ("t", "revenue", "quarter"),
            ("e", "xp", "all"),
            ("n", "revenue/quota", "month"),
        }  # quota-month is normalized: kept as revenue ÷ quota (leaderboards.normalised)
        assert board_rows_kept(connection, record.id)
    before = snapshot(runtime, record)
    assert before[0]["total"] == 5 and before[2]["total"] == 2
    report = replay(runtime, key, rebuild=True)
    assert report.ok, report.mismatches
    with runtime.db.read() as connection:
        assert_in_step(connection, record.id)
    assert snapshot(runtime, record) == before
    with runtime.db.write() as connection:  # the repair: copies and counts redone from the source rows
        connection.execute(text("UPDATE rank_buckets SET n = n + 7 WHERE program_id = :p"), {"p": record.id})
        ranks.rebuild(connection, record.id)
    with runtime.db.read() as connection:
        assert_in_step(connection, record.id)
    assert snapshot(runtime, record) == before


def test_a_board_added_later_is_filled_from_the_rows_already_there(runtime: Runtime) -> None:
    """Apply the program without leaderboards, ingest, then add them: the new version registers the
    boards and copies the stored rows (the triggers count them); ranks match the naive ranking."""
    bare = re.sub(r"(?ms)^leaderboards:\n(  - .*\n)+", "", ACME_TEXT)
    assert "leaderboards:" not in bare
    key, record = new_program(runtime, bare)
    register_teams(runtime, record)
    ingest(runtime, key, deals("late-", 30))
    with runtime.db.read() as connection:
        assert not board_rows_kept(connection, record.id)
    with runtime.db.write() as connection:
        text_ = re.sub(r"(?m)^program: acme-sales$", f"program: {key}", ACME_TEXT)
        record, created = programs.apply(connection, load_document(text_, program=key), actor="scale-test")
        assert created
    with runtime.db.read() as connection:
        assert_in_step(connection, record.id)
        m = t.metric_totals.c
        values = {
            s: v
            for s, v in connection.execute(
                select(m.subject_id, m.value).where(
                    m.program_id == record.id, m.metric == "revenue", m.period == "2026-11", m.subject_kind == "p"
                )
            )
        }
        names = dict(
            connection.execute(
                select(t.participants.c.id, t.participants.c.external_id).where(
                    t.participants.c.program_id == record.id
                )
            ).all()
        )
        body = leaderboard(
            connection, record, runtime.programs.compiled(connection, record), "revenue-month", period="2026-11"
        )
    assert shown(body) == close(Model(values, names).ranked())


def test_ties_are_ordered_by_first_appearance_on_fast_and_slow_paths(runtime: Runtime) -> None:
    """Inside a tie the order is the internal id, on the fast path (plain board) as on the slow one
    (scoped, normalized): zed was seen before amy, so zed comes first though amy sorts first."""
    key, record = new_program(runtime)
    with runtime.db.write() as connection:
        for name in ("zed", "amy"):
            participants.set_profile(connection, record.id, name, name=None, teams=["east"], attributes={"quota": 10})
    ingest(
        runtime,
        key,
        [
            {
                "id": f"tie-{name}",
                "type": "deal.won",
                "participant": name,
                "occurred_at": "2026-11-05T15:00:00Z",
                "data": {"amount": 700},
            }
            for name in ("amy", "zed")
        ],
    )
    with runtime.db.read() as connection:
        compiled = runtime.programs.compiled(connection, record)
        fast = leaderboard(connection, record, compiled, "revenue-month", period="2026-11")
        scoped = leaderboard(connection, record, compiled, "revenue-month", period="2026-11", scope="team:east")
        normalized = leaderboard(connection, record, compiled, "quota-month", period="2026-11")
        slow_standing = standing(connection, record, compiled, "quota-month", "amy", period="2026-11")
        fast_standing = standing(connection, record, compiled, "revenue-month", "amy", period="2026-11")
    assert shown(fast) == shown(scoped) == [(1, "zed", 700.0), (1, "amy", 700.0)]
    assert shown(normalized) == [(1, "zed", 70.0), (1, "amy", 70.0)]
    assert (slow_standing["rank"], slow_standing["value"], slow_standing["total"]) == (1, 70, 2)
    assert (fast_standing["rank"], fast_standing["value"], fast_standing["total"]) == (1, 700, 2)


def test_concurrent_writers_of_one_program_do_not_deadlock(runtime: Runtime) -> None:
    """Four writers at once, each for reps of its own in the same two teams: every batch goes in
    (PostgreSQL: the program's advisory lock orders the shared team and count rows), and the
    counts equal a recount after."""
    key, record = new_program(runtime)
    with runtime.db.write() as connection:
        for w in range(4):
            for i in range(6):
                participants.set_profile(
                    connection, record.id, f"w{w}-{i}", name=None, teams=["east", "west"][: 1 + i % 2], attributes=None
                )
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def work(w: int) -> None:
        try:
            barrier.wait()
            for b in range(4):
                batch = [
                    {
                        "id": f"c{w}-{b}-{n}",
                        "type": "deal.won",
                        "participant": f"w{w}-{(n * 5 + b) % 6}",
                        "occurred_at": f"2026-11-{1 + (n + w) % 28:02d}T15:00:00Z",
                        "data": {"amount": 100 + 37 * n + w},
                    }
                    for n in range(30)
                ]
                assert {o.status for o in ingest(runtime, key, batch)} == {"accepted"}
        except BaseException as exc:  # collected and re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors[0]
    with runtime.db.read() as connection:
        assert_in_step(connection, record.id)
        assert ranks.total(connection, ranks.Board(record.id, "p", "revenue", "2026-11")) == 24


def test_the_migration_registers_and_fills_programs_stored_before_it(
    empty_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database at revision 0003 with a program and its rows: upgrading to 0004 registers the
    program's plain boards and copies their rows, counted; later writes are kept as usual."""
    monkeypatch.setattr(normalised, "register", lambda *_: None)  # no rank_boards at 0003: nothing was kept
    database = Database(empty_db_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with database.engine.connect() as connection:
            connection.execution_options(levelup_write=True)
            config.attributes["connection"] = connection
            command.upgrade(config, "0003")
            connection.commit()
        with database.write() as connection:
            key = "acme-sales"
            record, _ = programs.apply(connection, load_document(ACME_TEXT, program=key), actor="scale-test")
            ids = [participants.ensure(connection, record.id, [f"r{i}"])[0][f"r{i}"] for i in range(4)]
            for i, subject in enumerate(ids):
                add_metric(connection, record.id, "p", "2026-11", subject, 100.0 * (i % 3))
                connection.execute(
                    text(
                        "INSERT INTO positions (participant_id, currency, program_id, available, arrears, earned) "
                        "VALUES (:s, 'xp', :p, 0, 0, :e)"
                    ),
                    {"s": subject, "p": record.id, "e": 10 * i},
                )
        with database.engine.connect() as connection:
            connection.execution_options(levelup_write=True)
            config.attributes["connection"] = connection
            command.upgrade(config, "0004")
            connection.commit()
        with database.write() as connection:
            add_metric(connection, record.id, "p", "2026-11", ids[0], 50.0)
        with database.read() as connection:
            assert_in_step(connection, record.id)
            month = ranks.Board(record.id, "p", "revenue", "2026-11")
            assert [(s, v) for s, v in ranks.page(connection, month, 0, 10)] == [
                (ids[2], 200.0),
                (ids[1], 100.0),
                (ids[0], 50.0),
                (ids[3], 0.0),
            ]
            assert ranks.total(connection, ranks.Board(record.id, "e", "xp", "all")) == 4
    finally:
        database.dispose()


# ---------------------------------------------------------------------------- the bucket function


def migration_module() -> Any:
    path = ROOT / "src" / "levelup" / "storage" / "migrations" / "versions" / "0004_rank_buckets.py"
    spec = importlib.util.spec_from_file_location("migration_0004", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_service_buckets_values_as_the_triggers_do() -> None:
    migration = migration_module()
    assert ranks.bucket_sql("x") == migration.bucket_sql("x")
    assert ranks.GRAIN_OF_PERIOD.format(p="x") == migration.grain_sql("x")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([0.0, -0.0, 1.0, math.e, 255.0, 256.0, 5e-324])
)
def test_bucket_bounds_hold_for_any_value(runtime: Runtime, value: float) -> None:
    """What rank_of relies on: Python's bucket of a value is at or above the database's, and the
    ceiling of the database's bucket is at or above the value; buckets follow values."""
    with runtime.db.read() as connection:
        stored = connection.execute(text(f"SELECT {ranks.bucket_sql(':v')}"), {"v": value}).scalar_one()
    assert ranks.bucket_at_or_above(value) >= stored
    assert value <= ranks.bucket_ceiling(stored)


def test_neighbourhoods_cut_through_ties_in_board_order(runtime: Runtime) -> None:
    """Every participant, every width: the rows around it are the naive ranking's, when the width
    cuts a tie above it, its own tie, or a tie below it."""
    _, record = new_program(runtime)
    values = [5.0, 3.0, 5.0, 1.0, 3.0, 5.0, 3.0, 1.0, 8.0, 1.0]
    with runtime.db.write() as connection:
        ids = {f"u{i}": participants.ensure(connection, record.id, [f"u{i}"])[0][f"u{i}"] for i in range(len(values))}
        for i, value in enumerate(values):
            add_metric(connection, record.id, "p", "2026-11", ids[f"u{i}"], value)
    expected = close(Model({ids[f"u{i}"]: v for i, v in enumerate(values)}, {i: n for n, i in ids.items()}).ranked())
    with runtime.db.read() as connection:
        compiled = runtime.programs.compiled(connection, record)
        for position, (_, name, _) in enumerate(expected):
            for wide in range(1, 5):
                body = leaderboard(
                    connection, record, compiled, "revenue-month", period="2026-11", around=name, limit=wide
                )
                assert shown(body) == expected[max(0, position - wide) : position + wide + 1], (name, wide)


def test_rank_of_values_at_bucket_boundaries(runtime: Runtime) -> None:
    """Values a hair above and below bucket boundaries (where the database's ln() decides): the
    rank of each equals 1 + the values above it, counted naively."""
    _, record = new_program(runtime)
    values = []
    for k in (1, 255, 256, 1_000, 1_771, 2_345):  # boundaries exp(k / 256), and their negatives
        edge = math.exp(k / ranks.PER_E)
        for v in (
            edge,
            math.nextafter(edge, 0),
            math.nextafter(edge, math.inf),
            edge * (1 + 5e-10),
            edge * (1 - 5e-10),
        ):
            values += [v, -v]
    with runtime.db.write() as connection:
        for i, value in enumerate(values):
            upsert_add(
                connection,
                t.metric_totals,
                [
                    {"program_id": record.id, "metric": "revenue", "period": "2026-11", "subject_kind": "p"}
                    | {"subject_id": i + 1, "value": value}
                ],
                keys=["program_id", "metric", "period", "subject_kind", "subject_id"],
                add=["value"],
            )
    board = ranks.Board(record.id, "p", "revenue", "2026-11")
    with runtime.db.read() as connection:
        assert ranks.total(connection, board) == len(values)
        for value in values:
            assert ranks.rank_of(connection, board, value) == 1 + sum(v > value for v in values), value
        assert_in_step(connection, record.id)


def test_ranks_of_a_run_ask_the_counts_at_most_twice() -> None:
    """Neighbourhoods: the first two tie groups take their rank from the counts, later groups follow
    from the run; pages at a known offset need a count for their first row only (none at 0)."""
    run = [(1, 9.0), (2, 8.0), (3, 8.0), (4, 7.0), (5, 5.0)]
    truth = {9.0: 4, 8.0: 7, 7.0: 9, 5.0: 10}
    assert ranks.needed(run) == [9.0, 8.0]
    assert ranks.ranks(run, {v: truth[v] for v in ranks.needed(run)}) == [4, 7, 7, 9, 10]
    assert ranks.needed(run, offset=3) == [9.0]
    assert ranks.ranks(run, {9.0: 4}, offset=3) == [4, 5, 5, 7, 8]
    assert ranks.needed(run, offset=0) == []
    assert ranks.ranks(run, {}, offset=0) == [1, 2, 2, 4, 5]
    assert ranks.needed([]) == [] and ranks.ranks([], {}) == []
