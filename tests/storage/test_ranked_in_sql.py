"""Boards the database ranks (normalised, rolling, a currency over a window) answer exactly as the Python
ranking of every row does: the same handicaps left off (text, a boolean, zero, negative, missing), the same
ties and tie order, every page, every neighbourhood — on SQLite and PostgreSQL. A normalised board read from
its kept quotients (``leaderboards.normalised``) answers the same, and keeps answering the same as quotas,
deals, erasures and replays change them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient

from levelup.events import replay
from levelup.leaderboards import normalised, ranks, service
from levelup.programs import service as programs
from levelup.runtime import Runtime
from levelup.storage import tables as t
from levelup.storage.db import MIGRATIONS
from tests.conftest import event

P = "/api/v1/programs/acme-sales"
QUOTAS: dict[str, Any] = {
    "a": 1000,
    "b": 1000.0,
    "c": "500",  # text: left off
    "d": True,  # a boolean: left off
    "e": -5,
    "f": 0,
    "g": None,  # no quota at all
    "h": 250,  # 250 / 250 = 1.0, as a's 1,000 / 1,000: a tie
    "i": 0.5,
    "j": 2000,
}
AMOUNTS = {"a": 1000, "b": 500, "c": 700, "d": 900, "e": 100, "f": 50, "g": 10, "h": 250, "i": 1, "j": 2000}


def both(*board: Any, **paging: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A board's page ranked by the database, and by Python over every row."""
    connection, record, compiled, leaderboard, period, today = board
    values = service._values(record, compiled, leaderboard, period, today)
    ranked = service._in_sql(connection, record.id, leaderboard, values, "the board")
    in_sql = ranked.page(connection, **paging)
    return in_sql, service._slow(*board, scope=None, **paging)


def test_the_database_ranks_as_python_does(acme: TestClient, admin: dict[str, str], runtime: Runtime) -> None:
    for who, quota in QUOTAS.items():
        attributes = {} if quota is None else {"quota": quota}
        acme.put(f"{P}/participants/{who}", json={"attributes": attributes}, headers=admin)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    deals = [
        event(f"w-{who}", participant=who, data={"amount": a}, occurred_at=now.isoformat())
        for who, a in AMOUNTS.items()
    ]
    assert acme.post(f"{P}/events", json={"events": deals}, headers=admin).status_code == 200
    with runtime.db.read() as connection:
        record = programs.find(connection, "acme-sales")
        compiled = runtime.programs.compiled(connection, record)
        today = service._today(compiled, None)
        for key in ("quota-month", "xp-all"):
            board = service._board(record, compiled, key)
            period = service._period_for(board, None, today)

            whole, expected = both(connection, record, compiled, board, period, today, limit=100, offset=0, around=None)
            assert whole == expected and whole["total"] == (5 if key == "quota-month" else 10), key
            for limit in (1, 2, 3):
                for offset in range(len(expected["entries"]) + 1):
                    in_sql, in_python = both(
                        connection, record, compiled, board, period, today, limit=limit, offset=offset, around=None
                    )
                    assert in_sql == in_python, (key, limit, offset)
                for entry in expected["entries"]:
                    in_sql, in_python = both(
                        connection, record, compiled, board, period, today, limit=limit, offset=0, around=entry["id"]
                    )
                    assert in_sql == in_python, (key, limit, entry["id"])
    quota = acme.get(f"{P}/leaderboards/quota-month", headers=admin).json()
    assert [(e["rank"], e["id"], e["value"]) for e in quota["entries"]] == [
        (1, "i", 2.0),
        (2, "a", 1.0),
        (2, "h", 1.0),
        (2, "j", 1.0),
        (5, "b", 0.5),
    ]
    assert quota["total"] == 5  # c (text), d (a boolean), e (negative), f (zero), g (none): left off


