"""Anti-gaming flags over HTTP, one hand-computed case per kind, on SQLite and PostgreSQL; a clawback clears one."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

P = "/api/v1/programs/acme-sales"
KUDOS = "kudos: {currency: coins, budget: {amount: 100, per: week}}\n"
WINDOW = "from=2026-11-01T00:00:00Z&to=2030-01-01T00:00:00Z"  # New York is at -5 h on 1 January 2030


def calls(who: str, day: int, n: int, seconds: int) -> list[dict[str, Any]]:
    """``n`` calls by ``who`` on ``day`` November 2026 at 10:00 in New York, each with its own data."""
    return [
        {
            "id": f"{who}-{day}-{i}",
            "type": "activity.logged",
            "participant": who,
            "occurred_at": f"2026-11-{day:02d}T15:00:{i % 60:02d}Z",
            "data": {"kind": "call", "duration_s": seconds + i, "call": f"{who}-{day}-{i}"},
        }
        for i in range(n)
    ]


def flags(client: TestClient, admin: dict[str, str], query: str = "") -> dict[str, Any]:
    response = client.get(f"{P}/insights/flags?{WINDOW}{query}", headers=admin)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def post(client: TestClient, admin: dict[str, str], events: list[dict[str, Any]]) -> None:
    for start in range(0, len(events), 500):
        response = client.post(f"{P}/events", json={"events": events[start : start + 500]}, headers=admin)
        assert {r["status"] for r in response.json()["results"]} == {"accepted"}, response.text


def play(client: TestClient, admin: dict[str, str], acme_text: str) -> list[dict[str, Any]]:
    """The hand-computed case below: one participant (or pair) per kind of flag, and near misses."""
    put = client.put(P, content=acme_text + KUDOS, headers={**admin, "Content-Type": "application/yaml"})
    assert put.status_code == 201, put.text
    events: list[dict[str, Any]] = []
    # burst: ann calls once a day on the 2nd–5th (median 1, MAD 0), then 12 times on the 9th:
    # z = (12 − 1) / max(1.4826 × 0, 1) = 11 ≥ 5, 12 ≥ 10 and ≥ 3 × 1 → score 1 − 1/12
    for day in (2, 3, 4, 5):
        events += calls("ann", day, 1, 10)
    events += calls("ann", 9, 12, 10)
    # no burst: bob's norm is 5 a day: z = (12 − 5) / 1 = 7, but 12 < 3 × 5
    for day in (2, 3, 4, 5):
        events += calls("bob", day, 5, 10)
    events += calls("bob", 9, 12, 10)
    # near the cap (call-logged: 20 a day, near = 20 − 2 = 18): cat's paid calls are 18, 19, 20 and 2 a day,
    # 3 of her 4 days → score 0.75
    for day, n in ((2, 18), (3, 19), (4, 20), (5, 2)):
        events += calls("cat", day, n, 60)
    # repeated: dan sends the same deal twice under two ids; empty data never counts
    deal = {"amount": 5000, "deal_id": "D-1"}
    events += [
        {"id": f"dan-{i}", "type": "deal.won", "participant": "dan", "occurred_at": f"2026-11-0{i}T15:00:00Z"}
        | {"data": deal}
        for i in (2, 3)
    ]
    events += [{"id": f"dan-login-{i}", "type": "app.opened", "participant": "dan", "data": {}} for i in (1, 2)]
    post(client, admin, events)
    # a kudos ring: eve and fay give each other 10 three times; gus gives fay 10 once. fay received 40, 30 from
    # eve (0.75); eve received 30, all from fay (1.0) → score 0.75. gus and hal trade twice: below three.
    gifts = [("eve", "fay")] * 3 + [("fay", "eve")] * 3 + [("gus", "fay")] + [("gus", "hal"), ("hal", "gus")] * 2
    for giver, receiver in gifts:
        gift = {"from": giver, "to": receiver, "amount": 10, "message": "thanks"}
        assert client.post(f"{P}/kudos", json=gift, headers=admin).status_code == 201
    return events


def test_each_kind_of_flag_on_a_hand_computed_case(client: TestClient, admin: dict[str, str], acme_text: str) -> None:
    events = play(client, admin, acme_text)
    body = flags(client, admin)
    assert body["total"] == 4 and body["kinds"] == {"burst": 1, "near_cap": 1, "repeated": 1, "kudos_ring": 1}
    found = {f["kind"]: f for f in body["flags"]}
    assert [f["kind"] for f in body["flags"]] == ["burst", "kudos_ring", "near_cap", "repeated"]  # by score
    burst = found["burst"]
    assert (burst["participants"], burst["score"]) == (["ann"], round(1 - 1 / 12, 4))
    assert burst["detail"] == {"type": "activity.logged", "day": "2026-11-09", "count": 12, "usual": 1, "z": 11.0}
    assert burst["events"] == [f"ann-9-{i}" for i in range(12)]
    assert burst["sentence"] == "ann sent 12 activity.logged events on 2026-11-09, 12× their usual 1 a day"
    near = found["near_cap"]
    assert (near["participants"], near["score"]) == (["cat"], 0.75)
    assert near["detail"] | {} == {
        "rule": "call-logged",
        "cap": 20,
        "per": "day",
        "near": 18,
        "periods": 4,
        "at_cap": 3,
    }
    assert sorted(near["events"]) == sorted(
        e["id"] for e in events if e["id"].split("-")[:2] in (["cat", "2"], ["cat", "3"], ["cat", "4"])
    )
    repeated = found["repeated"]
    assert (repeated["participants"], repeated["score"], repeated["events"]) == (["dan"], 0.5, ["dan-2", "dan-3"])
    assert repeated["detail"]["copies"] == 2 and repeated["detail"]["type"] == "deal.won"
    ring = found["kudos_ring"]
    assert (ring["participants"], ring["score"], ring["detail"]) == (
        ["eve", "fay"],
        0.75,
        {"given": [30, 30], "shares": [0.75, 1.0]},
    )
    assert len(ring["kudos"]) == 6
    assert (
        ring["sentence"]
        == "eve and fay trade kudos: eve gave 75% of what fay received, and fay 100% of what eve received"
    )

    only = flags(client, admin, "&kind=repeated")
    assert only["kinds"] == {"repeated": 1} and [f["kind"] for f in only["flags"]] == ["repeated"]
    # the admin claws back the copy: the flag is gone (a reversed event no longer counts)
    clawed = client.post(f"{P}/events/dan-3/clawback", json={"note": "the same deal twice"}, headers=admin)
    assert clawed.status_code == 201
    assert flags(client, admin, "&kind=repeated")["total"] == 0


DEFAULTS = {  # as docs/insights.md documents them
    "burst_min": 10,
    "burst_ratio": 3.0,
    "burst_z": 5.0,
    "burst_days": 3,
    "cap_min": 5,
    "cap_periods": 3,
    "cap_share": 0.5,
    "ring_min": 3,
    "ring_share": 0.5,
}


def test_tuned_thresholds_change_which_flags_appear(client: TestClient, admin: dict[str, str], acme_text: str) -> None:
    """The case above under tuned thresholds, each change hand-computed; the answer says what it used."""
    play(client, admin, acme_text)

    def found(query: str) -> tuple[dict[str, Any], list[tuple[str, list[str], float]]]:
        body = flags(client, admin, query)
        return body["thresholds"], [(f["kind"], f["participants"], f["score"]) for f in body["flags"]]

    assert found("&kind=burst") == (DEFAULTS, [("burst", ["ann"], round(1 - 1 / 12, 4))])
    # bob's 12 against his usual 5: z = 7 ≥ 5 and, at a ratio of 2, 12 ≥ 2 × 5 → score 1 − 5/12
    assert found("&kind=burst&burst_ratio=2") == (
        DEFAULTS | {"burst_ratio": 2.0},
        [("burst", ["ann"], round(1 - 1 / 12, 4)), ("burst", ["bob"], round(1 - 5 / 12, 4))],
    )
    assert found("&kind=burst&burst_min=13")[1] == []  # ann's 12 are too few
    assert found("&kind=burst&burst_z=12")[1] == []  # ann's z is 11
    assert found("&kind=burst&burst_days=5")[1] == []  # ann has 4 other active days
    # cat: 3 of 4 days within 10% under the cap of 20
    assert found("&kind=near_cap&cap_share=0.75")[1] == [("near_cap", ["cat"], 0.75)]
    for query in ("cap_share=0.8", "cap_periods=4", "cap_min=21"):
        assert found(f"&kind=near_cap&{query}")[1] == [], query
    # gus and hal trade 10 twice each way, all that either received → share 1.0 at two kudos each way
    assert found("&kind=kudos_ring&ring_min=2")[1] == [
        ("kudos_ring", ["gus", "hal"], 1.0),
        ("kudos_ring", ["eve", "fay"], 0.75),
    ]
    assert found("&kind=kudos_ring&ring_share=0.8")[1] == []  # fay gave 0.75 of what eve received
    assert flags(client, admin)["total"] == 4  # a tuned request leaves nothing behind


def test_a_threshold_out_of_bounds_is_refused_by_name(acme: TestClient, admin: dict[str, str]) -> None:
    bad = {
        "burst_min=0": "query.burst_min",
        "burst_ratio=0.5": "query.burst_ratio",
        "burst_z=-1": "query.burst_z",
        "burst_z=nan": "query.burst_z",
        "burst_days=367": "query.burst_days",
        "cap_min=many": "query.cap_min",
        "cap_periods=1.5": "query.cap_periods",
        "cap_share=0": "query.cap_share",
        "ring_min=0": "query.ring_min",
        "ring_share=1.01": "query.ring_share",
    }
    for query, path in bad.items():
        refused = acme.get(f"{P}/insights/flags?{WINDOW}&{query}", headers=admin)
        assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json", query
        assert [e["path"] for e in refused.json()["errors"]] == [path], query
    both = acme.get(f"{P}/insights/flags?{WINDOW}&burst_min=0&ring_share=2", headers=admin).json()
    assert sorted(e["path"] for e in both["errors"]) == ["query.burst_min", "query.ring_share"]
    edges = flags(acme, admin, "&burst_min=1&burst_ratio=1&burst_z=0&cap_share=1&ring_share=1")["thresholds"]
    assert edges == DEFAULTS | {"burst_min": 1, "burst_ratio": 1.0, "burst_z": 0.0, "cap_share": 1.0, "ring_share": 1.0}


def test_flags_are_for_admins_and_say_what_is_wrong(acme: TestClient, admin: dict[str, str]) -> None:
    key = acme.post("/api/v1/keys", json={"role": "read", "programs": ["acme-sales"]}, headers=admin).json()["key"]
    assert acme.get(f"{P}/insights/flags", headers={"Authorization": f"Bearer {key}"}).status_code == 403
    bad = acme.get(f"{P}/insights/flags?kind=weird", headers=admin)
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "query.kind"
    backwards = acme.get(f"{P}/insights/flags?from=2026-12-01T00:00:00Z&to=2026-11-01T00:00:00Z", headers=admin)
    assert backwards.status_code == 422 and backwards.json()["errors"][0]["path"] == "to"
    assert flags(acme, admin)["sentence"] == "nothing suspicious in this window"
