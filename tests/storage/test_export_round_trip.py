"""Export and recovery: a program rebuilt from its export equals the original in every derived figure.

The source is the demo's acme-sales on SQLite, played with every 12th real CRM event (levelup demo's data)
received in batches over time, and every other kind of input between them: two document versions, manual
adjustments, kudos, redemptions (one cancelled, one fulfilled), refunds and reversals, a suspension, a
case answered with an adjustment, an erasure, and the closing job at its moment. It is exported
(``levelup export``), imported into a fresh SQLite and a fresh PostgreSQL database under another key
(``levelup import-program --as``), and everything derived is compared by external ids: positions, ledger
entries, lots, metric totals and samples, rule counters, badges, goals, streaks, closed periods, ranks,
every leaderboard, every profile (levels, tiers, progress), the liability report, and replay on the copy.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, select
from typer.testing import CliRunner

from levelup.api.app import create_app
from levelup.cases import service as cases
from levelup.cli.demo import set_up
from levelup.cli.main import app as cli
from levelup.demo import sales
from levelup.events.ingest import ingest
from levelup.events.replay import replay
from levelup.jobs import registry as jobs
from levelup.kudos import service as kudos
from levelup.kudos.service import give
from levelup.leaderboards.service import leaderboard
from levelup.ledger import service as ledger
from levelup.ledger.liability import liability
from levelup.participants import erasure, visibility
from levelup.participants import repository as participants
from levelup.participants.profile import profile
from levelup.programs import export
from levelup.programs import service as programs
from levelup.programs.validation import load_document
from levelup.rewards import service as rewards
from levelup.runtime import Runtime
from levelup.storage import tables as t
from tests.conftest import ADMIN_KEY, fresh_database

KEY, COPY = "acme-sales", "acme-restored"
STEP, BATCH = 12, 150  # every 12th real event (2016-10 to 2017-12), received 150 at a time
AS_OF = dt.datetime(2017, 3, 1, tzinfo=dt.UTC)  # profiles and the liability are read as of this moment
HOUR, SECOND = dt.timedelta(hours=1), dt.timedelta(seconds=1)  # distinct times: a tie's order is not kept


def _play(runtime: Runtime) -> None:
    """The source program's history: real events in batches, and every other input between them."""
    set_up(runtime)
    stream = list(sales.events())[::STEP]
    reps = sorted({e["participant"] for e in stream})
    with runtime.db.write() as connection:
        v2 = sales.program_text() + "kudos: {currency: coins, budget: {amount: 50, per: month}}\n"
        programs.apply(connection, load_document(v2), actor="admin-key")
    won = [e for e in stream if e["type"] == "deal.won"]
    for n in range(0, len(stream), BATCH):
        batch = stream[n : n + BATCH]
        now = dt.datetime.fromisoformat(batch[-1]["occurred_at"]) + HOUR
        assert {o.status for o in ingest(runtime, KEY, batch, now=now)} == {"accepted"}
        _between(runtime, n // BATCH, reps, won[: n // 4], now + HOUR)
    erase_at = dt.datetime.fromisoformat(stream[-1]["occurred_at"]) + 3 * HOUR
    with runtime.db.write() as connection:
        erasure.erase(connection, programs.find(connection, KEY).id, reps[-1], actor="admin-key", now=erase_at)
        visibility.set_hidden(connection, programs.find(connection, KEY).id, reps[0], True)


def _between(runtime: Runtime, turn: int, reps: list[str], earlier_wins: list[dict[str, Any]], at: dt.datetime) -> None:
    """One turn's other inputs at ``at`` (after batch ``turn``), each through the path that takes it live."""
    rep, other = reps[turn % len(reps)], reps[(turn + 7) % len(reps)]
    with runtime.db.write() as connection:
        program = programs.find(connection, KEY)
        compiled = runtime.programs.compiled(connection, program)
        adjust = {"currency": "coins", "amount": 600, "note": f"turn {turn}", "idempotency_key": f"adj-{turn}"}
        ledger.adjust(connection, program, compiled, participant=rep, actor="admin-key", now=at, **adjust)
        given = give(
            connection, program, compiled, giver=other, receiver=rep, amount=10, message="nice", now=at + SECOND
        )
        if turn % 4 == 1:  # some kudos clawed back (a ring, say), with a note the audit log keeps
            kudos.clawback(
                connection,
                program,
                compiled,
                kudos_id=given["id"],
                note=f"ring {turn}",
                actor="admin-key",
                now=at + SECOND,
            )
        made, _ = rewards.redeem(
            connection,
            program,
            compiled,
            participant=rep,
            reward_key="gift-card-25",
            idempotency_key=f"r-{turn}",
            now=at + 2 * SECOND,
        )
        act = (rewards.cancel, rewards.fulfil)[turn % 2] if turn % 3 == 0 else None
        if act is not None:
            act(connection, program, made["id"], actor="admin-key", now=at + HOUR)
        if turn == 2:
            participants.set_status(
                connection, program.id, other, "suspended", note="audit", actor="admin-key", now=at + 3 * SECOND
            )
        if turn == 3:
            participants.set_status(
                connection, program.id, reps[(2 + 7) % len(reps)], "active", note="ok", actor="k", now=at + 3 * SECOND
            )
            case = cases.open_case(
                connection, program, participants.find_id(connection, program.id, rep), "lost deal", now=at + 4 * SECOND
            )
            cases.answer(
                connection,
                program,
                compiled,
                case,
                status="resolved",
                reply="fixed",
                actor="admin-key",
                currency="coins",
                amount=25,
                now=at + HOUR + SECOND,
            )
    if earlier_wins:  # a full reversal and a partial refund of earlier deals
        full, part = earlier_wins[-1], earlier_wins[len(earlier_wins) // 2]
        refunds = [
            {"id": f"rev-{turn}", "type": "deal.lost", "participant": full["participant"], "reverses": full["id"]},
            {
                "id": f"ref-{turn}",
                "type": "deal.lost",
                "participant": part["participant"],
                "reverses": part["id"],
                "portion": 0.25,
            },
        ]
        later = at + 10 * SECOND
        outcomes = ingest(
            runtime, KEY, [e | {"occurred_at": later.isoformat(), "data": {}} for e in refunds], now=later
        )
        assert all(o.status in ("accepted", "rejected") for o in outcomes)  # an already refunded one is refused
    if turn == 5:  # Q4 2016 closed once it ended (plus the grace): the east team's quarter goal settled
        jobs.run(runtime, ["close-periods"], now=at + 20 * SECOND, program_keys=[KEY])


def _figures(runtime: Runtime, key: str) -> dict[str, Any]:
    """Every derived figure of the program, by external ids (internal ids and sequence numbers may differ)."""
    with runtime.db.read() as connection:
        program = programs.find(connection, key)
        compiled = runtime.programs.compiled(connection, program)
        who = _names(connection, program.id)
        rows = {name: sorted(_rows(connection, program.id, name, who)) for name in _COMPARED}
        people = sorted(e for e in who["p"].values())
        rows["profiles"] = [profile(connection, program, compiled, p, now=AS_OF) for p in people]
        rows["liability"] = liability(connection, program, compiled, now=AS_OF)["currencies"]
        rows["boards"] = [
            leaderboard(connection, program, compiled, board.key, period=period, limit=100, now=AS_OF)
            for board in compiled.doc.leaderboards
            for period in (
                ("2016-11", "2017-01")
                if board.window == "month"
                else ("2016-Q4",)
                if board.window == "quarter"
                else (None,)
            )
        ]
    return rows


def _names(connection: Connection, program_id: int) -> dict[str, dict[int, str]]:
    p, m = t.participants.c, t.teams.c
    return {
        "p": dict(connection.execute(select(p.id, p.external_id).where(p.program_id == program_id)).all()),
        "t": dict(connection.execute(select(m.id, m.external_id).where(m.program_id == program_id)).all()),
    }


_COMPARED = (
    "participants",
    "positions",
    "ledger_entries",
    "lots",
    "metric_totals",
    "metric_samples",
    "rule_counters",
    "badge_grants",
    "challenge_completions",
    "streak_runs",
    "quest_progress",
    "closed_periods",
    "tier_state",
    "redemptions",
    "kudos",
    "events",
    "rank_rows",
    "cases",
)
# columns that name a row, not a figure: surrogate ids, sequence numbers, keys made of them, write times
_SKIPPED = {
    "id",
    "seq",
    "event_seq",
    "program_id",
    "created_at",
    "updated_at",
    "idempotency_key",
    "source_key",
    "redemption_id",
    "lot_id",
    "entry_id",
    "adjustment_id",
    "content_hash",
    "received_at",
    "explain",
}


def _rows(
    connection: Connection, program_id: int, name: str, who: dict[str, dict[int, str]]
) -> Iterator[tuple[Any, ...]]:
    table = t.metadata.tables[name]
    kind_of = {"participant_id": "p", "giver_id": "p", "receiver_id": "p", "referrer_id": "p", "referred_id": "p"}
    mine = table.c.program_id == program_id if "program_id" in table.c else table.c.participant_id.in_(who["p"])
    for row in connection.execute(select(table).where(mine)):
        values = []
        for column, value in row._mapping.items():
            if column in _SKIPPED:
                continue
            if column in kind_of:
                value = who["p"][value]
            elif column == "subject_id":
                value = who["t" if row._mapping.get("subject_kind", row._mapping.get("source")) == "t" else "p"][value]
            elif column == "teams":
                value = sorted(who["t"].get(v, v) for v in value)
            values.append(json.dumps(value, sort_keys=True, default=str))
        yield tuple(values)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, dict[str, Any]]]:
    """The source on SQLite, its export written by the CLI, and its figures."""
    folder = tmp_path_factory.mktemp("export-source")
    for url in fresh_database("sqlite", folder):
        runtime = Runtime.from_url(url)
        _play(runtime)
        out = folder / "acme.jsonl"
        result = CliRunner().invoke(cli, ["export", KEY, "--out", str(out), "--database", url])
        assert result.exit_code == 0, result.output
        yield out, url, _figures(runtime, KEY)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_program_rebuilt_from_its_export_equals_the_original(
    source: tuple[Path, str, dict[str, Any]], kind: str, tmp_path: Path
) -> None:
    exported, _, expected = source
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    kinds = {line["kind"] for line in lines}
    assert {"header", "document", "team", "participant", "event", "adjustment", "kudos", "redemption"} <= kinds
    assert {"redemption.cancel", "redemption.fulfil", "status", "case", "case.answer", "job", "end"} <= kinds
    assert "kudos.clawback" in kinds
    assert sum(line["kind"] == "event" for line in lines) > 1250
    empty = {name for name, rows in expected.items() if not rows}
    assert empty == {"metric_samples", "challenge_completions", "quest_progress", "tier_state"}  # acme has none
    for url in fresh_database(kind, tmp_path):
        result = CliRunner().invoke(cli, ["import-program", str(exported), "--as", COPY, "--database", url])
        assert result.exit_code == 0, result.output
        runtime = Runtime.from_url(url)
        rebuilt = _figures(runtime, COPY)
        for name, rows in expected.items():
            assert rebuilt[name] == rows, name
        assert replay(runtime, COPY).ok
        with runtime.db.read() as connection:  # and the copy exports what it was rebuilt from (here on PostgreSQL too)
            copied = list(export.lines(connection, COPY))
        for line in copied:
            if line["kind"] == "document":
                line["document"]["program"] = KEY
        assert copied[1:] == lines[1:]
        again = CliRunner().invoke(cli, ["import-program", str(exported), "--as", COPY, "--database", url])
        assert again.exit_code == 1 and "exists here" in again.output  # never into a program that exists


def test_the_api_export_is_the_cli_export_and_a_cut_file_is_refused(
    source: tuple[Path, str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exported, url, _ = source
    monkeypatch.setenv("LEVELUP_ADMIN_KEY", ADMIN_KEY)
    with TestClient(create_app(Runtime.from_url(url))) as client:
        answer = client.get(f"/api/v1/programs/{KEY}/export", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert answer.headers["content-type"] == "application/x-ndjson"
    sent = [json.loads(line) for line in answer.text.splitlines()]
    written = [json.loads(line) for line in exported.read_text().splitlines()]
    assert [line for line in sent if line["kind"] != "header"] == [line for line in written if line["kind"] != "header"]
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(exported.read_text().splitlines()[:-40]) + "\n")
    for target in fresh_database("sqlite", tmp_path):
        result = CliRunner().invoke(cli, ["import-program", str(cut), "--database", target])
        assert result.exit_code == 1 and "ends early" in result.output
