"""``history.backfill`` (what ``levelup demo`` runs after loading old data): the boards' tops at the end of the
past days the job never saw, only where the stored data can say them (nothing stored counts after that day),
never over a day already kept; the TV then shows each row's change since yesterday and the movement chart."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient
from sqlalchemy import select

from levelup.leaderboards import history
from levelup.metrics.periods import local_date
from levelup.programs import service as programs
from levelup.runtime import Runtime
from levelup.storage import tables as t
from tests.conftest import event

P = "/api/v1/programs/acme-sales"
TZ = "America/New_York"  # acme-sales'


def days_kept(runtime: Runtime, board: str = "xp-all") -> dict[str, dict[int, int]]:
    """Each kept day of ``board``: subject id → rank."""
    b = t.board_ranks.c
    with runtime.db.read() as connection:
        rows = connection.execute(select(b.day, b.subject_id, b.rank).where(b.board == board)).all()
    out: dict[str, dict[int, int]] = {}
    for day, subject, rank in rows:
        out.setdefault(day, {})[int(subject)] = rank
    return out


def post_deals(client: TestClient, admin: dict[str, str], at: dt.datetime, prefix: str, amounts: list[int]) -> None:
    deals = [
        event(f"{prefix}-{i}", participant=f"rep-{i}", data={"amount": a}, occurred_at=at.isoformat())
        for i, a in enumerate(amounts)
    ]
    assert client.post(f"{P}/events", json={"events": deals}, headers=admin).status_code == 200


def test_old_data_gets_two_weeks_of_history_and_the_tv_shows_it(
    acme: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    post_deals(acme, admin, now - dt.timedelta(days=400), "old", [30_000, 10_000, 20_000, 10_000])
    assert days_kept(runtime) == {}
    written = history.backfill(runtime, now=now)
    kept = days_kept(runtime)
    today = local_date(now, TZ)
    assert sorted(kept) == [(today - dt.timedelta(days=n)).isoformat() for n in range(14, -1, -1)]
    assert written == 15 * 4  # xp-all's four reps each day (the calendar boards' periods are empty)
    assert all(ranks == kept[today.isoformat()] for ranks in kept.values())  # nothing counted since: unchanged
    assert sorted(kept[today.isoformat()].values()) == [1, 2, 3, 3]  # the tie shares its rank

    tv = acme.post(f"{P}/links", json={"kind": "tv", "tv": {"boards": ["xp-all"]}}, headers=admin).json()
    page = acme.get(tv["url"].replace("http://testserver", "")).text
    assert page.count('aria-label="same rank as yesterday"') == 4  # a mark on every row
    assert "<svg" in page  # the movement chart: fourteen kept days and now


def test_days_before_the_latest_data_stay_unkept_and_kept_days_are_not_rewritten(
    acme: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    post_deals(acme, admin, now - dt.timedelta(days=400), "old", [30_000, 10_000])
    recent = now - dt.timedelta(days=3)
    post_deals(acme, admin, recent, "new", [1_000, 90_000])  # rep-1 overtakes rep-0 three days ago
    history.record(runtime, now=now - dt.timedelta(days=1))  # the job ran yesterday: its day stands
    b = t.board_ranks.c
    with runtime.db.write() as connection:  # mark yesterday's row, to see that it is not rewritten
        connection.execute(t.board_ranks.update().where(b.board == "xp-all", b.rank == 1).values(value=-1.0))
    history.backfill(runtime, now=now)
    kept = days_kept(runtime)
    today, latest_day = local_date(now, TZ), local_date(recent, TZ)
    expected = {(latest_day + dt.timedelta(days=n)).isoformat() for n in range((today - latest_day).days + 1)}
    assert set(kept) == expected  # from the day of the latest deal on: earlier days cannot be told from totals
    with runtime.db.read() as connection:
        program = programs.find(connection, "acme-sales")
        marked = connection.execute(select(b.day).where(b.program_id == program.id, b.value == -1.0)).scalars().all()
    assert marked == [(today - dt.timedelta(days=1)).isoformat()]  # yesterday's kept rows were left alone
