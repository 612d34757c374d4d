"""Rolling boards and currency boards over a window, read from their kept rows (``leaderboards.windows``),
answer exactly what ranking them afresh gives — every page and neighbourhood, on SQLite and PostgreSQL — as
events arrive late and out of order, are reversed, as adjustments are posted, across the local midnight
(tomorrow's rows are filled ahead), after replay and a rebuild, and under a new time zone."""

from __future__ import annotations

import datetime as dt
import random
import threading
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from levelup.events import replay
from levelup.events.ingest import ingest
from levelup.jobs import registry
from levelup.leaderboards import ranks, service, windows
from levelup.metrics.periods import local_date
from levelup.programs import service as programs
from levelup.runtime import Runtime
from levelup.storage import tables as t
from tests.conftest import EXAMPLES, event

P = "/api/v1/programs/acme-sales"
BOARDS = [
    {"key": "revenue-3d", "metric": "revenue", "window": "last_3_days"},
    {"key": "deals-3d-team", "metric": "deals_won", "window": "last_3_days", "by": "team"},
    {"key": "xp-week", "currency": "xp", "window": "week"},
    {"key": "xp-day", "currency": "xp", "window": "day"},
    {"key": "coins-2d", "currency": "coins", "window": "last_2_days"},
    {"key": "quota-3d", "metric": "revenue", "window": "last_3_days", "normalize": "participant.attributes.quota"},
]
WINDOWED = [b["key"] for b in BOARDS]
PEOPLE = [f"rep-{i:02d}" for i in range(24)]
TEAMS = ["east", "west", "north"]
TZ = "America/New_York"


def document(timezone: str = TZ) -> str:
    doc = yaml.safe_load((EXAMPLES / "acme-sales.yaml").read_text())
    doc["leaderboards"] += BOARDS
    doc["timezone"] = timezone
    return yaml.safe_dump(doc, sort_keys=False)


def apply(client: TestClient, admin: dict[str, str], timezone: str = TZ) -> None:
    response = client.put(P, content=document(timezone), headers={**admin, "Content-Type": "application/yaml"})
    assert response.status_code in (200, 201), response.text


def local_midnight_utc(now: dt.datetime, days: int = 0) -> dt.datetime:
    """The instant the local day ``days`` after ``now``'s starts in ``TZ``."""
    day = local_date(now, TZ) + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(), ZoneInfo(TZ)).astimezone(dt.UTC)


def deals(rng: random.Random, now: dt.datetime, prefix: str, n: int, *, oldest_days: int = 5) -> list[dict[str, Any]]:
    """Won deals of a few amounts (ties), over the last ``oldest_days`` local days, many a few minutes either
    side of a local midnight, in random order (late and out of order)."""
    found = []
    for i in range(n):
        if rng.random() < 0.4:  # close to a midnight: the day a deal counts in is the local one
            at = local_midnight_utc(now, -rng.randint(0, oldest_days)) + dt.timedelta(minutes=rng.randint(-9, 9))
        else:
            at = now - dt.timedelta(minutes=rng.randint(1, oldest_days * 24 * 60))
        at = min(at, now - dt.timedelta(seconds=1))
        amount = rng.choice([1000, 2000, 2000, 5000, 12000])
        who = rng.choice(PEOPLE)
        found.append(event(f"{prefix}-{i}", participant=who, data={"amount": amount}, occurred_at=at.isoformat()))
    rng.shuffle(found)
    return found


def quota(i: int) -> dict[str, Any]:
    """A handicap of a few kinds: a number, none, zero and text (the last three leave a normalised board)."""
    return [{"quota": 1 + i % 4}, {}, {"quota": 0}, {"quota": "high"}, {"quota": 2.5}][i % 5]


def post(client: TestClient, admin: dict[str, str], events: list[dict[str, Any]]) -> None:
    response = client.post(f"{P}/events", json={"events": events}, headers=admin)
    assert response.status_code == 200, response.text
    assert all(r["status"] in ("accepted", "duplicate") for r in response.json()["results"]), response.json()


def page_of(ranking: dict[str, Any], *, limit: int, offset: int, around: str | None) -> dict[str, Any]:
    """A page (``offset``/``limit``) or a neighbourhood (``limit`` each side of ``around``) of a whole ranking."""
    entries = ranking["entries"]
    if around is not None:
        position = next(i for i, entry in enumerate(entries) if entry["id"] == around)
        offset, limit = max(0, position - limit), position + limit + 1 - max(0, position - limit)
    return {"total": ranking["total"], "entries": entries[offset : offset + limit]}


