"""The webhook outbox and its delivery worker (docs/api.md, "Webhooks"), on SQLite and PostgreSQL:
notifications commit with their effect or not at all; a worker killed mid-delivery loses nothing; retries
keep the id and back off; the last failure leaves the notification failed; two workers never send one
notification at once; a lost claim changes nothing."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from levelup.challenges.closing import close_periods
from levelup.errors import Conflict
from levelup.events.ingest import ingest
from levelup.ledger import expiry, posting
from levelup.programs import service as programs
from levelup.runtime import Runtime
from levelup.storage import tables as t
from levelup.webhooks import delivery, service
from levelup.webhooks.delivery import Settings, Worker
from tests.live import Receiver
from tests.storage.test_closing import AFTER_CLOSE, deal, setup
from tests.storage.test_loyalty import bought, brewhouse, cancel_now, redeem_now

SECRET = "test-secret-0123456789"
FAST = Settings(attempts=3, backoff=0.05, max_backoff=0.2, timeout=1.0, lease=2.0, batch=50, concurrency=8)
KEY = "acme-sales"


def subscribe(runtime: Runtime, url: str, events: list[str], program: str = KEY) -> int:
    with runtime.db.write() as connection:
        record = programs.find(connection, program)
        made = service.subscribe(connection, record, url=url, events=events, secret=SECRET, format="json", actor="test")
    service.forget(runtime.db.engine, record.id)
    return int(made["id"])


def outbox(runtime: Runtime) -> list[Any]:
    with runtime.db.read() as connection:
        return list(connection.execute(select(t.webhook_outbox).order_by(t.webhook_outbox.c.id)))


def attempts(runtime: Runtime) -> list[Any]:
    with runtime.db.read() as connection:
        return list(connection.execute(select(t.webhook_attempts).order_by(t.webhook_attempts.c.id)))


def deliver(runtime: Runtime, settings: Settings = FAST) -> delivery.Round:
    """One round of a worker: claim what is due, send it, record the answers."""
    with httpx.Client() as client:
        worker = Worker(runtime, settings, client)
        try:
            return worker.run_once()
        finally:
            worker.close()


def until(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def answer_after(seconds: float) -> Callable[[dict[str, Any]], int]:
    def answer(_body: dict[str, Any]) -> int:
        time.sleep(seconds)
        return 200

    return answer


def test_nothing_is_written_without_a_subscription_for_the_type(runtime: Runtime, acme_text: str) -> None:
    setup(runtime, acme_text)
    ingest(runtime, KEY, [deal("d-1", "ann", 9000)])
    subscribe(runtime, "http://127.0.0.1:9/hook", ["redemption.created"])
    ingest(runtime, KEY, [deal("d-2", "ann", 9000)])
    assert outbox(runtime) == []
    subscribe(runtime, "http://127.0.0.1:9/hook", ["award.granted"])
    ingest(runtime, KEY, [deal("d-3", "ann", 9000)])
    (row,) = outbox(runtime)
    assert row.body["type"] == "award.granted" and row.body["data"]["event"] == "d-3"
    assert set(row.body) == {"id", "type", "program", "participant", "at", "data"}
    assert (row.body["program"], row.body["participant"]) == (KEY, "ann")
    at = dt.datetime.strptime(row.body["at"], "%Y-%m-%dT%H:%M:%S%z")  # when the effect happened (received)
    assert abs(at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)


def test_no_notification_for_an_effect_that_rolled_back(
    runtime: Runtime, acme_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup(runtime, acme_text)
    subscribe(runtime, "http://127.0.0.1:9/hook", ["award.granted"])
    seen_inside: list[int] = []

    def fail_after_publish(connection: Any, *args: Any, **kwargs: Any) -> None:
        # the feed (and so the outbox) was written just before, in this transaction: then it aborts
        seen_inside.append(len(connection.execute(select(t.webhook_outbox.c.id)).all()))
        raise RuntimeError("the effect fails after its notification was written")

    monkeypatch.setattr(posting, "post", fail_after_publish)
    with pytest.raises(RuntimeError):
        ingest(runtime, KEY, [deal("doomed", "ann", 9000)])
    monkeypatch.undo()
    assert seen_inside == [1] and outbox(runtime) == []
    ingest(runtime, KEY, [deal("kept", "ann", 9000)])
    assert [r.body["data"]["event"] for r in outbox(runtime)] == ["kept"]


def test_retries_keep_the_id_back_off_then_deliver(runtime: Runtime, acme_text: str) -> None:
    answers = iter([500, 503, 200])
    with Receiver(SECRET, lambda _body: next(answers)) as receiver:
        setup(runtime, acme_text)
        subscribe(runtime, receiver.url, ["award.granted"])
        ingest(runtime, KEY, [deal("d-1", "ann", 9000)])
        for _ in range(3):
            until(lambda: deliver(runtime).claimed == 1, 5)
    (row,) = outbox(runtime)
    assert (row.status, row.attempts, row.claim) == ("delivered", 3, None)
    assert receiver.ids() == [row.notification] * 3 and all(r.signed for r in receiver.received)
    log = attempts(runtime)
    assert [a.status_code for a in log] == [500, 503, 200]
    gaps = [b.at - a.at for a, b in zip(receiver.received, receiver.received[1:], strict=False)]
    assert gaps[0] >= FAST.backoff * 0.5 and gaps[1] >= FAST.backoff * 2 * 0.5  # exponential, jittered


def test_the_last_failure_leaves_it_failed(runtime: Runtime, acme_text: str) -> None:
    with Receiver(SECRET, lambda _body: 410) as receiver:
        setup(runtime, acme_text)
        subscribe(runtime, receiver.url, ["award.granted"])
        ingest(runtime, KEY, [deal("d-1", "ann", 9000)])
        for _ in range(FAST.attempts):
            until(lambda: deliver(runtime).claimed == 1, 5)
        time.sleep(FAST.max_backoff)
        assert deliver(runtime).claimed == 0  # never tried again
    (row,) = outbox(runtime)
    assert (row.status, row.attempts) == ("failed", FAST.attempts)
    assert [a.status_code for a in attempts(runtime)] == [410] * FAST.attempts
    assert len(receiver.received) == FAST.attempts


def test_a_timeout_is_a_failed_attempt(runtime: Runtime, acme_text: str) -> None:
    slow = Settings(attempts=2, backoff=0.05, timeout=0.2, lease=2.0)
    with Receiver(SECRET, answer_after(0.6)) as receiver:
        setup(runtime, acme_text)
        subscribe(runtime, receiver.url, ["award.granted"])
        ingest(runtime, KEY, [deal("d-1", "ann", 9000)])
        assert deliver(runtime, slow).retrying == 1
    (attempt,) = attempts(runtime)
    assert (attempt.status_code, attempt.error) == (None, "timeout")
    assert outbox(runtime)[0].status == "pending"


def test_a_lost_claim_changes_nothing(runtime: Runtime, acme_text: str) -> None:
    """A worker slower than its lease: another claims the row; the first one's answer is logged, not applied."""
    setup(runtime, acme_text)
    subscribe(runtime, "http://127.0.0.1:9/hook", ["award.granted"])
    ingest(runtime, KEY, [deal("d-1", "ann", 9000)])
    now = dt.datetime.now(dt.UTC)
    with runtime.db.write() as connection:
        (first,) = delivery.claim(connection, runtime.programs, "first", now, FAST)
    with runtime.db.write() as connection:
        assert delivery.claim(connection, runtime.programs, "second", now, FAST) == []  # held by the lease
    later = now + dt.timedelta(seconds=FAST.lease + 1)
    with runtime.db.write() as connection:
        (second,) = delivery.claim(connection, runtime.programs, "second", later, FAST)
    assert second.notification == first.notification
    with runtime.db.write() as connection:
        late = delivery.Result(first, later, 200, None, 5)
        delivery.record(connection, "first", [late], FAST)
    (row,) = outbox(runtime)
    assert (row.status, row.claim, row.attempts) == ("pending", "second", 0)
    with runtime.db.write() as connection:
        delivery.record(connection, "second", [delivery.Result(second, later, 200, None, 5)], FAST)
    assert outbox(runtime)[0].status == "delivered" and len(attempts(runtime)) == 2


