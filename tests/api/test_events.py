"""Events over HTTP (docs/api.md): responses, idempotency, reversals, periods, caps, CEL numbers, bad input."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import event

PROBLEM = "application/problem+json"
P = "/api/v1/programs/acme-sales"


def post(client: TestClient, headers: dict[str, str], body: Any) -> Any:
    return client.post(f"{P}/events", json=body, headers=headers)


def balances(client: TestClient, headers: dict[str, str], participant: str = "rep-17") -> dict[str, int]:
    response = client.get(f"{P}/participants/{participant}", headers=headers)
    assert response.status_code == 200, response.text
    result: dict[str, int] = response.json()["balances"]
    return result


def board(client: TestClient, headers: dict[str, str], key: str, period: str) -> dict[str, Any]:
    response = client.get(f"{P}/leaderboards/{key}", params={"period": period, "limit": 100}, headers=headers)
    assert response.status_code == 200, response.text
    return {e["id"]: e["value"] for e in response.json()["entries"]}


def call(event_id: str, at: str, duration_s: int = 90, participant: str = "rep-17") -> dict[str, Any]:
    data = {"kind": "call", "duration_s": duration_s}
    return event(event_id, "activity.logged", participant, occurred_at=at, data=data)


def test_single_event_response_shape(acme: TestClient, admin: dict[str, str]) -> None:
    response = post(acme, admin, call("c-1", "2026-11-20T15:00:00Z"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "id": "c-1",
        "status": "accepted",
        "awards": [{"currency": "xp", "amount": 5, "rule": "call-logged"}],
    }


def test_batch_shape_accepted_duplicate_rejected(acme: TestClient, admin: dict[str, str]) -> None:
    assert post(acme, admin, event("e-2")).status_code == 200
    response = post(
        acme,
        admin,
        {
            "events": [
                event("e-1", data={"amount": 5000}),
                event("e-2"),
                event("e-3", occurred_at="2026-11-20T15:04:05"),  # no offset
                event("e-1", data={"amount": 5000}),  # same batch, same content
            ]
        },
    )
    assert response.status_code == 200
    results = response.json()["results"]
    assert [(r["id"], r["status"]) for r in results] == [
        ("e-1", "accepted"),
        ("e-2", "duplicate"),
        ("e-3", "rejected"),
        ("e-1", "duplicate"),
    ]
    # 100 + 5000 / 100 = 150 XP, 5000 / 1000 = 5 coins
    assert results[0]["awards"] == [
        {"currency": "xp", "amount": 150, "rule": "deal-won"},
        {"currency": "coins", "amount": 5, "rule": "deal-won"},
    ]
    assert results[1]["awards"] == []
    assert [e["path"] for e in results[2]["errors"]] == ["occurred_at"]
    assert results[2]["errors"][0]["message"]
    assert balances(acme, admin) == {"xp": 220 + 150, "coins": 12 + 5}
    assert acme.get(f"{P}/events/e-3", headers=admin).status_code == 404


def test_duplicate_has_no_effect(acme: TestClient, admin: dict[str, str]) -> None:
    first = post(acme, admin, event("e-1"))
    assert first.json()["status"] == "accepted"
    again = post(acme, admin, event("e-1"))
    assert again.status_code == 200
    assert again.json() == {"id": "e-1", "status": "duplicate", "awards": []}
    assert balances(acme, admin) == {"xp": 220, "coins": 12}
    ledger = acme.get(f"{P}/participants/rep-17/ledger", headers=admin).json()["entries"]
    assert len(ledger) == 2
    assert board(acme, admin, "revenue-month", "2026-11") == {"rep-17": 12000}


def test_retry_without_occurred_at_is_a_duplicate(acme: TestClient, admin: dict[str, str]) -> None:
    body = {"id": "now-1", "type": "deal.won", "participant": "rep-17", "data": {"amount": 100}}
    assert post(acme, admin, body).json()["status"] == "accepted"
    assert post(acme, admin, body).json()["status"] == "duplicate"
    assert balances(acme, admin) == {"xp": 101, "coins": 0}


def test_same_id_different_content_is_a_conflict(acme: TestClient, admin: dict[str, str]) -> None:
    post(acme, admin, event("e-1"))
    response = post(acme, admin, event("e-1", data={"amount": 99999}))
    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["status"] == 409
    assert [e["path"] for e in response.json()["errors"]] == ["id"]
    in_batch = post(acme, admin, {"events": [event("e-1", participant="rep-18")]}).json()["results"]
    assert in_batch[0]["status"] == "rejected"
    assert [e["path"] for e in in_batch[0]["errors"]] == ["id"]
    assert balances(acme, admin) == {"xp": 220, "coins": 12}
    assert acme.get(f"{P}/events/e-1", headers=admin).json()["data"] == {"amount": 12000}
    assert acme.get(f"{P}/participants/rep-18", headers=admin).status_code == 404


def test_reversal_undoes_awards_and_metrics_with_compensating_entries(acme: TestClient, admin: dict[str, str]) -> None:
    post(acme, admin, event("won-1"))
    post(acme, admin, event("won-2", participant="rep-18", data={"amount": 5000}))
    assert board(acme, admin, "revenue-month", "2026-11") == {"rep-17": 12000, "rep-18": 5000}

    reopened = event("reopen-1", "deal.reopened", data={}, reverses="won-1", occurred_at="2026-11-22T10:00:00Z")
    response = post(acme, admin, reopened)
    assert response.status_code == 200
    assert response.json() == {"id": "reopen-1", "status": "accepted", "awards": []}

    assert balances(acme, admin) == {"xp": 0, "coins": 0}
    assert balances(acme, admin, "rep-18") == {"xp": 150, "coins": 5}
    assert board(acme, admin, "revenue-month", "2026-11").get("rep-17", 0) == 0
    assert board(acme, admin, "xp-all", "all").get("rep-17", 0) == 0
    top = acme.get(f"{P}/leaderboards/revenue-month", params={"period": "2026-11"}, headers=admin).json()
    assert top["entries"][0]["id"] == "rep-18"
    assert top["entries"][0]["rank"] == 1

    ledger = acme.get(f"{P}/participants/rep-17/ledger", headers=admin).json()["entries"]
    assert sorted((e["currency"], e["amount"], e["event"]) for e in ledger) == [
        ("coins", -12, "reopen-1"),
        ("coins", 12, "won-1"),
        ("xp", -220, "reopen-1"),
        ("xp", 220, "won-1"),
    ]
    assert sum(e["amount"] for e in ledger) == 0
    assert all(e["rule"] == "deal-won" for e in ledger)

    original = acme.get(f"{P}/events/won-1", headers=admin).json()
    assert original["reversed_by"] == "reopen-1"
    assert [(e["currency"], e["amount"]) for e in original["entries"]] == [("xp", 220), ("coins", 12)]
    reversal = acme.get(f"{P}/events/reopen-1", headers=admin).json()
    assert reversal["reverses"] == "won-1"
    assert sorted((e["currency"], e["amount"], e["rule"], e["rule_version"]) for e in reversal["entries"]) == [
        ("coins", -12, "deal-won", 1),
        ("xp", -220, "deal-won", 1),
    ]


def test_reversal_in_a_later_month_takes_the_metric_back_where_it_counted(
    acme: TestClient, admin: dict[str, str]
) -> None:
    post(acme, admin, event("won-oct", occurred_at="2026-10-15T15:00:00Z", data={"amount": 8000}))
    post(acme, admin, event("refund", "deal.reopened", data={}, reverses="won-oct", occurred_at="2026-11-03T15:00:00Z"))
    assert board(acme, admin, "revenue-month", "2026-10").get("rep-17", 0) == 0
    assert board(acme, admin, "revenue-month", "2026-11").get("rep-17", 0) == 0


@pytest.mark.parametrize(
    ("reversal", "path"),
    [
        (event("r-2", "deal.reopened", data={}, reverses="won-1"), "reverses"),  # won-1 is already reversed
        (event("r-3", "deal.reopened", data={}, reverses="no-such-event"), "reverses"),
        (event("r-4", "deal.reopened", "rep-99", data={}, reverses="won-2"), "participant"),
        (event("r-5", "deal.reopened", "rep-99", data={}, reverses="no-such-event"), "reverses"),
    ],
    ids=["twice", "unknown-target", "other-participant", "unknown-target-new-participant"],
)
def test_bad_reversals_are_rejected_and_change_nothing(
    acme: TestClient, admin: dict[str, str], reversal: dict[str, Any], path: str
) -> None:
    post(acme, admin, event("won-1"))
    post(acme, admin, event("won-2", data={"amount": 5000}))
    assert post(acme, admin, event("r-1", "deal.reopened", data={}, reverses="won-1")).json()["status"] == "accepted"
    before = balances(acme, admin)
    assert before == {"xp": 150, "coins": 5}

    response = post(acme, admin, reversal)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert [e["path"] for e in response.json()["errors"]] == [path]
    in_batch = post(acme, admin, {"events": [reversal]}).json()["results"]
    assert in_batch[0]["status"] == "rejected"
    assert [e["path"] for e in in_batch[0]["errors"]] == [path]

    assert balances(acme, admin) == before
    assert acme.get(f"{P}/events/{reversal['id']}", headers=admin).status_code == 404
    assert acme.get(f"{P}/participants/rep-99", headers=admin).status_code == 404
    assert board(acme, admin, "revenue-month", "2026-11") == {"rep-17": 5000}


def test_a_reversal_and_its_target_in_one_batch(acme: TestClient, admin: dict[str, str]) -> None:
    results = post(
        acme,
        admin,
        {"events": [event("won-1"), event("undo-1", "deal.reopened", data={}, reverses="won-1")]},
    ).json()["results"]
    assert [r["status"] for r in results] == ["accepted", "accepted"]
    assert balances(acme, admin) == {"xp": 0, "coins": 0}


def test_late_event_counts_in_the_period_it_occurred(acme: TestClient, admin: dict[str, str]) -> None:
    post(acme, admin, event("nov-1", occurred_at="2026-11-20T15:00:00Z", data={"amount": 1000}))
    post(acme, admin, event("nov-2", occurred_at="2026-11-25T15:00:00Z", data={"amount": 2000}))
    late = post(acme, admin, event("oct-1", occurred_at="2026-10-12T15:00:00Z", data={"amount": 4000}))
    assert late.json()["status"] == "accepted"
    # 03:00 UTC on 1 November is 23:00 on 31 October in New York (EDT, UTC-4): October
    post(acme, admin, event("oct-2", occurred_at="2026-11-01T03:00:00Z", data={"amount": 300}))
    assert board(acme, admin, "revenue-month", "2026-10") == {"rep-17": 4300}
    assert board(acme, admin, "revenue-month", "2026-11") == {"rep-17": 3000}
    assert board(acme, admin, "team-revenue", "2026-Q4") == {}  # rep-17 is in no team


def test_cap_of_20_calls_a_day_in_the_program_time_zone(acme: TestClient, admin: dict[str, str]) -> None:
    # 20 qualifying calls on Friday 20 November 2026 (New York), from 09:00 EST
    calls = [call(f"call-{i}", f"2026-11-20T14:{i:02d}:00Z") for i in range(20)]
    results = post(acme, admin, {"events": calls}).json()["results"]
    assert [r["awards"] for r in results] == [[{"currency": "xp", "amount": 5, "rule": "call-logged"}]] * 20
    # a short call does not qualify (and so uses no cap)
    assert post(acme, admin, call("short", "2026-11-20T20:00:00Z", duration_s=59)).json()["awards"] == []
    # 04:30 UTC on the 21st is 23:30 on the 20th in New York (EST, UTC-5): the 21st call that day
    capped = post(acme, admin, call("call-20", "2026-11-21T04:30:00Z"))
    assert capped.json() == {"id": "call-20", "status": "accepted", "awards": []}
    # 05:30 UTC on the 21st is 00:30 on the 21st in New York: a new day
    next_day = post(acme, admin, call("call-21", "2026-11-21T05:30:00Z"))
    assert next_day.json()["awards"] == [{"currency": "xp", "amount": 5, "rule": "call-logged"}]
    assert balances(acme, admin) == {"xp": 20 * 5 + 5, "coins": 0}
    # the capped call still counts as a call
    stored = acme.get(f"{P}/events/call-20", headers=admin).json()
    assert stored["entries"] == []
    assert {"metric": "calls", "period": "all", "delta": 1.0} in stored["metrics"]


def test_cap_applies_to_each_participant_separately(acme: TestClient, admin: dict[str, str]) -> None:
    calls = [call(f"a-{i}", f"2026-11-20T14:{i:02d}:00Z") for i in range(21)]
    calls += [call(f"b-{i}", f"2026-11-20T14:{i:02d}:00Z", participant="rep-18") for i in range(3)]
    post(acme, admin, {"events": calls})
    assert balances(acme, admin)["xp"] == 100
    assert balances(acme, admin, "rep-18")["xp"] == 15


@pytest.mark.parametrize(
    ("amount", "xp", "coins"),
    [
        (12000, 220, 12),  # 100 + 120 = 220; 12
        (12000.5, 220, 12),  # 100 + 120.005 → 220; 12.0005 → 12
        (999, 109, 0),  # 100 + 9.99 → 109; 0.999 → 0: zero awards nothing
        (150.75, 101, 0),  # 100 + 1.5075 → 101
    ],
)
def test_amount_divided_by_100_behaves_as_a_user_expects(
    acme: TestClient, admin: dict[str, str], amount: float, xp: int, coins: int
) -> None:
    response = post(acme, admin, event("e-1", data={"amount": amount}))
    assert response.status_code == 200
    expected = [{"currency": "xp", "amount": xp, "rule": "deal-won"}]
    if coins:
        expected.append({"currency": "coins", "amount": coins, "rule": "deal-won"})
    assert response.json()["awards"] == expected
    assert balances(acme, admin) == {"xp": xp, "coins": coins}
    assert board(acme, admin, "revenue-month", "2026-11") == {"rep-17": amount}


def test_failing_award_expression_awards_nothing_but_the_event_is_stored(
    acme: TestClient, admin: dict[str, str]
) -> None:
    response = post(acme, admin, event("e-1", data={"amount": "lots"}))
    assert response.status_code == 200
    assert response.json() == {"id": "e-1", "status": "accepted", "awards": []}
    stored = acme.get(f"{P}/events/e-1", headers=admin)
    assert stored.status_code == 200
    body = stored.json()
    assert body["data"] == {"amount": "lots"}
    assert body["entries"] == []
    sources = {p["source"] for p in body["problems"]}
    assert "rule:deal-won" in sources
    assert all(p["message"] for p in body["problems"])
    assert balances(acme, admin) == {"xp": 0, "coins": 0}
    assert post(acme, admin, event("e-1", data={"amount": "lots"})).json()["status"] == "duplicate"


def test_condition_reading_a_missing_field_is_false_without_a_problem(acme: TestClient, admin: dict[str, str]) -> None:
    no_duration = event("c-1", "activity.logged", data={"kind": "call"})
    no_due_date = event("t-1", "task.completed", data={"completed_at": "2026-11-20T10:00:00Z"})
    no_kind = event("c-2", "activity.logged", data={"duration_s": 600})
    for body in (no_duration, no_due_date, no_kind):
        response = post(acme, admin, body)
        assert response.json() == {"id": body["id"], "status": "accepted", "awards": []}
        stored = acme.get(f"{P}/events/{body['id']}", headers=admin).json()
        assert stored["problems"] == []
        assert stored["entries"] == []
    assert balances(acme, admin) == {"xp": 0, "coins": 0}


def test_follow_up_on_time_compares_timestamps(acme: TestClient, admin: dict[str, str]) -> None:
    on_time = {"completed_at": "2026-11-20T10:00:00Z", "due_at": "2026-11-20T12:00:00Z"}
    late = {"completed_at": "2026-11-20T13:00:00Z", "due_at": "2026-11-20T12:00:00Z"}
    assert post(acme, admin, event("t-1", "task.completed", data=on_time)).json()["awards"] == [
        {"currency": "xp", "amount": 10, "rule": "follow-up-on-time"}
    ]
    assert post(acme, admin, event("t-2", "task.completed", data=late)).json()["awards"] == []


def _nested(depth: int) -> dict[str, Any]:
    """An object ``depth`` objects deep: ``_nested(2) == {"a": {"a": 1}}``."""
    data: Any = 1
    for _ in range(depth):
        data = {"a": data}
    assert isinstance(data, dict)
    return data


BAD_EVENTS: list[tuple[str, Any, int, str]] = [
    ("type-not-a-string", {**event("bad-1"), "type": 5}, 422, "type"),
    ("type-not-dotted-lowercase", event("bad-1", kind="Deal Won"), 422, "type"),
    ("missing-participant", {"id": "bad-1", "type": "deal.won"}, 422, "participant"),
    ("missing-id", {"type": "deal.won", "participant": "rep-17"}, 422, "id"),
    ("naive-occurred-at", event("bad-1", occurred_at="2026-11-20T15:04:05"), 422, "occurred_at"),
    ("occurred-at-a-number", event("bad-1", occurred_at=1763651045), 422, "occurred_at"),
    ("data-not-an-object", event("bad-1", data=[1, 2]), 422, "data"),
    ("data-too-big", event("bad-1", data={"notes": "x" * (64 * 1024)}), 422, "data"),
    ("data-too-deep", event("bad-1", data=_nested(17)), 422, "data"),
    ("id-too-long", event("x" * 201), 422, "id"),
    ("unknown-field", {**event("bad-1"), "amount": 5}, 422, "amount"),
    ("batch-of-1001", {"events": [event(f"bad-{i}") for i in range(1001)]}, 413, "events"),
    ("events-not-a-list", {"events": {"id": "bad-1"}}, 422, "events"),
]


@pytest.mark.parametrize(("body", "status", "path"), [c[1:] for c in BAD_EVENTS], ids=[c[0] for c in BAD_EVENTS])
def test_bad_input_is_a_problem_naming_the_field_and_changes_nothing(
    acme: TestClient, admin: dict[str, str], body: Any, status: int, path: str
) -> None:
    response = post(acme, admin, body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == status
    assert problem["title"] and problem["detail"]
    assert path in [e["path"] for e in problem["errors"]], problem
    assert acme.get(f"{P}/events/bad-1", headers=admin).status_code == 404
    assert acme.get(f"{P}/participants/rep-17", headers=admin).status_code == 404


def test_limits_are_inclusive(acme: TestClient, admin: dict[str, str]) -> None:
    """An id of 200 characters, data of 64 KiB or nested 16 deep and a batch of 1000 are all fine."""
    assert post(acme, admin, event("x" * 200)).json()["status"] == "accepted"
    assert post(acme, admin, event("deep", kind="note.added", data=_nested(16))).json()["status"] == "accepted"
    # '{"notes":"' + 65,524 × "x" + '"}' is exactly 65,536 bytes of JSON
    full = event("full", kind="note.added", data={"notes": "x" * (64 * 1024 - 12)})
    assert post(acme, admin, full).json()["status"] == "accepted"
    results = post(acme, admin, {"events": [event(f"b-{i}", data={"amount": 100}) for i in range(1000)]}).json()
    assert {r["status"] for r in results["results"]} == {"accepted"}
    assert len(results["results"]) == 1000


@pytest.mark.parametrize("content", [b"{not json", b"", b"[1, 2"], ids=["garbage", "empty", "truncated"])
def test_non_json_body_is_a_problem_naming_the_body(acme: TestClient, admin: dict[str, str], content: bytes) -> None:
    response = acme.post(f"{P}/events", content=content, headers={**admin, "Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == 422
    assert problem["errors"], "a validation problem lists its errors with their paths (docs/api.md)"
    assert all(e["path"] and e["message"] for e in problem["errors"])
    assert acme.get(f"{P}/participants/rep-17", headers=admin).status_code == 404


def test_an_event_shows_entries_rules_versions_and_metrics(
    acme: TestClient, admin: dict[str, str], acme_text: str
) -> None:
    post(acme, admin, event("won-1"))
    body = acme.get(f"{P}/events/won-1", headers=admin).json()
    assert (body["id"], body["type"], body["participant"]) == ("won-1", "deal.won", "rep-17")
    assert body["occurred_at"].startswith("2026-11-20T15:04:05")
    assert body["data"] == {"amount": 12000}
    assert [(e["currency"], e["amount"], e["rule"], e["rule_version"]) for e in body["entries"]] == [
        ("xp", 220, "deal-won", 1),
        ("coins", 12, "deal-won", 1),
    ]
    metrics = {m["metric"]: m["delta"] for m in body["metrics"] if m.get("period") == "all"}
    assert metrics == {"deals_won": 1, "revenue": 12000}
    assert body["problems"] == []

    # a new program version: a new event is explained by the rule of that version
    v2 = acme_text.replace('"100 + data.amount / 100"', '"200 + data.amount / 100"')
    assert acme.put(P, content=v2, headers={**admin, "Content-Type": "application/yaml"}).json()["version"] == 2
    post(acme, admin, event("won-2"))
    second = acme.get(f"{P}/events/won-2", headers=admin).json()
    assert [(e["currency"], e["amount"], e["rule_version"]) for e in second["entries"]] == [
        ("xp", 320, 2),
        ("coins", 12, 2),
    ]
    assert acme.get(f"{P}/events/won-1", headers=admin).json()["entries"][0]["rule_version"] == 1


def test_unknown_event_and_unknown_program_are_404(acme: TestClient, admin: dict[str, str]) -> None:
    missing = acme.get(f"{P}/events/nope", headers=admin)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == PROBLEM
    response = acme.post("/api/v1/programs/nope/events", json=event("e-1"), headers=admin)
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
