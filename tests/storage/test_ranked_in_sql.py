"""Boards the database ranks (normalised, rolling, a currency over a window) answer exactly as the Python
ranking of every row does: the same handicaps left off (text, a boolean, zero, negative, missing), the same
ties and tie order, every page, every neighbourhood — on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi.testclient import TestClient

from levelup.leaderboards import service
from levelup.programs import service as programs
from levelup.runtime import Runtime
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
