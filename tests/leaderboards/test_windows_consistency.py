"""Two ways a kept windowed board could answer otherwise than ranking it afresh, found by a review and held
here on both databases: a read overlapping the job's first slide after midnight (which drops yesterday's
period) must read one snapshot, not find the period kept and then its rows gone; and fractional day totals
must sum alike by the kept rows' few-subject recompute and by the afresh scan, whatever order the database
adds them in (``storage.sql.exact_sum``)."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from levelup.events import store
from levelup.events.ingest import ingest
from levelup.leaderboards import service, windows
from levelup.participants import repository as participants
from levelup.programs import service as programs
from levelup.runtime import Runtime
from tests.conftest import EXAMPLES, event

P = "/api/v1/programs/acme-sales"


def rolling(client: TestClient, admin: dict[str, str]) -> None:
    doc = yaml.safe_load((EXAMPLES / "acme-sales.yaml").read_text())
    doc["leaderboards"] += [{"key": "revenue-3d", "metric": "revenue", "window": "last_3_days"}]
    doc["timezone"] = "UTC"
    response = client.put(P, content=yaml.safe_dump(doc), headers={**admin, "Content-Type": "application/yaml"})
    assert response.status_code in (200, 201), response.text


def read(runtime: Runtime, now: dt.datetime, **paging: Any) -> dict[str, Any]:
    with runtime.db.read() as connection:
        record = programs.find(connection, "acme-sales")
        return service.leaderboard(
            connection, record, runtime.programs.compiled(connection, record), "revenue-3d", now=now, **paging
        )


def test_a_read_beside_the_midnight_slide_reads_one_snapshot(
    client: TestClient, admin: dict[str, str], runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    rolling(client, admin)
    now = dt.datetime(2026, 12, 2, 23, 59, 58, tzinfo=dt.UTC)  # two seconds before midnight
    deals = [
        event(f"e{i}", participant=f"rep-{i}", occurred_at="2026-12-02T10:00:00Z", data={"amount": 1000 * (i + 1)})
        for i in range(5)
    ]
    assert {o.status for o in ingest(runtime, "acme-sales", deals)} == {"accepted"}
    windows.slide(runtime, now=now)
    fast = service._fast

    def the_job_slides_first(*args: Any, **kwargs: Any) -> Any:  # between "this period is kept" and its rows
        job = threading.Thread(target=windows.slide, args=(runtime,), kwargs={"now": now + dt.timedelta(seconds=5)})
        job.start()
        job.join()
        return fast(*args, **kwargs)

    monkeypatch.setattr(service, "_fast", the_job_slides_first)
    overlapped = read(runtime, now)
    monkeypatch.setattr(service, "_fast", fast)
    assert overlapped["total"] == read(runtime, now)["total"] == 5  # (the second: yesterday's, ranked afresh)


def test_fractional_day_totals_sum_alike_kept_and_afresh(
    client: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    rolling(client, admin)
    now = dt.datetime(2026, 12, 3, 12, tzinfo=dt.UTC)
    n = 3000  # enough for PostgreSQL to scan and sort where the recompute seeks
    with runtime.db.write() as connection:
        program_id = programs.find(connection, "acme-sales").id
        ids, _ = participants.ensure(connection, program_id, [f"rep-{i}" for i in range(n + 1)])
        subjects = sorted(ids.values())
        single = subjects.pop()  # 0.6 on one day: equal to the others' 0.1 + 0.2 + 0.3 only if summed exactly
        store.write_totals(connection, program_id, {("revenue", "2026-12-03", "p", single): 0.6})
        for day, value in (("2026-12-02", 0.2), ("2026-12-03", 0.3), ("2026-12-01", 0.1)):  # not in day order
            store.write_totals(connection, program_id, {("revenue", day, "p", s): value for s in subjects})
    windows.slide(runtime, now=now)  # filled by the scan
    with runtime.db.write() as connection:  # a few subjects' days touched: their rows recomputed by seeks
        store.write_totals(connection, program_id, {("revenue", "2026-12-03", "p", s): 0.0 for s in subjects[:5]})
    with runtime.db.read() as connection:
        assert windows.stored(connection, program_id) == windows.expected(connection, program_id)
    kept = read(runtime, now, around=f"rep-{n}", limit=1)["entries"]
    assert {e["value"] for e in kept} == {0.6}  # tied with its neighbours, as 0.1 + 0.2 + 0.3 is 0.6


def test_writers_of_a_program_without_windowed_boards_do_not_wait_for_each_other(
    client: TestClient, admin: dict[str, str], runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL (SQLite has one writer): ingestion of one rep held open after its writes does not hold back
    another rep's, when the program keeps no windowed period (the writes look, unlocked, and find none)."""
    if runtime.db.is_sqlite:
        pytest.skip("PostgreSQL only: SQLite has one writer anyway")
    doc = yaml.safe_load((EXAMPLES / "acme-sales.yaml").read_text())
    doc["leaderboards"] = []  # no board: no rank_rows trigger takes the rank lock either
    doc.pop("teams", None)
    response = client.put(P, content=yaml.safe_dump(doc), headers={**admin, "Content-Type": "application/yaml"})
    assert response.status_code in (200, 201), response.text
    ingest(runtime, "acme-sales", [event("a0", participant="rep-a"), event("b0", participant="rep-b")])
    held, release = threading.Event(), threading.Event()
    write = store.write_projections

    def held_open(connection: Any, program_id: int, writes: Any) -> None:
        write(connection, program_id, writes)
        if threading.current_thread().name == "first":
            held.set()
            release.wait(20)  # the first transaction stays open here, after its writes

    monkeypatch.setattr(store, "write_projections", held_open)
    first = threading.Thread(
        target=ingest, args=(runtime, "acme-sales", [event("a1", participant="rep-a")]), name="first"
    )
    first.start()
    assert held.wait(20)
    second = threading.Thread(target=ingest, args=(runtime, "acme-sales", [event("b1", participant="rep-b")]))
    second.start()
    second.join(5)
    waited = second.is_alive()
    release.set()
    first.join(20)
    second.join(20)
    assert not waited, "another rep's ingestion waited for the first one's commit"