def same_as_afresh(runtime: Runtime, now: dt.datetime, *, kept: bool | None = True) -> int:
    """Every board's pages and neighbourhoods as read (from kept rows when ``kept``, ranked afresh when False,
    either when None), against the afresh ranking (by the database, and by Python over every row: the whole
    board once, each page cut from it); the rows compared. Pages of 1 and 3 at every other offset up to the
    end (one past it when the board's size is even), and 1 and 3 each side of every entry, whose standing is
    checked too. A board read afresh is the database's ranking itself: compared with Python only."""
    compared = 0
    with runtime.db.read() as connection:
        record = programs.find(connection, "acme-sales")
        compiled = runtime.programs.compiled(connection, record)
        today = service._today(compiled, now)
        assert windows.expected(connection, record.id) == windows.stored(connection, record.id)
        for key in WINDOWED:
            board = service._board(record, compiled, key)
            period = service._period_for(board, None, today)
            plain = service._plain_board(connection, record, compiled, board, period, today)
            assert kept is None or (plain is not None and plain.source == windows.SOURCE) is kept, (key, plain)
            ranked = service._in_sql(
                connection, record.id, board, service._values(record, compiled, board, period, today), key
            )
            python = service._slow(
                connection, record, compiled, board, period, today, scope=None, limit=100, offset=0, around=None
            )
            assert python["total"] <= 100, key  # the whole board

            def three(**paging: Any) -> list[dict[str, Any]]:
                got = service.leaderboard(connection, record, compiled, key, now=now, **paging)  # noqa: B023
                read = {k: got[k] for k in ("total", "entries")}
                # not kept: the read is this very query (service.leaderboard ranks it with _in_sql)
                afresh = ranked.page(connection, **paging) if plain is not None else read  # noqa: B023
                return [read, afresh, page_of(python, **paging)]  # noqa: B023

            whole = three(limit=100, offset=0, around=None)
            assert whole[0] == whole[1] == whole[2] == python, key
            compared += whole[0]["total"]
            for limit in (1, 3):
                for offset in range(0, whole[0]["total"] + 1, 2):
                    a, b, c = three(limit=limit, offset=offset, around=None)
                    assert a == b == c, (key, limit, offset)
                for entry in whole[0]["entries"]:
                    a, b, c = three(limit=limit, offset=0, around=entry["id"])
                    assert a == b == c, (key, limit, entry["id"])
            for entry in whole[0]["entries"]:
                standing = service.standing(connection, record, compiled, key, entry["id"], now=now)
                assert (standing["rank"], standing["value"]) == (entry["rank"], entry["value"])
    return compared


