"""Group commit (events/group_commit.py) driven directly: arrival order, bounds, programs, shutdown.

A :class:`Gate` around ``ingest`` holds the first call until released, so what arrives
meanwhile deterministically forms the next group. The HTTP side is in tests/api/test_group_commit.py.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import pytest
from sqlalchemy import func, select

from levelup.events import ingest as ingestion
from levelup.events.group_commit import GroupCommit, Overloaded
from levelup.programs import service as programs
from levelup.programs.validation import load_document
from levelup.runtime import Runtime
from levelup.storage import tables as t
from tests.conftest import EXAMPLES, event

ACME = "acme-sales"
T = TypeVar("T")


class Gate:
    """Stands in for ``ingest``: records the event ids of each call, holds the first call until
    ``release`` is set, and raises for calls that ``fails`` picks; otherwise the real ``ingest``."""

    def __init__(self, fails: Callable[[list[str]], bool] = lambda ids: False) -> None:
        self.real = ingestion.ingest
        self.fails = fails
        self.calls: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, runtime: Runtime, program: str, raw_events: Sequence[Any]) -> list[ingestion.Outcome]:
        ids = [str(e.get("id")) if isinstance(e, dict) else "" for e in raw_events]
        with self.lock:
            self.calls.append(ids)
            first = len(self.calls) == 1
        if first:
            self.entered.set()
            assert self.release.wait(30), "the test never released the gate"
        if self.fails(ids):
            raise RuntimeError(f"injected failure for {ids}")
        return self.real(runtime, program, raw_events)


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Gate:
    wrapper = Gate()
    monkeypatch.setattr(ingestion, "ingest", wrapper)
    return wrapper


@pytest.fixture
def acme_runtime(runtime: Runtime) -> Runtime:
    text = (EXAMPLES / "acme-sales.yaml").read_text()
    with runtime.db.write() as connection:
        for key in (ACME, "acme-two"):
            document = text.replace(f"program: {ACME}", f"program: {key}")
            programs.apply(connection, load_document(document, program=key), actor="group-commit-test")
    return runtime


async def wait_until(condition: Callable[[], bool], seconds: float = 20) -> None:
    """Let the loop run until ``condition`` holds (fails the test after ``seconds``)."""
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.002)


def run(main: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(main)


def stored(runtime: Runtime, program: str = ACME) -> dict[str, int]:
    """How many rows each event id has in the event log of ``program``."""
    with runtime.db.read() as connection:
        rows = connection.execute(
            select(t.events.c.event_id, func.count())
            .join(t.programs, t.programs.c.id == t.events.c.program_id)
            .where(t.programs.c.key == program)
            .group_by(t.events.c.event_id)
        ).all()
    return {row[0]: row[1] for row in rows}


async def held_then(
    commit: GroupCommit, gate: Gate, requests: list[list[dict[str, Any]]], program: str = ACME
) -> list[list[ingestion.Outcome]]:
    """Submit ``requests`` in order while a first request is held in ``ingest``; then release it.
    The answers of ``requests`` (the first request's id is ``held``)."""
    first = asyncio.create_task(commit.submit(program, [event("held", participant="rep-0")]))
    await wait_until(gate.entered.is_set)
    tasks = [asyncio.create_task(commit.submit(program, events)) for events in requests]
    await wait_until(lambda: commit.waiting == sum(len(events) for events in requests))
    gate.release.set()
    assert [o.status for o in await first] == ["accepted"]
    return [await task for task in tasks]


def statuses(answers: list[list[ingestion.Outcome]]) -> list[list[str]]:
    return [[o.status if o.error is None else o.error.code for o in answer] for answer in answers]


def test_repeats_of_an_id_across_requests_are_judged_in_arrival_order(acme_runtime: Runtime, gate: Gate) -> None:
    a, b = event("e-1", data={"amount": 1000}), event("e-1", data={"amount": 2000})
    requests = [[a], [a], [b], [a, event("e-2")], [event("e-2", participant="rep-9")], [{"id": "bad"}]]
    answers = run(held_then(GroupCommit(acme_runtime), gate, requests))
    assert gate.calls == [["held"], ["e-1", "e-1", "e-1", "e-1", "e-2", "e-2", "bad"]]  # one transaction
    assert statuses(answers) == [
        ["accepted"],
        ["duplicate"],
        ["conflict"],
        ["duplicate", "accepted"],
        ["conflict"],
        ["invalid"],
    ]
    assert answers[0][0].awards == [
        {"currency": "xp", "amount": 110, "rule": "deal-won"},
        {"currency": "coins", "amount": 1, "rule": "deal-won"},
    ]
    assert stored(acme_runtime) == {"held": 1, "e-1": 1, "e-2": 1}


def test_a_lone_request_goes_at_once(acme_runtime: Runtime, gate: Gate) -> None:
    async def main() -> None:
        commit = GroupCommit(acme_runtime)
        task = asyncio.create_task(commit.submit(ACME, [event("alone")]))
        await asyncio.sleep(0)  # one step of the loop: no timer, no waiting for company
        assert commit.waiting == 0
        await asyncio.to_thread(gate.entered.wait, 20)
        gate.release.set()
        assert [o.status for o in await task] == ["accepted"]

    run(main())
    assert gate.calls == [["alone"]]


def test_groups_are_bounded_and_never_split_a_request(acme_runtime: Runtime, gate: Gate) -> None:
    singles = [[event(f"s-{i}", participant=f"rep-{i}")] for i in range(12)]
    batch = [event(f"b-{i}", participant=f"rep-{i}") for i in range(7)]
    requests = [*singles, batch, [event("last")]]
    answers = run(held_then(GroupCommit(acme_runtime, max_group=5), gate, requests))
    assert [len(call) for call in gate.calls] == [1, 5, 5, 2, 7, 1]
    assert [[o.id for o in answer] for answer in answers] == [[e["id"] for e in r] for r in requests]
    assert {s for answer in statuses(answers) for s in answer} == {"accepted"}
    assert len(stored(acme_runtime)) == 1 + 12 + 7 + 1


def test_a_failing_group_is_ingested_again_one_request_at_a_time(
    acme_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    poisoned = Gate(fails=lambda ids: "poison" in ids)
    monkeypatch.setattr(ingestion, "ingest", poisoned)
    requests = [[event("ok-1")], [event("poison")], [event("ok-1")], [event("ok-2"), event("ok-3")]]

    async def main() -> list[Any]:
        commit = GroupCommit(acme_runtime)
        first = asyncio.create_task(commit.submit(ACME, [event("held")]))
        await wait_until(poisoned.entered.is_set)
        tasks = [asyncio.create_task(commit.submit(ACME, events)) for events in requests]
        await wait_until(lambda: commit.waiting == 5)
        poisoned.release.set()
        await first
        return await asyncio.gather(*tasks, return_exceptions=True)

    ok_1, poison, again, pair = run(main())
    assert poisoned.calls[1] == ["ok-1", "poison", "ok-1", "ok-2", "ok-3"]  # the group, which failed
    assert poisoned.calls[2:] == [["ok-1"], ["poison"], ["ok-1"], ["ok-2", "ok-3"]]  # then each alone, in order
    assert isinstance(poison, RuntimeError)
    assert [o.status for o in ok_1] == ["accepted"]
    assert [o.status for o in again] == ["duplicate"]
    assert [o.status for o in pair] == ["accepted", "accepted"]
    assert stored(acme_runtime) == {"held": 1, "ok-1": 1, "ok-2": 1, "ok-3": 1}


def test_other_programs_wait_for_the_writer_on_sqlite_and_run_beside_it_on_postgres(
    acme_runtime: Runtime, gate: Gate
) -> None:
    async def main() -> None:
        commit = GroupCommit(acme_runtime)
        held = asyncio.create_task(commit.submit(ACME, [event("held")]))
        await wait_until(gate.entered.is_set)
        other = asyncio.create_task(commit.submit("acme-two", [event("other")]))
        same = asyncio.create_task(commit.submit(ACME, [event("same")]))
        if acme_runtime.db.is_sqlite:
            await asyncio.sleep(0.2)
            assert not other.done() and commit.waiting == 2
        else:
            assert [o.status for o in await asyncio.wait_for(other, 20)] == ["accepted"]
            assert not same.done() and commit.waiting == 1  # one group per program at a time
        gate.release.set()
        for task in (held, other, same):
            assert [o.status for o in await task] == ["accepted"]

    run(main())
    assert gate.calls == [["held"], ["other"], ["same"]]  # on SQLite: programs take turns at the writer
    assert stored(acme_runtime, "acme-two") == {"other": 1}


def test_too_much_waiting_is_turned_away_before_anything_is_ingested(acme_runtime: Runtime, gate: Gate) -> None:
    async def main() -> None:
        commit = GroupCommit(acme_runtime, max_waiting=3)
        held = asyncio.create_task(commit.submit(ACME, [event("held")]))
        await wait_until(gate.entered.is_set)
        waiting = [asyncio.create_task(commit.submit(ACME, [event(f"w-{i}")])) for i in range(3)]
        await wait_until(lambda: commit.waiting == 3)
        with pytest.raises(Overloaded) as refused:
            await commit.submit(ACME, [event("refused")])
        assert refused.value.status == 503 and refused.value.extra == {"retry_after": 1}
        gate.release.set()
        await held
        assert statuses(await asyncio.gather(*waiting)) == [["accepted"]] * 3
        assert [o.status for o in await commit.submit(ACME, [event("later")])] == ["accepted"]

    run(main())
    assert "refused" not in stored(acme_runtime)


def test_close_answers_everything_waiting_then_turns_new_requests_away(acme_runtime: Runtime, gate: Gate) -> None:
    async def main() -> None:
        commit = GroupCommit(acme_runtime)
        held = asyncio.create_task(commit.submit(ACME, [event("held")]))
        await wait_until(gate.entered.is_set)
        waiting = [asyncio.create_task(commit.submit(ACME, [event(f"w-{i}")])) for i in range(5)]
        await wait_until(lambda: commit.waiting == 5)
        closing = asyncio.create_task(commit.close())
        await asyncio.sleep(0.05)
        assert not closing.done()
        with pytest.raises(Overloaded):
            await commit.submit(ACME, [event("too-late")])
        gate.release.set()
        await asyncio.wait_for(closing, 20)
        assert all(task.done() for task in [held, *waiting])
        assert all([o.status for o in task.result()] == ["accepted"] for task in [held, *waiting])

    run(main())
    assert set(stored(acme_runtime)) == {"held", *(f"w-{i}" for i in range(5))}


def test_a_loop_torn_down_mid_group_lets_the_transaction_finish_and_ingests_no_abandoned_request(
    acme_runtime: Runtime, gate: Gate
) -> None:
    commit = GroupCommit(acme_runtime)

    async def main() -> None:
        tasks = [asyncio.create_task(commit.submit(ACME, [event("held")]))]
        await wait_until(gate.entered.is_set)
        tasks += [asyncio.create_task(commit.submit(ACME, [event(f"abandoned-{i}")])) for i in range(3)]
        await wait_until(lambda: commit.waiting == 3)
        threading.Timer(0.2, gate.release.set).start()  # asyncio.run cancels every task when main returns

    run(main())
    assert stored(acme_runtime) == {"held": 1}  # committed before the loop closed, not orphaned
    assert gate.calls == [["held"]]
    assert commit.waiting == 0
    with pytest.raises(Overloaded):
        run(commit.submit(ACME, [event("after")]))
