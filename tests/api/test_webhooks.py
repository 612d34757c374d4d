"""Webhook subscriptions over HTTP through ``levelup.client`` against a served app whose lifespan runs the
delivery worker (docs/api.md, "Webhooks"): admin only, secret shown once, bounded, URL checked; a badge
earned by events reaches a loopback receiver as signed JSON, as a Slack message and as a Teams card; the
delivery log shows it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import REGISTRY

from levelup.api.app import create_app
from levelup.client import Client, Conflict, Forbidden, InvalidInput, NotFound
from levelup.programs.validation import load_document
from levelup.runtime import Runtime
from levelup.webhooks import formats
from levelup.webhooks.delivery import Settings, sign
from levelup.webhooks.formats import Names
from levelup.webhooks.service import MAX_SUBSCRIPTIONS
from tests.conftest import ADMIN_KEY, ROOT, event
from tests.live import Receiver, served

P = "acme-sales"
SECRET = "receiver-secret-42"
FAST = Settings(attempts=3, backoff=0.05, max_backoff=0.2, timeout=2.0, lease=10.0)


@pytest.fixture
def base_url(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("LEVELUP_ADMIN_KEY", ADMIN_KEY)
    with served(create_app(runtime, deliver=FAST)) as url:
        yield url


@pytest.fixture
def levelup(base_url: str, acme_text: str) -> Iterator[Client]:
    with Client(base_url, ADMIN_KEY) as client:
        client.apply_program(P, acme_text)
        yield client


def received(receiver: Receiver, count: int, seconds: float = 20.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + seconds
    while len(receiver.received) < count:
        assert time.monotonic() < deadline, f"{len(receiver.received)} of {count} deliveries"
        time.sleep(0.05)
    return [r.body for r in receiver.received]


def test_subscriptions_are_admin_only_bounded_and_never_show_the_secret_again(levelup: Client, base_url: str) -> None:
    made = levelup.create_webhook(P, "https://crm.example/hooks", ["badge.awarded", "award.granted"], secret=SECRET)
    assert (made.secret, made.events, made.format) == (SECRET, ["award.granted", "badge.awarded"], "json")
    generated = levelup.create_webhook(P, "http://chat.example/in", ["kudos.given"], format="slack")
    assert generated.secret.startswith("whsec_") and len(generated.secret) > 30
    listed = levelup.webhooks(P)
    assert [w.id for w in listed] == [made.id, generated.id]
    assert all("secret" not in w.model_dump() for w in listed)

    with pytest.raises(InvalidInput) as bad_url:
        levelup.create_webhook(P, "ftp://crm.example/hooks", ["badge.awarded"])
    assert [e["path"] for e in bad_url.value.errors] == ["url"]
    with pytest.raises(InvalidInput) as bad_type:
        levelup.create_webhook(P, "https://crm.example/hooks", ["deal.won"])
    assert bad_type.value.errors[0]["path"].startswith("events")
    with pytest.raises(InvalidInput):
        levelup.create_webhook(P, "https://crm.example/hooks", [])

    for i in range(MAX_SUBSCRIPTIONS - 2):
        levelup.create_webhook(P, f"https://crm.example/{i}", ["badge.awarded"])
    with pytest.raises(Conflict) as too_many:
        levelup.create_webhook(P, "https://crm.example/one-more", ["badge.awarded"])
    assert too_many.value.code == "too_many_webhooks"

    levelup.delete_webhook(P, made.id)
    assert made.id not in [w.id for w in levelup.webhooks(P)]
    with pytest.raises(NotFound):
        levelup.delete_webhook(P, made.id)
    with pytest.raises(NotFound):
        levelup.deliveries(P, made.id)

    key = httpx.post(
        f"{base_url}/api/v1/keys",
        json={"role": "ingest", "programs": [P]},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    ).json()["key"]
    with Client(base_url, key) as ingest_only, pytest.raises(Forbidden) as refused:
        ingest_only.webhooks(P)
    assert refused.value.status == 403 and refused.value.problem["status"] == 403


def test_a_badge_reaches_json_slack_and_teams_receivers(levelup: Client) -> None:
    counted = {"program": P, "outcome": "delivered"}
    delivered_before = REGISTRY.get_sample_value("levelup_webhook_deliveries_total", counted)
    levelup.put_participant(P, "rep-17", name="Dana", teams=["east"])
    with Receiver(SECRET) as plain, Receiver(SECRET) as slack, Receiver(SECRET) as teams:
        hook = levelup.create_webhook(P, plain.url, ["badge.awarded"], secret=SECRET)
        levelup.create_webhook(P, slack.url, ["badge.awarded"], secret=SECRET, format="slack")
        levelup.create_webhook(P, teams.url, ["badge.awarded"], secret=SECRET, format="teams")
        results = levelup.send_events(P, [event(f"deal-{i}", data={"amount": 1000}) for i in range(1, 6)])
        assert [r.status for r in results] == ["accepted"] * 5
        notifications = received(plain, 2)  # hot-week (3 deals in a week), then top-closer Bronze (5 in all)
        messages = received(slack, 2)
        cards = received(teams, 2)
    hot, notification = sorted(notifications, key=lambda n: n["data"]["event"])
    assert notification["id"].startswith("ntf_") and hot["id"] != notification["id"]
    assert {k: v for k, v in notification.items() if k not in ("id", "at")} == {
        "type": "badge.awarded",
        "program": P,
        "participant": "rep-17",
        "data": {"badge": "top-closer", "grade": "Bronze", "period": "all", "event": "deal-5"},
    }
    assert all(r.signed for r in plain.received + slack.received + teams.received)
    sentences = ["Dana just earned Hot week — Hot", "Dana just earned Top Closer — Bronze"]
    assert sorted(m["text"] for m in messages) == sentences
    for card in cards:
        (attachment,) = card["attachments"]
        assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert sorted(c["attachments"][0]["content"]["body"][0]["text"] for c in cards) == sentences

    deadline = time.monotonic() + 10
    log = levelup.deliveries(P, hook.id)
    while {d.status for d in log.deliveries} != {"delivered"}:  # the worker records after the receiver answers
        assert time.monotonic() < deadline
        time.sleep(0.05)
        log = levelup.deliveries(P, hook.id)
    newest = log.deliveries[0]
    assert (newest.id, newest.type, newest.body) == (notification["id"], "badge.awarded", notification)
    assert [[a.status_code for a in d.attempts] for d in log.deliveries] == [[200], [200]] and log.next is None
    delivered = REGISTRY.get_sample_value("levelup_webhook_deliveries_total", counted)
    assert (delivered or 0) - (delivered_before or 0) == 6  # two badges to three receivers (/metrics counts them)
    page = levelup.deliveries(P, hook.id, limit=1)
    assert [d.id for d in page.deliveries] == [notification["id"]] and page.next is not None


SENTENCES = [
    ("award.granted", {"awards": [{"currency": "xp", "amount": 1200, "rule": "r"}, {"currency": "coins", "amount": 5}]},
     "Dana just earned 1,200 XP and 5 Coins"),
    ("badge.revoked", {"badge": "top-closer", "grade": "Gold"}, "Dana no longer holds Top Closer — Gold"),
    ("level.changed", {"from": "Rookie", "to": "Closer", "up": True}, "Dana reached level Closer"),
    ("level.changed", {"from": "Closer", "to": "Rookie", "up": False}, "Dana is back to level Rookie"),
    ("tier.changed", {"from": None, "to": "Gold", "up": True}, "Dana moved up to the Gold tier"),
    ("tier.changed", {"from": "Gold", "to": None, "up": False}, "Dana left the Gold tier"),
    ("streak.extended", {"streak": "daily-caller", "length": 4, "best": 9}, "Dana's daily-caller streak reached 4"),
    ("challenge.completed", {"challenge": "five-a-week", "period": "2026-W47"}, "Dana completed five-a-week"),
    ("prize.paid", {"challenge": "october-blitz", "period": "20261001-20261031", "rank": 1,
                    "awards": [{"currency": "coins", "amount": 1000}]},
     "Dana won 1,000 Coins in october-blitz 20261001-20261031 (rank 1)"),
    ("redemption.created", {"reward": "gift-card-25"}, "Dana redeemed $25 gift card"),
    ("redemption.fulfilled", {"reward": "gift-card-25"}, "$25 gift card was delivered to Dana"),
    ("redemption.cancelled", {"reward": "gift-card-25"}, "Dana's redemption of $25 gift card was cancelled"),
    ("kudos.given", {"from": "rep-18", "amount": 10, "currency": "coins", "message": "thanks"},
     "Sam gave Dana 10 Coins: “thanks”"),
    ("points.expiring",
     {"currency": "coins", "amount": 40, "first_expires_at": "2026-12-09T00:00:00Z", "within_days": 7},
     "40 Coins of Dana expire within 7 days (from 2026-12-09)"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "data", "sentence"), SENTENCES)
def test_every_type_reads_as_a_sentence(acme_text: str, kind: str, data: dict[str, Any], sentence: str) -> None:
    names = Names(load_document(acme_text), {"rep-17": "Dana", "rep-18": "Sam"})
    body = {"id": "ntf_1", "type": kind, "program": P, "participant": "rep-17", "at": "…", "data": data}
    assert formats.sentence(body, names) == sentence
    assert orjson.loads(formats.render("slack", body, names)) == {"text": sentence}
    assert orjson.loads(formats.render("json", body, names)) == body


def docs_verify() -> Callable[[str, str, bytes], bool]:
    """The receiver's ``verify`` as docs/integrations.md shows it ("Webhooks out"), run as written."""
    text = (ROOT / "docs" / "integrations.md").read_text()
    section = text[text.index("## Webhooks out") :]
    code = section[section.index("```python\n") + len("```python\n") :]
    scope: dict[str, Any] = {}
    exec(code[: code.index("```")], scope)
    verify: Callable[[str, str, bytes], bool] = scope["verify"]
    return verify


def test_the_documented_receiver_check_accepts_deliveries_and_refuses_forgeries(levelup: Client) -> None:
    verify = docs_verify()
    with Receiver(SECRET) as receiver:
        levelup.create_webhook(P, receiver.url, ["award.granted"], secret=SECRET)
        levelup.send_event(P, event("deal-1"))
        received(receiver, 1)
    (delivery,) = receiver.received
    header = delivery.signature
    assert verify(SECRET, header, delivery.raw)
    assert not verify(SECRET, header, delivery.raw.replace(b"deal-1", b"deal-2"))  # tampered body
    assert not verify("another-secret", header, delivery.raw)
    stale = int(time.time()) - 3600
    assert not verify(SECRET, sign(SECRET, delivery.raw, stale), delivery.raw)  # replayed an hour later
    assert not verify(SECRET, "", delivery.raw)