def test_kept_windowed_boards_answer_as_the_afresh_ranking(
    client: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    apply(client, admin)
    for i, who in enumerate(PEOPLE):  # team members, for the team board; handicaps, for the normalised one
        client.put(f"{P}/participants/{who}", json={"teams": [TEAMS[i % 3]], "attributes": quota(i)}, headers=admin)
    rng = random.Random(11)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    first = deals(rng, now, "a", 120)
    post(client, admin, first)
    same_as_afresh(runtime, now, kept=False)  # before the job: ranked afresh, and the same

    today, tomorrow = local_date(now, TZ), local_date(now, TZ) + dt.timedelta(days=1)
    same_week = today.isocalendar()[:2] == tomorrow.isocalendar()[:2]
    morning, evening = (
        local_midnight_utc(now) + dt.timedelta(hours=1),
        local_midnight_utc(now, 1) - dt.timedelta(minutes=30),
    )

    def kept_revenue() -> set[str]:
        with runtime.db.read() as connection:
            kept = connection.execute(select(t.board_windows.c.key, t.board_windows.c.period)).all()
        return {p for k, p in kept if k == "p/last_3_days/revenue"}

    assert windows.slide(runtime, now=morning) == len(BOARDS)  # today's period of each board
    assert kept_revenue() == {today.isoformat()}
    assert windows.slide(runtime, now=evening) == len(BOARDS) - same_week  # and, in the last hour, tomorrow's
    assert kept_revenue() == {today.isoformat(), tomorrow.isoformat()}
    assert windows.slide(runtime, now=evening) == 0  # kept: nothing to fill again
    assert same_as_afresh(runtime, now) > 0

    # late, out of order, some outside every window; reversals of earlier deals; an adjustment
    post(client, admin, deals(rng, now, "late", 60, oldest_days=9))
    reversals = [
        event(f"undo-{e['id']}", kind="deal.reopened", participant=e["participant"], reverses=e["id"])
        for e in rng.sample(first, 15)
    ]
    post(client, admin, reversals)
    fix = {"participant": "rep-03", "currency": "xp", "amount": 777, "note": "fix"}
    adjusted = client.post(f"{P}/adjustments", json=fix, headers=admin)
    assert adjusted.status_code in (200, 201), adjusted.text
    same_as_afresh(runtime, now)

    # new handicaps: one doubled, one gone, one given, then one erased (a normalised rolling board follows)
    for who, attributes in (("rep-01", {"quota": 2}), ("rep-02", {}), ("rep-05", {"quota": 0.5})):
        response = client.put(f"{P}/participants/{who}", json={"attributes": attributes}, headers=admin)
        assert response.status_code == 200, response.text
    same_as_afresh(runtime, now)
    erased = client.delete(f"{P}/participants/rep-01", headers=admin)  # an erasure takes the handicap away
    assert erased.status_code == 200, erased.text
    same_as_afresh(runtime, now)

    # one minute past the local midnight, before the job slides: tomorrow's rows were kept all along
    after_midnight = local_midnight_utc(now, 1) + dt.timedelta(minutes=1)
    assert same_as_afresh(runtime, after_midnight) > 0  # (today's day board is empty: nothing dated tomorrow)
    windows.slide(runtime, now=after_midnight)
    with runtime.db.read() as connection:
        periods = {p for k, p in connection.execute(select(t.board_windows.c.key, t.board_windows.c.period))}
    assert today.isoformat() not in periods  # yesterday's rolling rows are gone
    same_as_afresh(runtime, after_midnight)

    # replay finds nothing amiss; a rebuild and a rank rebuild refill the kept rows
    report = replay.replay(runtime, "acme-sales", rebuild=True)
    assert not [m for m in report.mismatches if m.startswith("windowed")], report.mismatches
    with runtime.db.write() as connection:
        ranks.rebuild(connection, programs.find(connection, "acme-sales").id)
    same_as_afresh(runtime, after_midnight)


def test_a_stale_kept_row_is_caught_by_replay(client: TestClient, admin: dict[str, str], runtime: Runtime) -> None:
    apply(client, admin)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    post(client, admin, deals(random.Random(3), now, "a", 30))
    windows.slide(runtime, now=now)
    r = t.rank_rows.c
    with runtime.db.write() as connection:  # a kept row lost (deleted: the triggers keep the counts right)
        one = connection.execute(select(r.subject_id).where(r.source == windows.SOURCE).limit(1)).scalar_one()
        connection.execute(t.rank_rows.delete().where(r.source == windows.SOURCE, r.subject_id == one))
    report = replay.replay(runtime, "acme-sales")
    assert any(m.startswith("windowed board row") for m in report.mismatches)
    replay.replay(runtime, "acme-sales", rebuild=True)
    same_as_afresh(runtime, now)


def test_a_new_time_zone_ranks_currency_boards_afresh_until_the_job_slides(
    client: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    apply(client, admin)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    post(client, admin, deals(random.Random(5), now, "a", 40))
    windows.slide(runtime, now=now)
    apply(client, admin, "Asia/Tokyo")  # a day of Tokyo starts at other instants: kept currency sums no longer hold

    def xp_day_kept() -> bool:
        with runtime.db.read() as connection:
            record = programs.find(connection, "acme-sales")
            compiled = runtime.programs.compiled(connection, record)
            today = service._today(compiled, now)  # Tokyo's today: New York's today or tomorrow, both kept
            board = service._board(record, compiled, "xp-day")
            period = service._period_for(board, None, today)
            return service._plain_board(connection, record, compiled, board, period, today) is not None

    assert not xp_day_kept()
    same_as_afresh(runtime, now, kept=None)  # the rolling metric boards sum the same stored days: kept, and right
    windows.slide(runtime, now=now)
    assert xp_day_kept()
    same_as_afresh(runtime, now)


def test_the_job_runs_before_the_board_history() -> None:
    names = [job.name for job in registry.JOBS]
    assert names.index("board-windows") == names.index("board-history") - 1


def test_only_windowed_boards_are_kept() -> None:
    doc = yaml.safe_load(document())
    from levelup.programs.document import Leaderboard

    kept = {b["key"]: windows.of_board(Leaderboard.model_validate(b)) for b in doc["leaderboards"]}
    assert kept == {
        "revenue-month": None,
        "quota-month": None,
        "team-revenue": None,
        "xp-all": None,
        "revenue-3d": windows.Window("p", "last_3_days", "revenue"),
        "deals-3d-team": windows.Window("t", "last_3_days", "deals_won"),
        "xp-week": windows.Window("c", "week", "xp"),
        "xp-day": windows.Window("c", "day", "xp"),
        "coins-2d": windows.Window("c", "last_2_days", "coins"),
        "quota-3d": windows.Window("q", "last_3_days", "revenue/quota"),
    }


def test_slides_beside_ingestion_lose_no_write(client: TestClient, admin: dict[str, str], runtime: Runtime) -> None:
    """The job refilling periods while batches are scored in other transactions (two threads; on PostgreSQL
    truly at once): every kept row ends equal to its sum from the sources, and nothing deadlocks."""
    apply(client, admin)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    rng = random.Random(17)
    batches = [deals(rng, now, f"b{n}", 40) for n in range(8)]
    failures: list[BaseException] = []

    def scoring() -> None:
        try:
            for batch in batches:
                outcomes = ingest(runtime, "acme-sales", batch)
                assert all(o.status == "accepted" for o in outcomes)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    thread = threading.Thread(target=scoring)
    thread.start()
    for n in range(12):  # today, then two days on, and back: each slide drops and fills the rolling periods
        windows.slide(runtime, now=now + dt.timedelta(days=2 * (n % 2)))
    thread.join()
    assert not failures, failures
    windows.slide(runtime, now=now)
    with runtime.db.read() as connection:
        program_id = programs.find(connection, "acme-sales").id
        want, kept = windows.expected(connection, program_id), windows.stored(connection, program_id)
    assert want == kept
    same_as_afresh(runtime, now)