def test_two_workers_never_send_one_notification_at_once(runtime: Runtime, db_url: str, acme_text: str) -> None:
    other = Runtime.from_url(db_url, migrate=False)
    small = Settings(attempts=3, backoff=0.05, timeout=1.0, lease=2.0, batch=5, concurrency=5)
    try:
        with Receiver(SECRET, answer_after(0.01)) as receiver:
            setup(runtime, acme_text)
            subscribe(runtime, receiver.url, ["award.granted"])
            ingest(runtime, KEY, [deal(f"d-{i}", ("ann", "bob", "cat")[i % 3], 9000) for i in range(60)])

            with httpx.Client() as client, ThreadPoolExecutor(2) as pool:
                workers = [Worker(runtime, small, client), Worker(other, small, client)]
                rounds = list(pool.map(Worker.run_until_idle, workers))
                for worker in workers:
                    worker.close()
        assert receiver.overlaps == []
        assert sorted(Counter(receiver.ids()).values()) == [1] * 60  # each sent once: no claim was shared
        assert sum(r.delivered for r in rounds) == 60
        assert {r.status for r in outbox(runtime)} == {"delivered"}
    finally:
        other.db.dispose()


def test_a_worker_killed_mid_delivery_loses_nothing(runtime: Runtime, db_url: str, acme_text: str) -> None:
    """``levelup deliver --forever`` killed (SIGKILL) while the receiver holds a delivery, then restarted:
    every notification arrives, each id at least once, and the ids are exactly the outbox's."""
    arrived, release = threading.Event(), threading.Event()

    def answer(_body: dict[str, Any]) -> int:
        if not arrived.is_set():
            arrived.set()
            release.wait(20)  # in flight until the worker is dead
        return 200

    executable = shutil.which("levelup")
    assert executable is not None
    env = {
        **os.environ,
        "LEVELUP_DATABASE_URL": db_url,
        "LEVELUP_WEBHOOK_LEASE": "1.5",
        "LEVELUP_WEBHOOK_TIMEOUT": "1",
        "LEVELUP_WEBHOOK_BACKOFF": "0.05",
        "LEVELUP_WEBHOOK_BATCH": "4",
        "LEVELUP_WEBHOOK_CONCURRENCY": "4",
    }
    command = [executable, "deliver", "--forever", "--idle", "0.05"]
    with Receiver(SECRET, answer) as receiver:
        setup(runtime, acme_text)
        subscribe(runtime, receiver.url, ["award.granted"])
        sent = [f"d-{i}" for i in range(12)]
        ingest(runtime, KEY, [deal(e, ("ann", "bob", "cat")[i % 3], 9000) for i, e in enumerate(sent)])
        first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            assert arrived.wait(30), "the worker sent nothing"
            first.send_signal(signal.SIGKILL)
            assert first.wait(10) == -signal.SIGKILL
        finally:
            first.kill()
            release.set()
        held = receiver.ids()[0]
        second = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            until(lambda: {r.status for r in outbox(runtime)} == {"delivered"})
        finally:
            second.kill()
            second.wait(10)
    rows = outbox(runtime)
    ids = receiver.ids()
    assert set(ids) == {r.notification for r in rows} and len(rows) == len(sent)
    assert sorted(r.body["data"]["event"] for r in {r.body["id"]: r for r in receiver.received}.values()) == sorted(
        sent
    )
    assert ids.count(held) >= 2  # the delivery cut by the kill was made again, with the same id
    assert all(r.signed for r in receiver.received)


