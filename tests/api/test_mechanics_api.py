"""Game mechanics over HTTP, on SQLite and PostgreSQL: profile, challenges, live feed, rules, replay.

The profile and the challenge list are read "as of today" with the real clock, in the
program's time zone (America/New_York): these tests compute today there and place
their events relative to it. A test that straddles a New York midnight skips.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from levelup.challenges.service import list_challenges
from levelup.events.replay import replay
from levelup.programs import service as programs
from levelup.runtime import Runtime
from levelup.storage import tables as t
from tests.conftest import event

P = "/api/v1/programs/acme-sales"
NEW_YORK = ZoneInfo("America/New_York")
DANA = {"name": "Dana", "teams": ["east"], "attributes": {"quota": 50000}}
SSE_DEADLINE_S = 15.0


def today_ny() -> dt.date:
    return dt.datetime.now(NEW_YORK).date()


@contextmanager
def same_day() -> Iterator[dt.date]:
    """Today in New York; skips the test if New York's date changed while it ran."""
    today = today_ny()
    yield today
    if today_ny() != today:
        pytest.skip("New York midnight passed during the test: 'today' moved under it")


def at(day: dt.date, hour: int = 12, minute: int = 0) -> str:
    """RFC 3339 for a New York wall-clock time on ``day``."""
    return dt.datetime.combine(day, dt.time(hour, minute), NEW_YORK).isoformat()


def days_ago(today: dt.date, n: int) -> dt.date:
    return today - dt.timedelta(days=n)


