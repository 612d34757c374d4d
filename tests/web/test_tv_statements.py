"""The TV's boards read their extras (yesterday's ranks, who opted out, the movement) once for all the link's
boards: a link showing every board sends a few statements more than a link showing one, not a few per board;
and what each board shows is the same as when each board read its own."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event as sql_event
from sqlalchemy import insert, select

from levelup.leaderboards.service import leaderboard
from levelup.links.service import DEFAULT_TOP
from levelup.metrics.periods import local_date
from levelup.programs import service as programs
from levelup.runtime import Runtime
from levelup.storage import tables as t
from tests.conftest import event
from tests.web.conftest import Game, P
from tests.web.test_pages import at, marks, text

BOARDS = ["revenue-month", "quota-month", "team-revenue", "xp-all"]  # acme-sales' boards, every kind


@contextmanager
def statements(runtime: Runtime) -> Iterator[list[str]]:
    """The SQL statements sent on the runtime's engine meanwhile."""
    sent: list[str] = []

    def seen(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    sql_event.listen(runtime.db.engine, "before_cursor_execute", seen)
    try:
        yield sent
    finally:
        sql_event.remove(runtime.db.engine, "before_cursor_execute", seen)


def kept_history(game: Game, runtime: Runtime) -> dt.date:
    """Bob (opted out) leads this month ahead of Dana and rep-3 (team west; first on quota); the board
    history, written by hand, says how things stood before: on the month and the quarter yesterday (and a row
    of another month, which says nothing about this one), on the all-time board two days ago only (yesterday
    was not kept there), and days outside the movement's fourteen. Returns today (the program's local date)."""
    for rep, body in (("rep-3", {"teams": ["west"]}), ("rep-9", {}), ("rep-17", {})):
        quota = {"attributes": {"quota": 100_000 if rep == "rep-3" else 1_000_000}}
        made = game.client.put(f"{P}/participants/{rep}", json=body | quota, headers=game.admin)
        assert made.status_code in (200, 201), made.text  # rep-3 is new
    now = dt.datetime.now(dt.UTC).isoformat()
    game.post(
        event("n-1", participant="rep-9", data={"amount": 500_000, "deal_id": "N-1"}, occurred_at=now),
        event("n-2", participant="rep-17", data={"amount": 200_000, "deal_id": "N-2"}, occurred_at=now),
        event("n-3", participant="rep-3", data={"amount": 100_000, "deal_id": "N-3"}, occurred_at=now),
    )
    hidden = game.client.put(f"{P}/participants/rep-9/visibility", json={"hidden": True}, headers=game.admin)
    assert hidden.status_code == 200, hidden.text
    period = {key: game.client.get(f"{P}/leaderboards/{key}", headers=game.admin).json()["period"] for key in BOARDS}
    with runtime.db.write() as connection:
        program = programs.find(connection, "acme-sales")
        today = local_date(dt.datetime.now(dt.UTC), runtime.programs.compiled(connection, program).timezone)
        p, teams = t.participants.c, t.teams.c
        ids = dict(connection.execute(select(p.external_id, p.id).where(p.program_id == program.id)).all())
        ids |= dict(connection.execute(select(teams.external_id, teams.id).where(teams.program_id == program.id)).all())

        def row(board: str, days_ago: int, subject: str, rank: int, period_: str | None = None) -> dict[str, Any]:
            day = (today - dt.timedelta(days=days_ago)).isoformat()
            return {"program_id": program.id, "board": board, "day": day, "subject_id": ids[subject]} | {
                "period": period_ or period[board],
                "rank": rank,
                "value": 1.0,
            }

        month, quarter = "revenue-month", "team-revenue"
        connection.execute(
            insert(t.board_ranks),
            [
                row(month, 1, "rep-17", 1),
                row(month, 1, "rep-9", 3),
                row(month, 1, "rep-3", 1, "1999-12"),  # another month's: rep-3 is new on this one
                row(month, 3, "rep-9", 1),
                row(month, 13, "rep-17", 2),  # the movement's first day
                row(month, 14, "rep-17", 5),  # a day before it
                row(quarter, 1, "west", 1),
                row(quarter, 1, "east", 2),
                row(quarter, 3, "east", 1),
                row("xp-all", 2, "rep-17", 1),
                row("xp-all", 2, "rep-9", 2),
            ],
        )
    return today


def boards(page: str) -> dict[str, str]:
    """Each board's section of a TV page, by key."""
    return dict(re.findall(r'<section class="board"[^>]*data-board="([^"]+)"(.*?)</section>', page, re.S))


def _counted(game: Game, runtime: Runtime, boards: list[str]) -> int:
    """The statements a TV read sends (``/tv/boards``, warm) for a link showing ``boards``."""
    url = at(game.link(kind="tv", tv={"boards": boards})["url"], "tv/boards")
    assert game.client.get(url).status_code == 200  # warm: what is read once a process (the compiled program)
    with statements(runtime) as sent:
        assert game.client.get(url).status_code == 200
    return len(sent)


def _tops(runtime: Runtime, boards: list[str]) -> int:
    """The statements each board's own top sends (``leaderboard``, warm): what a TV read must send a board."""
    with runtime.db.read() as connection:
        program = programs.find(connection, "acme-sales")
        compiled = runtime.programs.compiled(connection, program)
        now = dt.datetime.now(dt.UTC)
        for key in boards:
            leaderboard(connection, program, compiled, key, limit=DEFAULT_TOP, now=now)
        with statements(runtime) as sent:
            for key in boards:
                leaderboard(connection, program, compiled, key, limit=DEFAULT_TOP, now=now)
    return len(sent)


def test_the_tv_reads_its_boards_extras_once_for_all_its_boards(game: Game, runtime: Runtime) -> None:
    """Every board against one: three boards more cost their own tops (four statements each, on a plain board)
    and nothing else; each board's yesterday, opt-outs and movement used to cost three statements more."""
    kept_history(game, runtime)
    one, every = _counted(game, runtime, ["xp-all"]), _counted(game, runtime, BOARDS)
    assert every - one == _tops(runtime, BOARDS[:-1]), (one, every)
    with statements(runtime) as sent:
        assert game.client.get(at(game.link(kind="tv")["url"], "tv/boards")).status_code == 200
    opted_out = "SELECT participants.external_id FROM participants "  # visibility.hidden (the ticker's differs)
    extras = [s for s in sent if "board_ranks" in s or " ".join(s.split()).startswith(opted_out)]
    assert len(extras) == 3, extras  # yesterday's ranks, who opted out, the movement: each once for all


def test_each_board_shows_its_change_since_yesterday_its_movement_and_masks_who_opted_out(
    game: Game, runtime: Runtime
) -> None:
    today = kept_history(game, runtime)
    page = game.client.get(game.link(kind="tv", tv={"boards": BOARDS})["url"]).text
    shown = boards(page)
    assert list(shown) == BOARDS and "Bob" not in text(page) and "rep-9" not in page

    def since(days_ago: int) -> str:
        return "Ranks at the end of each day since " + (today - dt.timedelta(days=days_ago)).strftime("%-d %b") + " : "

    month = shown["revenue-month"]  # Bob keeps his place and his change, without his name; rep-3 is new
    assert marks(month) == [("hidden", "1", "▲2"), ("rep-17", "2", "▼1"), ("rep-3", "3", "new")]
    assert "1 Hidden participant ▲2 500,000" in text(month)
    assert text(month).endswith(since(13) + "Dana Scully: #2, #1, #2 now ")  # not Bob's, nor a day before
    quota = shown["quota-month"]  # nothing kept: no change, no chart
    assert marks(quota) == [("rep-3", "1", ""), ("hidden", "2", ""), ("rep-17", "3", "")] and "<figure" not in quota
    team = shown["team-revenue"]  # teams: nobody masked
    assert marks(team) == [("east", "1", "▲1"), ("west", "2", "▼1")]
    assert text(team).endswith(since(3) + "east: #1, #2, #1 now; west: #1, #2 now ")
    xp = shown["xp-all"]  # kept two days ago, not yesterday: no change to tell, but a movement
    assert marks(xp) == [("rep-17", "1", ""), ("hidden", "2", ""), ("rep-3", "3", "")]
    assert text(xp).endswith(since(2) + "Dana Scully: #1, #1 now ")