def test_prizes_paid_by_a_closing_notify_each_winner(runtime: Runtime, acme_text: str) -> None:
    setup(runtime, acme_text)
    subscribe(runtime, "http://127.0.0.1:9/hook", ["prize.paid"])
    ingest(runtime, KEY, [deal("a1", "ann", 9000), deal("b1", "bob", 5000), deal("c1", "cat", 7000)])
    close_periods(runtime, now=AFTER_CLOSE)
    paid = {r.body["participant"]: r.body["data"] for r in outbox(runtime)}
    assert {p: (d["rank"], d["awards"]) for p, d in paid.items()} == {
        "ann": (1, [{"currency": "coins", "amount": 1000}]),
        "cat": (2, [{"currency": "coins", "amount": 500}]),
        "bob": (3, [{"currency": "coins", "amount": 250}]),
    }


def test_redemptions_and_expiring_points_notify(runtime: Runtime) -> None:
    """Effects outside the feed: a redemption made and cancelled, and points about to expire, warned of
    once however often the lots job runs; a refused redemption writes nothing."""
    brewhouse(runtime)
    types = ["redemption.created", "redemption.cancelled", "points.expiring"]
    subscribe(runtime, "http://127.0.0.1:9/hook", types, program="brewhouse-rewards")
    now = dt.datetime.now(dt.UTC)
    ingest(runtime, "brewhouse-rewards", [bought("p1", "amy", 200, now - dt.timedelta(days=360))])
    made = redeem_now(runtime, "amy", "free-coffee", "k1")
    with pytest.raises(Conflict):
        redeem_now(runtime, "amy", "free-coffee", "k2")  # 50 beans left: refused, rolled back
    cancel_now(runtime, int(made["id"]))
    expiry.run(runtime, now=now)
    expiry.run(runtime, now=now + dt.timedelta(minutes=1))
    rows = [(r.type, r.body["participant"], r.body["data"]) for r in outbox(runtime)]
    redemption = {"id": made["id"], "reward": "free-coffee", "cost": {"beans": 150}}
    assert rows[:2] == [
        ("redemption.created", "amy", {**redemption, "status": "pending"}),
        ("redemption.cancelled", "amy", {**redemption, "status": "cancelled"}),
    ]
    ((kind, who, data),) = rows[2:]
    assert (kind, who, data["currency"], data["amount"], data["within_days"]) == (
        "points.expiring",
        "amy",
        "beans",
        200,
        7,
    )


def test_a_worker_claims_no_more_than_it_can_send_within_the_lease() -> None:
    """16 at a time with 10 s time-outs: five waves (50 s) end within a 60 s lease, so 80 at most; a
    lease no longer than the timeout is refused."""
    assert Settings(timeout=10, lease=60, batch=100, concurrency=16).claim_size == 80
    assert Settings(timeout=10, lease=60, batch=64, concurrency=16).claim_size == 64
    assert Settings(timeout=1, lease=1.5, batch=50, concurrency=4).claim_size == 4
    with pytest.raises(ValueError, match="lease"):
        Settings(timeout=10, lease=10)
