"""Expiry after inactivity: all of a participant's points go once they have earned nothing for the period."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient

from levelup.ledger import expiry
from levelup.runtime import Runtime
from tests.conftest import event

B = "/api/v1/programs/brewhouse-rewards"


def test_points_expire_after_inactivity_and_new_earning_resets_the_clock(
    client: TestClient, admin: dict[str, str], brewhouse_text: str, runtime: Runtime
) -> None:
    text = brewhouse_text.replace("expires_after: P365D}", "expires_after: P365D, expires_after_inactivity: P90D}")
    assert text != brewhouse_text
    assert client.put(B, content=text, headers={**admin, "Content-Type": "application/yaml"}).status_code == 201
    for n, (who, day) in enumerate(
        (("ivy", "2026-01-10"), ("ivy", "2026-02-01"), ("joe", "2026-01-10"), ("joe", "2026-04-20"))
    ):
        body = event(f"p-{n}", "purchase.completed", who, data={"amount": 10}, occurred_at=f"{day}T10:00:00Z")
        assert client.post(f"{B}/events", json=body, headers=admin).json()["status"] == "accepted"
    may_1 = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)  # ivy idle since 1 Feb (89 days)…
    assert expiry.run(runtime, now=may_1) == []
    may_3 = dt.datetime(2026, 5, 3, 12, tzinfo=dt.UTC)  # …and 91 days on 3 May: both her lots go; joe earned on 20 Apr
    [done] = expiry.run(runtime, now=may_3)
    assert (done.lots, done.amount) == (2, {"beans": 20})
    balances = {
        w: client.get(f"{B}/participants/{w}", headers=admin).json()["balances"]["beans"] for w in ("ivy", "joe")
    }
    assert balances == {"ivy": 0, "joe": 20}
    ledger = client.get(f"{B}/participants/ivy/ledger", headers=admin).json()["entries"]
    assert [(e["kind"], e["amount"]) for e in ledger[:2]] == [("expiry", -10), ("expiry", -10)]
    assert all("no activity" in e["explain"] for e in ledger[:2])
    assert expiry.run(runtime, now=may_3) == []  # twice changes nothing