def _projected_as_python(runtime: Runtime, key: str = "quota-month") -> int:
    """Every page and neighbourhood of a normalised board, read from its kept quotients, against Python; its total."""
    with runtime.db.read() as connection:
        record = programs.find(connection, "acme-sales")
        compiled = runtime.programs.compiled(connection, record)
        today = service._today(compiled, None)
        board = service._board(record, compiled, key)
        period = service._period_for(board, None, today)
        plain = service._plain_board(connection, record, compiled, board, period, today)
        assert plain is not None and plain.source == normalised.SOURCE  # read from the projection, not ranked
        assert normalised.expected(connection, record.id) == normalised.stored(connection, record.id)

        def pair(limit: int, offset: int = 0, around: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
            """The page read from the kept quotients, and ranked in Python."""
            kept = service.leaderboard(connection, record, compiled, key, limit=limit, offset=offset, around=around)
            ranked = service._slow(
                connection,
                record,
                compiled,
                board,
                period,
                today,
                scope=None,
                limit=limit,
                offset=offset,
                around=around,
            )
            return {k: kept[k] for k in ("total", "entries")}, ranked

        whole = pair(100)[1]
        for limit in (1, 2, 3, 100):
            for offset in range(len(whole["entries"]) + 1):
                kept, ranked = pair(limit, offset)
                assert kept == ranked, (limit, offset)
            for entry in whole["entries"]:
                kept, ranked = pair(limit, around=entry["id"])
                assert kept == ranked, (limit, entry["id"])
                mine = service.standing(connection, record, compiled, key, entry["id"])
                assert (mine["rank"], mine["value"], mine["total"]) == (entry["rank"], entry["value"], whole["total"])
        return int(whole["total"])


def test_kept_quotients_answer_as_python_does(acme: TestClient, admin: dict[str, str], runtime: Runtime) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    deals = [
        event(f"w-{who}", participant=who, data={"amount": a}, occurred_at=now.isoformat())
        for who, a in AMOUNTS.items()
    ]
    assert acme.post(f"{P}/events", json={"events": deals}, headers=admin).status_code == 200
    assert _projected_as_python(runtime) == 0  # deals before any quota: nobody has a handicap
    for who, quota in QUOTAS.items():  # quotas set after the deals: the profile writes move them
        attributes = {} if quota is None else {"quota": quota}
        acme.put(f"{P}/participants/{who}", json={"attributes": attributes}, headers=admin)
    assert _projected_as_python(runtime) == 5
    more = [  # more deals: the metric writes move them (a new tie, a new participant without a quota)
        event("w2-b", participant="b", data={"amount": 500}, occurred_at=now.isoformat()),
        event("w2-k", participant="k", data={"amount": 5}, occurred_at=now.isoformat()),
    ]
    assert acme.post(f"{P}/events", json={"events": more}, headers=admin).status_code == 200
    for who, quota in (("c", 700), ("j", "2000"), ("f", 25), ("i", False)):  # text and booleans come and go
        acme.put(f"{P}/participants/{who}", json={"attributes": {"quota": quota}}, headers=admin)
    assert _projected_as_python(runtime) == 5  # a, b, c, f, h (k has no quota, j's is text, i's a boolean)
    assert acme.delete(f"{P}/participants/a", headers=admin).status_code == 200  # erased: no handicap left
    assert _projected_as_python(runtime) == 4
    with runtime.db.write() as connection:  # rows lost: replay finds them missing and writes them anew
        connection.execute(t.rank_rows.delete().where(t.rank_rows.c.source == normalised.SOURCE))
    assert any("normalised board row" in m for m in replay.replay(runtime, "acme-sales").mismatches)
    assert replay.replay(runtime, "acme-sales", rebuild=True).rebuilt  # reports what it found, then rebuilds
    assert not any("normalised board row" in m for m in replay.replay(runtime, "acme-sales").mismatches)
    assert _projected_as_python(runtime) == 4


def _quotas_then_deals(acme: TestClient, admin: dict[str, str]) -> None:
    """QUOTAS set, then a deal each of AMOUNTS this month."""
    for who, quota in QUOTAS.items():
        acme.put(
            f"{P}/participants/{who}", json={"attributes": {} if quota is None else {"quota": quota}}, headers=admin
        )
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    deals = [
        event(f"w-{w}", participant=w, data={"amount": a}, occurred_at=now.isoformat()) for w, a in AMOUNTS.items()
    ]
    assert acme.post(f"{P}/events", json={"events": deals}, headers=admin).status_code == 200


def test_a_normalised_board_added_later_is_filled_from_history(
    acme: TestClient, admin: dict[str, str], runtime: Runtime, acme_text: str
) -> None:
    _quotas_then_deals(acme, admin)
    board = "  - {key: quota-year, metric: revenue, window: year, normalize: participant.attributes.quota}\n"
    text = acme_text.replace("leaderboards:\n", "leaderboards:\n" + board)
    yaml = {**admin, "Content-Type": "application/yaml"}
    assert acme.put(P, content=text, headers=yaml).status_code in (200, 201)
    assert _projected_as_python(runtime, "quota-year") == 5  # kept from the apply, in its transaction


def test_the_migration_keeps_the_normalised_boards_of_stored_programs(
    acme: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    """Programs stored before 0015: their normalised boards are registered and filled by it (down, then up)."""
    _quotas_then_deals(acme, admin)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with runtime.db.read() as connection:
        record = programs.find(connection, "acme-sales")
        kept = normalised.stored(connection, record.id)
    assert len(kept) == 5
    for step, revision in ((command.downgrade, "0014"), (command.upgrade, "head")):
        with runtime.db.engine.connect() as connection:
            connection.execution_options(levelup_write=True)
            config.attributes["connection"] = connection
            step(config, revision)
            connection.commit()
        with runtime.db.read() as connection:
            assert normalised.registered(connection, record.id) == (
                [] if revision == "0014" else [normalised.Projection("revenue", "quota", "month")]
            )
            assert normalised.stored(connection, record.id) == ({} if revision == "0014" else kept)
            assert ranks.counts(connection, record.id) == ranks.recount(connection, record.id)
    _projected_as_python(runtime)