def iso_week(day: dt.date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def quarter(day: dt.date) -> str:
    return f"{day.year}-Q{(day.month - 1) // 3 + 1}"


def deal(event_id: str, when: str, participant: str = "rep-17", amount: int = 12000) -> dict[str, Any]:
    return event(event_id, participant=participant, occurred_at=when, data={"amount": amount})


def call(event_id: str, when: str, participant: str = "rep-17", duration: int = 120) -> dict[str, Any]:
    return event(
        event_id,
        "activity.logged",
        participant=participant,
        occurred_at=when,
        data={"kind": "call", "duration_s": duration},
    )


def post(client: TestClient, headers: dict[str, str], events: list[dict[str, Any]]) -> None:
    response = client.post(f"{P}/events", json={"events": events}, headers=headers)
    assert response.status_code == 200, response.text
    statuses = [r["status"] for r in response.json()["results"]]
    assert statuses == ["accepted"] * len(events), response.text


def put_participant(client: TestClient, headers: dict[str, str], participant: str, body: dict[str, Any]) -> None:
    response = client.put(f"{P}/participants/{participant}", json=body, headers=headers)
    assert response.status_code in (200, 201), response.text


def get_profile(client: TestClient, headers: dict[str, str], participant: str = "rep-17") -> dict[str, Any]:
    response = client.get(f"{P}/participants/{participant}", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def get_challenges(client: TestClient, headers: dict[str, str], participant: str | None = None) -> dict[str, Any]:
    params = {"participant": participant} if participant else {}
    response = client.get(f"{P}/challenges", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def by_key(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["key"]: item for item in items}


def parse_instant(text_value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text_value.replace("Z", "+00:00"))


def make_key(client: TestClient, headers: dict[str, str], role: str) -> dict[str, str]:
    response = client.post("/api/v1/keys", json={"role": role, "programs": ["acme-sales"]}, headers=headers)
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['key']}"}


# --------------------------------------------------------------------------- profile


def test_profile_shows_level_badges_streaks_and_challenges_after_a_realistic_week(
    acme: TestClient, admin: dict[str, str]
) -> None:
    with same_day() as today:
        put_participant(acme, admin, "rep-17", DANA)
        # calls: 4 days in a row (best 4), two days missed (broken), then 3 of the last 4 days (current 3)
        calls = [call(f"call-{n}", at(days_ago(today, n))) for n in (10, 9, 8, 7, 4, 2, 1)]
        # deals: 3 two weeks ago (a hot week), then 3 early today (a hot week; the 5th deal in all is Bronze)
        earlier = [deal(f"won-old-{h}", at(days_ago(today, 14), h)) for h in (9, 10, 11)]
        now = [deal(f"won-new-{m}", at(today, 0, m)) for m in (5, 6, 7)]
        post(acme, admin, [*calls, *earlier, *now])
        body = get_profile(acme, admin)

    assert body["id"] == "rep-17" and body["name"] == "Dana" and body["teams"] == ["east"]
    assert body["attributes"] == {"quota": 50000}
    assert body["balances"] == {"xp": 6 * 220 + 7 * 5, "coins": 6 * 12}
    assert body["level"]["name"] == "Closer"
    assert body["level"]["next"] == "Legend"
    assert body["level"]["progress"] == pytest.approx(round(355 / 9000, 3), abs=1e-9)
    assert body["tier"] is None

    badges = {(b["key"], b["grade"], b.get("period")): parse_instant(b["awarded_at"]) for b in body["badges"]}
    assert badges == {
        ("hot-week", "Hot", iso_week(days_ago(today, 14))): parse_instant(earlier[2]["occurred_at"]),
        ("top-closer", "Bronze", "all"): parse_instant(now[1]["occurred_at"]),
        ("hot-week", "Hot", iso_week(today)): parse_instant(now[2]["occurred_at"]),
    }
    awarded = [parse_instant(b["awarded_at"]) for b in body["badges"]]
    assert awarded == sorted(awarded)

    progress = by_key(body["badge_progress"])
    assert set(progress) == {"top-closer"}  # this week's hot week is held: nothing next
    assert progress["top-closer"]["next_grade"] == "Gold"
    assert [(c["metric"], c["value"], c["at_least"]) for c in progress["top-closer"]["criteria"]] == [
        ("deals_won", 6, 50)
    ]

    assert [{"key": s["key"], "current": s["current"], "best": s["best"]} for s in body["streaks"]] == [
        {"key": "daily-caller", "current": 3, "best": 4}
    ]

    challenges = by_key(body["challenges"])
    assert {k: challenges["five-a-week"][k] for k in ("key", "period", "progress", "target", "completed")} == {
        "key": "five-a-week",
        "period": iso_week(today),
        "progress": 3,
        "target": 5,
        "completed": False,
    }
    assert "october-blitz" not in challenges or challenges["october-blitz"]["period"] == "20261001-20261031"


def test_profile_streak_is_alive_within_grace_and_zero_after_two_missed_days(
    acme: TestClient, admin: dict[str, str]
) -> None:
    with same_day() as today:
        post(
            acme,
            admin,
            [
                # rep-a missed yesterday only: still alive; rep-b missed the last two days: over
                *(call(f"a-{n}", at(days_ago(today, n)), participant="rep-a") for n in (3, 2)),
                *(call(f"b-{n}", at(days_ago(today, n)), participant="rep-b") for n in (5, 4, 3)),
                call("c-0", at(today, 0, 1), participant="rep-c"),  # a call today
            ],
        )
        streaks = {p: get_profile(acme, admin, p)["streaks"][0] for p in ("rep-a", "rep-b", "rep-c")}
    assert {p: (s["current"], s["best"]) for p, s in streaks.items()} == {
        "rep-a": (2, 2),
        "rep-b": (0, 3),
        "rep-c": (1, 1),
    }


def test_profile_challenge_completes_at_the_fifth_deal_this_week_and_pays_once(
    acme: TestClient, admin: dict[str, str]
) -> None:
    with same_day() as today:
        post(acme, admin, [deal(f"won-{m}", at(today, 0, m)) for m in range(1, 5)])
        four = by_key(get_profile(acme, admin)["challenges"])["five-a-week"]
        post(acme, admin, [deal(f"won-{m}", at(today, 0, m)) for m in range(5, 8)])
        seven = get_profile(acme, admin)
    assert (four["progress"], four["completed"]) == (4, False)
    five = by_key(seven["challenges"])["five-a-week"]
    assert (five["period"], five["progress"], five["completed"]) == (iso_week(today), 7, True)
    assert seven["balances"]["coins"] == 7 * 12 + 100
    entries = acme.get(f"{P}/participants/rep-17/ledger", params={"limit": 100}, headers=admin).json()["entries"]
    assert [e["amount"] for e in entries if e["currency"] == "coins" and e["amount"] == 100] == [100]


def test_a_reversal_takes_a_badge_off_the_profile_and_a_new_deal_brings_it_back(
    acme: TestClient, admin: dict[str, str]
) -> None:
    post(acme, admin, [deal(f"won-{i}", f"2026-11-0{2 + i}T16:00:00Z") for i in range(5)])
    assert ("top-closer", "Bronze") in {(b["key"], b["grade"]) for b in get_profile(acme, admin)["badges"]}
    undo = event("undo-0", "deal.reopened", data={}, reverses="won-0", occurred_at="2026-11-10T15:00:00Z")
    post(acme, admin, [undo])  # a request of its own: 4 deals left in all
    shown = get_profile(acme, admin)
    assert ("top-closer", "Bronze") not in {(b["key"], b["grade"]) for b in shown["badges"]}
    assert ("hot-week", "Hot") in {(b["key"], b["grade"]) for b in shown["badges"]}  # 4 deals left that week
    assert by_key(shown["badge_progress"])["top-closer"]["next_grade"] == "Bronze"
    post(acme, admin, [deal("won-5", "2026-11-11T16:00:00Z")])
    again = {(b["key"], b["grade"]): b for b in get_profile(acme, admin)["badges"]}
    assert again[("top-closer", "Bronze")]["awarded_at"].startswith("2026-11-11T16:00:00")


# --------------------------------------------------------------------------- GET challenges


def test_challenges_show_status_period_and_each_participants_progress(acme: TestClient, admin: dict[str, str]) -> None:
    with same_day() as today:
        for rep, team in (("rep-17", "east"), ("rep-18", "east"), ("rep-19", "west")):
            put_participant(acme, admin, rep, {"name": rep, "teams": [team]})
        post(
            acme,
            admin,
            [
                *(deal(f"dana-{m}", at(today, 0, m), amount=10_000) for m in range(1, 6)),
                *(deal(f"eli-{m}", at(today, 0, m), participant="rep-18", amount=30_000) for m in (1, 2)),
                deal("fay-1", at(today, 0, 3), participant="rep-19", amount=5_000),
                deal("blitz-fay", "2026-10-15T16:00:00-04:00", participant="rep-19", amount=70_000),
                deal("blitz-dana", "2026-10-20T16:00:00-04:00", amount=40_000),
                deal("blitz-late", "2026-11-01T00:30:00-04:00", participant="rep-18", amount=90_000),  # Nov in NY
            ],
        )
        dana = get_challenges(acme, admin, "rep-17")
        eli = get_challenges(acme, admin, "rep-18")
        anonymous = get_challenges(acme, admin)

    assert dana["today"] == today.isoformat()
    listed = by_key(dana["challenges"])
    assert list(listed) == ["five-a-week", "east-quarter", "october-blitz"]

    weekly = listed["five-a-week"]
    assert (weekly["status"], weekly["period"], weekly["completions"]) == ("active", iso_week(today), 1)
    gone, left = today.isoweekday() / 7, 7 - today.isoweekday()  # of the ISO week, today counted
    assert weekly["you"] == {"progress": 5, "target": 5, "completed": True} | {
        "share": 1.0, "elapsed": round(gone, 4), "pace": "done", "days_left": left
    }  # fmt: skip
    done = 2 / 5
    eli_pace = "ahead" if done > gone + 0.1 else "on" if done >= gone - 0.1 else "behind"
    assert by_key(eli["challenges"])["five-a-week"]["you"] == {"progress": 2, "target": 5, "completed": False} | {
        "share": 0.4, "elapsed": round(gone, 4), "pace": eli_pace, "days_left": left
    }  # fmt: skip
    assert "you" not in by_key(anonymous["challenges"])["five-a-week"]

    east = listed["east-quarter"]
    assert (east["status"], east["period"]) == ("active", quarter(today))
    in_quarter = {"dana": 50_000, "eli": 60_000, "blitz-dana": 40_000, "blitz-late": 90_000}
    dates = {"blitz-dana": dt.date(2026, 10, 20), "blitz-late": dt.date(2026, 11, 1)}
    east_value = sum(v for k, v in in_quarter.items() if quarter(dates.get(k, today)) == quarter(today))
    assert ("east", east_value) in [(s["id"], s["value"]) for s in east["standings"]]

    blitz = listed["october-blitz"]
    expected_status = (
        "upcoming" if today < dt.date(2026, 10, 1) else "active" if today <= dt.date(2026, 10, 31) else "ended"
    )
    assert (blitz["status"], blitz["period"]) == (expected_status, "20261001-20261031")
    assert [(s["id"], s["value"]) for s in blitz["standings"]] == [("rep-19", 70_000), ("rep-17", 40_000)]
    assert blitz["you"]["progress"] == 40_000


def test_a_team_challenge_ranks_only_the_teams_it_is_for(acme: TestClient, admin: dict[str, str]) -> None:
    """east-quarter is for teams [east]: the west office is not in it."""
    with same_day() as today:
        put_participant(acme, admin, "rep-17", DANA)
        put_participant(acme, admin, "rep-19", {"name": "Fay", "teams": ["west"]})
        post(
            acme,
            admin,
            [
                deal("won-dana", at(today, 0, 1), amount=100_000),
                deal("won-fay", at(today, 0, 2), participant="rep-19", amount=250_000),
            ],
        )
        east = by_key(get_challenges(acme, admin)["challenges"])["east-quarter"]
    assert east["period"] == quarter(today)
    assert [(s["id"], s["value"]) for s in east["standings"]] == [("east", 100_000)]


@pytest.mark.parametrize(
    ("now", "status"),
    [
        (dt.datetime(2026, 9, 30, 12, 0, tzinfo=dt.UTC), "upcoming"),
        (dt.datetime(2026, 10, 1, 3, 59, tzinfo=dt.UTC), "upcoming"),  # 30 Sept 23:59 in New York
        (dt.datetime(2026, 10, 1, 4, 0, tzinfo=dt.UTC), "active"),  # 1 Oct 00:00 in New York
        (dt.datetime(2026, 11, 1, 3, 59, tzinfo=dt.UTC), "active"),  # 31 Oct 23:59 in New York: end is inclusive
        (dt.datetime(2026, 11, 1, 4, 0, tzinfo=dt.UTC), "ended"),
    ],
)
def test_october_blitz_status_follows_new_york_dates(
    acme: TestClient, runtime: Runtime, now: dt.datetime, status: str
) -> None:
    with runtime.db.read() as connection:
        record = programs.find(connection, "acme-sales")
        listed = list_challenges(connection, record, runtime.programs.compiled(connection, record), now=now)
    blitz = by_key(listed["challenges"])["october-blitz"]
    assert (blitz["status"], blitz["period"]) == (status, "20261001-20261031")
    assert by_key(listed["challenges"])["five-a-week"]["status"] == "active"


DRAFT = """
  - {key: secret-sprint, metric: deals_won, target: 2, every: week, mode: individual, reward: {coins: 50}, draft: true}
"""


def test_a_draft_challenge_is_scored_silently_and_hidden_from_players(
    client: TestClient, admin: dict[str, str], acme_text: str, runtime: Runtime
) -> None:
    document = acme_text.replace("challenges:\n", "challenges:" + DRAFT, 1)
    assert "secret-sprint" in document
    applied = client.put(P, content=document, headers={**admin, "Content-Type": "application/yaml"})
    assert applied.status_code == 201, applied.text
    reader = make_key(client, admin, "read")
    post(client, admin, [deal("won-1", "2026-11-16T15:00:00Z"), deal("won-2", "2026-11-17T15:00:00Z")])

    assert "secret-sprint" not in by_key(get_challenges(client, reader)["challenges"])
    assert "secret-sprint" not in {c["key"] for c in client.get(f"{P}/rules", headers=reader).json()["challenges"]}
    assert "secret-sprint" not in by_key(get_profile(client, reader)["challenges"])
    assert by_key(get_challenges(client, admin)["challenges"])["secret-sprint"]["draft"] is True
    with runtime.db.read() as connection:
        rows = connection.execute(select(t.challenge_completions.c.challenge, t.challenge_completions.c.period)).all()
    assert [tuple(r) for r in rows] == [("secret-sprint", "2026-W47")]  # the completion is recorded
    assert get_profile(client, admin)["balances"]["coins"] == 2 * 12  # and no reward is paid for a draft


# --------------------------------------------------------------------------- live feed (SSE)


def parse_sse(lines: list[str]) -> list[dict[str, Any]]:
    """Messages of an SSE stream: id (int), event (kind) and data (JSON); comments and retry skipped."""
    messages: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    for line in [*lines, ""]:
        if not line:
            if "data" in current:
                messages.append(current)
            current = {}
        elif line.startswith("id: "):
            current["id"] = int(line[4:])
        elif line.startswith("event: "):
            current["event"] = line[7:]
        elif line.startswith("data: "):
            current["data"] = orjson.loads(line[6:])
    return messages


def read_stream(
    client: TestClient, headers: dict[str, str], limit: int, *, since: int | None = None, last_id: int | None = None
) -> list[dict[str, Any]]:
    """``limit`` messages of the feed, read within a deadline.

    The server stops after ``limit`` messages; if it has fewer to send it would wait for
    more, so past the deadline the test posts filler events (which end the stream) and fails.
    """
    params: dict[str, Any] = {"limit": limit}
    if since is not None:
        params["since"] = since
    extra = {"Last-Event-ID": str(last_id)} if last_id is not None else {}
    lines: list[str] = []
    status: list[int] = []

    def run() -> None:
        with client.stream("GET", f"{P}/stream", params=params, headers={**headers, **extra}) as response:
            status.append(response.status_code)
            lines.extend(response.iter_lines())

    reader = threading.Thread(target=run, daemon=True)
    reader.start()
    reader.join(SSE_DEADLINE_S)
    if reader.is_alive():
        post(client, headers, [call(f"filler-{i}", "2020-01-01T12:00:00Z", participant="filler") for i in range(limit)])
        reader.join(SSE_DEADLINE_S)
        pytest.fail(f"the stream did not deliver {limit} messages within {SSE_DEADLINE_S}s")
    assert status == [200]
    return parse_sse(lines)


def feed_size(runtime: Runtime) -> int:
    with runtime.db.read() as connection:
        return int(connection.execute(select(func.count()).select_from(t.feed)).scalar_one())


def play_a_week(client: TestClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Two calls on consecutive days and five deals of 12,000 in ISO week 2026-W45."""
    events = [
        call("call-1", "2026-11-02T14:00:00Z"),
        call("call-2", "2026-11-03T14:00:00Z"),
        *(deal(f"won-{i}", f"2026-11-0{2 + i}T16:00:00Z") for i in range(5)),
    ]
    post(client, headers, events)
    return events


def test_stream_tells_awards_badges_level_streaks_and_completions_in_order(
    acme: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    play_a_week(acme, admin)
    total = feed_size(runtime)
    messages = read_stream(acme, admin, total, since=0)
    assert len(messages) == total
    ids = [m["id"] for m in messages]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert {m["event"] for m in messages} == {"award", "badge", "level", "challenge", "streak"}
    assert all(m["data"]["participant"] == "rep-17" for m in messages)

    def of(event_id: str) -> list[tuple[str, dict[str, Any]]]:
        return [(m["event"], m["data"]) for m in messages if m["data"]["event"] == event_id]

    assert [(kind, data["length"]) for kind, data in of("call-2") if kind == "streak"] == [("streak", 2)]
    assert [(kind, data["badge"], data["period"]) for kind, data in of("won-2") if kind == "badge"] == [
        ("badge", "hot-week", "2026-W45")
    ]
    fifth = of("won-4")
    assert [kind for kind, _ in fifth] == ["award", "badge", "level", "challenge"]
    award, badge, level, challenge = (data for _, data in fifth)
    assert {(e["currency"], e["amount"], e["kind"]) for e in award["entries"]} == {
        ("xp", 220, "rule"),
        ("coins", 12, "rule"),
        ("coins", 100, "challenge"),
    }
    assert (badge["badge"], badge["grade"], badge["period"]) == ("top-closer", "Bronze", "all")
    assert (level["from"], level["to"], level["up"]) == ("Rookie", "Closer", True)
    assert (challenge["challenge"], challenge["period"], challenge["value"], challenge["target"]) == (
        "five-a-week",
        "2026-W45",
        5,
        5,
    )


def test_stream_resumes_exactly_after_the_last_event_id(
    acme: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    play_a_week(acme, admin)
    total = feed_size(runtime)
    everything = read_stream(acme, admin, total, since=0)
    middle = total // 2
    resume_at = everything[middle - 1]["id"]
    by_header = read_stream(acme, admin, total - middle, last_id=resume_at)
    assert by_header == everything[middle:]
    by_query = read_stream(acme, admin, total - middle, since=resume_at)
    assert by_query == everything[middle:]
    # and what happens next comes after the resumed id
    post(acme, admin, [deal("won-next", "2026-11-09T16:00:00Z")])
    (news,) = read_stream(acme, admin, 1, last_id=everything[-1]["id"])
    assert news["id"] > everything[-1]["id"]
    assert (news["event"], news["data"]["event"]) == ("award", "won-next")


def test_stream_tells_a_revoked_badge(acme: TestClient, admin: dict[str, str], runtime: Runtime) -> None:
    play_a_week(acme, admin)
    before = feed_size(runtime)
    undo = event("undo-0", "deal.reopened", data={}, reverses="won-0", occurred_at="2026-11-10T15:00:00Z")
    post(acme, admin, [undo])
    last_seen = read_stream(acme, admin, before, since=0)[-1]["id"]
    news = read_stream(acme, admin, feed_size(runtime) - before, since=last_seen)
    kinds = [(m["event"], m["data"].get("badge")) for m in news]
    assert ("badge.revoked", "top-closer") in kinds  # 4 deals left in all: below Bronze
    assert ("badge", "top-closer") not in kinds


# --------------------------------------------------------------------------- rules in plain language


def test_rules_explain_badges_streaks_challenges_and_levels(acme: TestClient, admin: dict[str, str]) -> None:
    reader = make_key(acme, admin, "read")
    response = acme.get(f"{P}/rules", headers=reader)
    assert response.status_code == 200, response.text
    rules = response.json()
    assert [w["rule"] for w in rules["ways_to_earn"]] == ["call-logged", "follow-up-on-time", "deal-won"]
    assert rules["ways_to_earn"][0]["cap"] == {"max": 20, "per": "day"}

    badges = by_key(rules["badges"])
    assert set(badges) == {"top-closer", "hot-week"}
    closer = [(g["name"], g["explain"]) for g in badges["top-closer"]["grades"]]
    assert [name for name, _ in closer] == ["Bronze", "Gold"]
    assert "5" in closer[0][1] and "deals_won" in closer[0][1]
    assert "50" in closer[1][1]
    (hot,) = badges["hot-week"]["grades"]
    assert "3" in hot["explain"] and "week" in hot["explain"]
    assert badges["hot-week"]["repeatable"] == "week"

    (streak,) = rules["streaks"]
    assert (streak["key"], streak["metric"], streak["period"], streak["grace"]) == ("daily-caller", "calls", "day", 1)
    assert "forgiven" in streak["explain"] and "1" in streak["explain"]

    challenges = {c["key"]: c for c in rules["challenges"]}
    assert list(challenges) == ["five-a-week", "east-quarter", "october-blitz"]
    assert "5" in challenges["five-a-week"]["explain"] and "100 coins" in challenges["five-a-week"]["explain"]
    assert "team" in challenges["east-quarter"]["explain"] and "1,000,000" in challenges["east-quarter"]["explain"]
    blitz = challenges["october-blitz"]
    assert blitz["kind"] == "competition"
    assert "2026-10-01" in blitz["explain"] and "2026-10-31" in blitz["explain"] and "1000 coins" in blitz["explain"]

    levels = rules["levels"]
    assert [(s["name"], s["at"]) for s in levels["steps"]] == [("Rookie", 0), ("Closer", 1000), ("Legend", 10000)]
    assert "Closer at 1,000" in levels["explain"] and "Legend at 10,000" in levels["explain"]


# --------------------------------------------------------------------------- replay


def mechanics_rows(runtime: Runtime) -> dict[str, list[tuple[Any, ...]]]:
    with runtime.db.read() as connection:
        return {
            "badges": sorted(
                (r.badge, r.grade, r.period, r.event_id, r.revoked_by)
                for r in connection.execute(select(t.badge_grants))
            ),
            "completions": sorted(
                (r.challenge, r.period, r.event_id) for r in connection.execute(select(t.challenge_completions))
            ),
            "streaks": sorted((r.streak, r.best) for r in connection.execute(select(t.streak_runs))),
        }


def play_with_a_reversal(client: TestClient, headers: dict[str, str]) -> None:
    play_a_week(client, headers)
    post(
        client,
        headers,
        [
            event("undo-1", "deal.reopened", data={}, reverses="won-1", occurred_at="2026-11-10T15:00:00Z"),
            deal("won-5", "2026-11-11T16:00:00Z"),  # Bronze again; 2026-W45 stays hot (4 deals left)
            call("call-4", "2026-11-05T14:00:00Z"),  # a late call: the 3rd was a single missed day
        ],
    )


def test_replay_after_mechanics_is_ok(acme: TestClient, admin: dict[str, str], runtime: Runtime) -> None:
    play_with_a_reversal(acme, admin)
    report = replay(runtime, "acme-sales")
    assert report.ok, report.mismatches
    assert report.events == 10
    before = mechanics_rows(runtime)
    assert ("top-closer", "Bronze", "all", "won-5", None) in before["badges"]
    assert before["streaks"] == [("daily-caller", 3)]
    rebuilt = replay(runtime, "acme-sales", rebuild=True)
    assert rebuilt.ok and rebuilt.rebuilt
    assert mechanics_rows(runtime) == before


def test_replay_rebuild_restores_deleted_badges_streaks_and_completions(
    acme: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    play_with_a_reversal(acme, admin)
    shown = get_profile(acme, admin)
    assert {(b["key"], b["grade"]) for b in shown["badges"]} == {("hot-week", "Hot"), ("top-closer", "Bronze")}
    before = mechanics_rows(runtime)
    with runtime.db.write() as connection:
        connection.execute(text("DELETE FROM badge_grants"))
        connection.execute(text("DELETE FROM streak_runs"))
        connection.execute(text("DELETE FROM challenge_completions"))
    gone = get_profile(acme, admin)
    assert gone["badges"] == [] and gone["streaks"][0]["best"] == 0
    report = replay(runtime, "acme-sales", rebuild=True)
    assert report.rebuilt
    assert mechanics_rows(runtime) == before
    assert get_profile(acme, admin)["badges"] == shown["badges"]
    assert get_profile(acme, admin)["streaks"] == shown["streaks"]


def test_replay_reports_a_deleted_badge_grant(acme: TestClient, admin: dict[str, str], runtime: Runtime) -> None:
    """Replay compares what is derived from the log with what is stored (docs/architecture.md: badges too)."""
    play_with_a_reversal(acme, admin)
    with runtime.db.write() as connection:
        connection.execute(text("DELETE FROM badge_grants"))
    report = replay(runtime, "acme-sales")
    assert not report.ok
    assert any("badge" in mismatch for mismatch in report.mismatches), report.mismatches
