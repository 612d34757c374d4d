"""A batch scores exactly like the same events sent one by one, for everything (issue 8, point 2).

The same stream is ingested into three fresh databases of one kind (SQLite or PostgreSQL):
one event per call of ``ingest``, in batches of 7, and each segment as one batch ("all").
Between segments, at positions that are multiples of 7 (so a batch boundary in all three),
come the operations that are not events: kudos and redemptions, made through the service
functions. Then every periodic job runs (the job registry: closing, maturing and expiring
lots, tiers, referrals). The whole state of the program is compared with the one-by-one
run after the events and again after the jobs, every answer too, and replay must find
nothing to correct in any of the three databases. Everything happens at fixed times:
events are received, kudos given and rewards redeemed at ``NOW`` (``ingest(now=)``), the
jobs run at ``JOBS_AT``; so wall-clock columns are compared too.

Compared, with surrogate ids replaced by what they stand for (participant and event ids,
kudos and redemption keys, a lot's place in the lot order): every event as stored (the
tier it was scored in, notes, problems), the ledger in booking order, positions, lots in
order, metric totals and samples, rule counters, badges, goal and quest completions, quest
progress, streaks, participants in order of first appearance (leaderboard ties follow it)
with status and tier, tier state, referrals, refunds and reversals, kudos, redemptions and
their draws, the feed in order, and what each job did. Zero and absent mean the same for
sums and counts; floats are compared to 6 decimals (sums taken in another order differ in
the last bit). Not compared: ``participants.created_at`` (the clock; not an input).

Every Hypothesis example gets three fresh databases and new Runtimes: made once per test
(``fresh_database`` of ``tests/conftest.py``), emptied back to that state before each example
after the first (``empty``, checked by ``assert_fresh``). 30 examples per kind of database, derandomized;
``LEVELUP_LONG_TESTS=1`` runs 300, randomized.

Also here: the defect found on main (brewhouse-rewards and the six UCI Online Retail invoices
of customer 18102: 52,729 beans one by one, 38,367 as one batch), and a tour: one stream
written by hand that is checked to reach every mechanic, then compared the same way.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import functools
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, func, literal, select, text, union_all

from levelup.errors import LevelupError
from levelup.events.ingest import ingest
from levelup.events.replay import replay
from levelup.jobs import registry as jobs
from levelup.kudos.service import give
from levelup.programs import service as programs
from levelup.programs.document import ProgramDocument
from levelup.programs.validation import load_document
from levelup.rewards.service import redeem
from levelup.runtime import Runtime
from levelup.storage import tables as t
from levelup.storage.db import Database
from tests.conftest import EXAMPLES, POSTGRES_URL, SHARED_DATA, TEMPLATES, fresh_database

LONDON = ZoneInfo("Europe/London")
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)  # when events are received, kudos given, rewards redeemed
JOBS_AT = NOW + dt.timedelta(days=8)  # pending lots have matured, old ones expired, some referrals are due
VARIANTS: dict[str, int | None] = {"1": 1, "7": 7, "all": None}  # batch size; None: each segment in one batch
LONG = bool(os.environ.get("LEVELUP_LONG_TESTS"))

# --------------------------------------------------------------------------- running a stream three ways


@dataclass(frozen=True)
class Kudos:
    giver: str
    receiver: str
    amount: int


@dataclass(frozen=True)
class Redeem:
    participant: str
    reward: str


SideOp = Kudos | Redeem


@dataclass
class Scenario:
    """Events in segments; before each segment but the first, the side operations made between them."""

    segments: list[list[dict[str, Any]]]
    between: list[list[SideOp]] = field(default_factory=list)  # len(segments) - 1 lists

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for segment in self.segments for e in segment]


@functools.cache
def document(text: str, key: str) -> ProgramDocument:
    """Validated once per text (a frozen model; ``programs.apply`` only reads it)."""
    return load_document(text, program=key)


def apply_program(runtime: Runtime, text: str, key: str) -> None:
    with runtime.db.write() as connection:
        programs.apply(connection, document(text, key), actor="batch-equivalence")


def side_op(runtime: Runtime, key: str, op: SideOp, n: int) -> dict[str, Any]:
    """Make one kudos or redemption at ``NOW``; what it answered (a refusal is an answer too)."""
    try:
        with runtime.db.write() as connection:
            record = programs.find(connection, key)
            compiled = runtime.programs.compiled(connection, record)
            if isinstance(op, Kudos):
                result = give(
                    connection,
                    record,
                    compiled,
                    giver=op.giver,
                    receiver=op.receiver,
                    amount=op.amount,
                    message=f"thanks {n}",
                    idempotency_key=f"k{n}",
                    now=NOW,
                )
                return {k: v for k, v in result.items() if k != "id"}
            made, _ = redeem(
                connection,
                record,
                compiled,
                participant=op.participant,
                reward_key=op.reward,
                idempotency_key=f"r{n}",
                now=NOW,
            )
            return {"status": made["status"], "reward": made["reward"], "cost": made["cost"]}
    except LevelupError as exc:
        return {"refused": type(exc).__name__, "code": getattr(exc, "code", None), "detail": exc.detail}


def run(runtime: Runtime, key: str, scenario: Scenario, size: int | None) -> list[dict[str, Any]]:
    """Ingest the scenario in batches of ``size`` (None: a segment at a time) with the side operations
    between segments; every outcome and side-operation answer, in order."""
    answers: list[dict[str, Any]] = []
    n = 0
    for i, segment in enumerate(scenario.segments):
        if i:
            for op in scenario.between[i - 1]:
                n += 1
                answers.append({"op": repr(op), **side_op(runtime, key, op, n)})
        step = size or max(len(segment), 1)
        for start in range(0, len(segment), step):
            answers.extend(o.as_dict() for o in ingest(runtime, key, segment[start : start + step], now=NOW))
    return answers


def run_jobs(runtime: Runtime, key: str) -> list[tuple[str, int, tuple[str, ...]]]:
    """Every periodic job, at ``JOBS_AT`` (closing, maturing and expiring lots, tiers, referrals): what each did."""
    ran = jobs.run(runtime, now=JOBS_AT, program_keys=[key])
    assert not [r for r in ran if r.error], ran
    return [(r.job, r.count, r.lines) for r in ran]


# --------------------------------------------------------------------------- the state of a program, comparable


def canon(value: Any) -> Any:
    """Floats to 6 decimals (sums in another order differ in the last bit), containers made comparable."""
    if isinstance(value, float):
        return round(value, 6) + 0.0
    if isinstance(value, dict):
        return {k: canon(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return tuple(canon(v) for v in value)
    return value


class Names:
    """What the surrogate ids of one database stand for."""

    def __init__(self, connection: Connection, program_id: int) -> None:
        p, e, k, r, lot = t.participants.c, t.events.c, t.kudos.c, t.redemptions.c, t.lots.c
        self.participants = dict(
            connection.execute(select(p.id, p.external_id).where(p.program_id == program_id)).all()
        )
        self.teams = dict(
            connection.execute(
                select(t.teams.c.id, t.teams.c.external_id).where(t.teams.c.program_id == program_id)
            ).all()
        )
        self.events = dict(connection.execute(select(e.seq, e.event_id).where(e.program_id == program_id)).all())
        self.kudos = dict(connection.execute(select(k.id, k.idempotency_key).where(k.program_id == program_id)).all())
        self.redemptions = dict(
            connection.execute(select(r.id, r.idempotency_key).where(r.program_id == program_id)).all()
        )
        lot_ids = connection.execute(select(lot.id).where(lot.program_id == program_id).order_by(lot.id)).scalars()
        self.lots = {lot_id: f"lot#{i}" for i, lot_id in enumerate(lot_ids)}

    def subject(self, kind: str, subject_id: int) -> str:
        return self.participants[subject_id] if kind == "p" else f"team {self.teams[subject_id]}"

    def key(self, idempotency_key: str) -> str:
        """A ledger or lot key with the ids in it replaced by what they name."""
        head, _, rest = idempotency_key.partition(":")
        if head.isdigit():
            return f"{self.events.get(int(head), head)}:{rest}"
        parts = idempotency_key.split(":")
        if head == "kudos":
            return f"kudos:{self.kudos.get(int(parts[1]), parts[1])}"
        if head in ("redemption", "refund"):
            return f"{head}:{self.redemptions.get(int(parts[1]), parts[1])}"
        if head == "referral":
            return f"referral:{self.participants.get(int(parts[1]), parts[1])}:{parts[2]}"
        if head == "expiry":  # expiry:<lot id>:<uuid>
            return f"expiry:{self.lots.get(int(parts[1]), parts[1])}"
        return idempotency_key


def rows(connection: Connection, table: Any, *where: Any, order: Any = None) -> list[Any]:
    query = select(table).where(*where)
    return list(connection.execute(query.order_by(order) if order is not None else query))


def dump(runtime: Runtime, key: str) -> dict[str, Any]:
    """Everything the program holds, without surrogate ids."""
    with runtime.db.read() as connection:
        program_id = programs.find(connection, key).id
        n = Names(connection, program_id)
        who = n.participants.__getitem__
        seq = n.events.get
        out: dict[str, Any] = {}
        out["events"] = [
            (
                r.event_id,
                r.type,
                who(r.participant_id),
                r.occurred_at,
                canon(r.data),
                r.reverses,
                r.content_hash,
                r.program_version,
                canon(r.teams),
                r.tier,
                r.suspended,
                r.share,
                canon(r.problems),
                canon(r.notes),
                r.received_at,
            )
            for r in rows(connection, t.events, t.events.c.program_id == program_id, order=t.events.c.seq)
        ]
        out["ledger"] = [
            (
                who(r.participant_id),
                r.currency,
                r.amount,
                r.kind,
                r.rule,
                r.rule_version,
                seq(r.event_seq) if r.event_seq is not None else None,
                n.key(r.idempotency_key),
                r.explain,
                r.at,
                r.created_at,
            )
            for r in rows(
                connection, t.ledger_entries, t.ledger_entries.c.program_id == program_id, order=t.ledger_entries.c.id
            )
        ]
        out["positions"] = {
            (who(r.participant_id), r.currency): (r.available, r.arrears, r.earned, r.pending)
            for r in rows(connection, t.positions, t.positions.c.program_id == program_id)
            if (r.available, r.arrears, r.earned, r.pending) != (0, 0, 0, 0)
        }
        out["lots"] = [
            (
                n.lots[r.id],
                who(r.participant_id),
                r.currency,
                r.amount,
                r.remaining,
                r.earned_at,
                r.available_at,
                r.expires_at,
                r.matured,
                seq(r.event_seq) if r.event_seq is not None else None,
                n.key(r.source_key),
            )
            for r in rows(connection, t.lots, t.lots.c.program_id == program_id, order=t.lots.c.id)
        ]
        out["metric_totals"] = {
            (r.metric, r.period, n.subject(r.subject_kind, r.subject_id)): canon(r.value)
            for r in rows(connection, t.metric_totals, t.metric_totals.c.program_id == program_id)
            if canon(r.value) != 0
        }
        out["metric_samples"] = {
            (r.metric, n.subject(r.subject_kind, r.subject_id), r.day, r.value_key): (canon(r.value), r.count)
            for r in rows(connection, t.metric_samples, t.metric_samples.c.program_id == program_id)
            if r.count != 0
        }
        out["rule_counters"] = {
            (who(r.participant_id), r.rule, r.period): (r.count, r.last_at)
            for r in rows(connection, t.rule_counters, t.rule_counters.c.participant_id.in_(list(n.participants)))
            if r.count != 0 or r.last_at is not None
        }
        out["badge_grants"] = {
            (who(r.participant_id), r.badge, r.grade, r.period): (r.event_id, r.awarded_at, r.revoked_by)
            for r in rows(connection, t.badge_grants, t.badge_grants.c.program_id == program_id)
        }
        out["challenge_completions"] = {
            (who(r.participant_id), r.challenge, r.period): (r.event_id, r.completed_at, canon(r.reward))
            for r in rows(connection, t.challenge_completions, t.challenge_completions.c.program_id == program_id)
        }
        out["quest_progress"] = {
            (who(r.participant_id), r.challenge, r.period): tuple((canon(v), seq(s, s)) for v, s in r.baselines)
            for r in rows(connection, t.quest_progress, t.quest_progress.c.program_id == program_id)
        }
        out["streak_runs"] = {
            (who(r.participant_id), r.streak): (canon(r.periods), r.best)
            for r in rows(connection, t.streak_runs, t.streak_runs.c.program_id == program_id)
        }
        out["participants"] = [  # in order of first appearance (internal id): how leaderboard ties are ordered
            (r.external_id, r.name, canon(r.attributes), r.status, r.tier)
            for r in rows(
                connection, t.participants, t.participants.c.program_id == program_id, order=t.participants.c.id
            )
        ]
        out["tier_state"] = {
            who(r.participant_id): (r.earned, r.since, r.reviewed, r.override, r.override_until)
            for r in rows(connection, t.tier_state, t.tier_state.c.program_id == program_id)
        }
        out["referrals"] = {
            who(r.referred_id): (
                who(r.referrer_id),
                r.status,
                r.referral_event,
                r.qualifying_event,
                r.pay_after,
                r.created_at,
                r.paid_at,
            )
            for r in rows(connection, t.referrals, t.referrals.c.program_id == program_id)
        }
        out["refunds"] = {
            r.reversed_event: r.refunded for r in rows(connection, t.refunds, t.refunds.c.program_id == program_id)
        }
        out["reversals"] = {
            r.reversed_event: r.by_event for r in rows(connection, t.reversals, t.reversals.c.program_id == program_id)
        }
        out["kudos"] = [
            (r.idempotency_key, who(r.giver_id), who(r.receiver_id), r.amount, r.period, r.message, r.at)
            for r in rows(connection, t.kudos, t.kudos.c.program_id == program_id, order=t.kudos.c.id)
        ]
        out["redemptions"] = [
            (r.idempotency_key, who(r.participant_id), r.reward, r.currency, r.cost, r.status, r.period)
            for r in rows(connection, t.redemptions, t.redemptions.c.program_id == program_id, order=t.redemptions.c.id)
        ]
        out["redemption_draws"] = sorted(
            (n.redemptions[r.redemption_id], n.lots[r.lot_id], r.amount)
            for r in rows(connection, t.redemption_draws, t.redemption_draws.c.redemption_id.in_(list(n.redemptions)))
        )
        out["feed"] = [
            (r.participant, r.kind, canon(r.payload), r.at)
            for r in rows(connection, t.feed, t.feed.c.program_id == program_id, order=t.feed.c.id)
        ]
    return out


def differences(expected: dict[str, Any], got: dict[str, Any], limit: int = 12) -> list[str]:
    """What differs, section by section, in a form a person can act on."""
    out: list[str] = []
    for section in expected:
        want, have = expected[section], got[section]
        if want == have:
            continue
        if isinstance(want, dict):
            keys = sorted(set(want) | set(have), key=repr)
            lines = [
                f"  {k!r}: {want.get(k, '<absent>')!r} → {have.get(k, '<absent>')!r}"
                for k in keys
                if want.get(k) != have.get(k)
            ]
        elif Counter(map(repr, want)) == Counter(map(repr, have)):
            first = next(i for i, (a, b) in enumerate(zip(want, have, strict=True)) if a != b)
            lines = [f"  the same {len(want)} rows in another order; first difference at row {first}:"]
            lines += [f"  - {r!r}" for r in want[first : first + 4]] + [f"  + {r!r}" for r in have[first : first + 4]]
        else:
            missing = Counter(map(repr, want)) - Counter(map(repr, have))
            extra = Counter(map(repr, have)) - Counter(map(repr, want))
            lines = [f"  - {r}" for r in missing] + [f"  + {r}" for r in extra]
        out.append(f"{section}:")
        out += lines[:limit] + ([f"  … {len(lines) - limit} more"] if len(lines) > limit else [])
    return out


@dataclass
class Outcome:
    """The three runs of a scenario: answers and states per variant, and every difference found."""

    answers: dict[str, list[dict[str, Any]]]
    live: dict[str, dict[str, Any]]  # after the events and side operations
    after: dict[str, dict[str, Any]]  # after the jobs too
    problems: list[str]


def run_variants(runtimes: dict[str, Runtime], key: str, scenario: Scenario) -> Outcome:
    """Run the scenario in each variant, compare every state with the one-by-one run, and replay each."""
    answers = {name: run(runtimes[name], key, scenario, size) for name, size in VARIANTS.items()}
    live = {name: dump(runtimes[name], key) for name in VARIANTS}
    ran = {name: run_jobs(runtimes[name], key) for name in VARIANTS}
    after = {name: dump(runtimes[name], key) for name in VARIANTS}
    problems: list[str] = []
    for name in list(VARIANTS)[1:]:
        if answers[name] != answers["1"]:
            problems.append(f"batch size {name} answered otherwise than one by one:")
            pairs = zip(answers["1"], answers[name], strict=True)
            problems += [f"  #{i}: {a!r} → {b!r}" for i, (a, b) in enumerate(pairs) if a != b][:12]
        if ran[name] != ran["1"]:
            problems.append(f"the jobs did otherwise after batch size {name}: {ran['1']} → {ran[name]}")
        for when, states in (("after ingestion", live), ("after the jobs", after)):
            found = differences(states["1"], states[name])
            if found:
                problems.append(f"batch size {name} vs one by one, {when}:")
                problems += found
    for name in VARIANTS:
        report = replay(runtimes[name], key)
        if not report.ok:
            problems.append(f"replay differs from what batch size {name} stored:")
            problems += [f"  {m}" for m in report.mismatches[:12]]
    return Outcome(answers, live, after, problems)


Databases = Callable[[], contextlib.AbstractContextManager[dict[str, Runtime]]]


def empty(db: Database) -> None:
    """Bring a database used by an earlier Hypothesis example back to a fresh copy of the template.

    SQLite: every connection closed, the template copied over the file (byte for byte what
    ``fresh_database`` gives). PostgreSQL (a new database costs a copy and a background drop, each
    example three times): every row deleted, children first (the ledger's append-only trigger
    set aside in the same transaction), and every sequence back to its start, then vacuumed: no
    row, dead or alive, is left. ``alembic_version`` is not in ``t.metadata``: it stays."""
    if db.is_sqlite:
        db.engine.dispose()
        path = Path(str(db.engine.url.database))
        for leftover in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            leftover.unlink(missing_ok=True)
        shutil.copyfile(TEMPLATES.sqlite(), path)
        return
    emptied = []
    with db.engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only")
        for table in reversed(t.metadata.sorted_tables):
            if connection.execute(table.delete()).rowcount:
                emptied.append(table.name)
        connection.exec_driver_sql("ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_append_only")
        connection.execute(
            text(
                "SELECT setval(format('%I.%I', schemaname, sequencename)::regclass, start_value, false) "
                "FROM pg_sequences WHERE schemaname = current_schema()"
            )
        )
    if emptied:  # the deleted rows' dead versions too (the other tables have none)
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM " + ", ".join(f'"{name}"' for name in emptied))


def alembic_version(db: Database) -> list[str]:
    with db.engine.connect() as connection:
        return list(connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars())


def assert_fresh(db: Database, version: list[str]) -> None:
    """Not a row in any table, every sequence unused, the schema at the migration it was made at."""
    with db.engine.connect() as connection:
        counts = union_all(
            *(select(literal(table.name), func.count()).select_from(table) for table in t.metadata.sorted_tables)
        )
        assert [(name, n) for name, n in connection.execute(counts) if n] == []
        if not db.is_sqlite:
            used = (
                "SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema() AND last_value IS NOT NULL"
            )
            assert connection.exec_driver_sql(used).scalars().all() == []
    assert alembic_version(db) == version


@pytest.fixture(params=["sqlite", "postgres"])
def databases(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Databases]:
    """One fresh database per variant, all of the fixture's kind, made once per test (``fresh_database``).
    Each call after the first (a Hypothesis example after another) empties them back to fresh (:func:`empty`,
    checked by :func:`assert_fresh`) and gives new Runtimes: no compiled program carries over."""
    kind = request.param
    if kind == "postgres" and not POSTGRES_URL:
        pytest.skip("PostgreSQL not configured: set LEVELUP_TEST_POSTGRES_URL (bash .ci/run does)")
    with contextlib.ExitStack() as stack:
        kept: dict[str, Database] = {}
        for name in VARIANTS:
            folder = tmp_path_factory.mktemp(f"batch-{name}")
            url = stack.enter_context(contextlib.contextmanager(fresh_database)(kind, folder))
            kept[name] = Database(url)  # at the newest migration already
            stack.callback(kept[name].dispose)
        versions = {name: alembic_version(db) for name, db in kept.items()}
        used = False

        @contextlib.contextmanager
        def make() -> Iterator[dict[str, Runtime]]:
            nonlocal used
            if used:
                for name, db in kept.items():
                    empty(db)
                    assert_fresh(db, versions[name])
            used = True
            yield {name: Runtime(db) for name, db in kept.items()}

        yield make


# --------------------------------------------------------------------------- the defect found on main

UCI_FOLDER = SHARED_DATA / "uci-online-retail-by-day" / "by-day"
BREWHOUSE_TEXT = (EXAMPLES / "brewhouse-rewards.yaml").read_text()


def customer_invoices(customer: str) -> list[tuple[str, dt.datetime, Decimal]]:
    """The sales invoices of one customer: (number, first line's time in London, total in pounds), in time order."""
    found: dict[str, list[Any]] = {}
    for path in sorted(UCI_FOLDER.glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if not row["CustomerID"] or str(int(float(row["CustomerID"]))) != customer:
                    continue
                at = dt.datetime.strptime(row["InvoiceDate"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=LONDON)
                invoice = found.setdefault(row["InvoiceNo"], [at, Decimal(0)])
                invoice[0] = min(invoice[0], at)
                invoice[1] += int(row["Quantity"]) * Decimal(row["UnitPrice"])
    return sorted(((number, at, total) for number, (at, total) in found.items()), key=lambda i: (i[1], i[0]))


@pytest.mark.skipif(not UCI_FOLDER.is_dir(), reason=f"the UCI Online Retail daily files are not at {UCI_FOLDER}")
def test_uci_customer_18102_scores_the_same_in_one_batch(databases: Databases) -> None:
    """Six invoices, £38,370.09 in all: the first earns 1 bean a pound (no tier yet, 9,639), the other five
    1.5 (Reserve from the first on), each floor(floor(amount) × 1.5): 52,729 beans, whatever the batching."""
    invoices = customer_invoices("18102")
    assert [number for number, _, _ in invoices] == ["537657", "537658", "537659", "538063", "543378", "543379"]
    assert sum(total for _, _, total in invoices) == Decimal("38370.09")
    shift = dt.timedelta(days=(dt.datetime.now(LONDON).date() - invoices[-1][1].date()).days - 1)  # last: yesterday
    events = [
        {
            "id": number,
            "type": "purchase.completed",
            "participant": "18102",
            "occurred_at": (at + shift).isoformat(),
            "data": {"amount": float(total)},
        }
        for number, at, total in invoices
    ]
    key = "brewhouse-rewards"
    with databases() as runtimes:
        for runtime in runtimes.values():
            apply_program(runtime, BREWHOUSE_TEXT, key)
        outcome = run_variants(runtimes, key, Scenario([events]))
    per_event = {name: [a["awards"][0]["amount"] for a in answers] for name, answers in outcome.answers.items()}
    assert per_event["1"] == [9639, 592, 23827, 2871, 6568, 9232]
    held = {
        name: (state["positions"][("18102", "beans")][0], state["participants"][0][-1])
        for name, state in outcome.live.items()
    }
    assert held == dict.fromkeys(VARIANTS, (52_729, "Reserve")), per_event
    assert not outcome.problems, "\n".join(outcome.problems)


# --------------------------------------------------------------------------- the property

KEY = "batch-equivalence"
PROGRAM_TEXT = f"""
program: {KEY}
name: Batch equivalence
timezone: Europe/London
currencies:
  - {{key: beans, name: Beans, spendable: true, expires_after: P30D, pending: P7D, velocity: {{max: 2500, per: day}}}}
  - {{key: xp, name: XP}}
metrics:
  - {{key: spend, event: purchase.completed, aggregate: sum, value: data.amount}}
  - {{key: purchases, event: purchase.completed, aggregate: count}}
  - {{key: biggest, event: purchase.completed, aggregate: max, value: data.amount}}
  - {{key: stores, event: purchase.completed, aggregate: distinct, value: data.store}}
  - {{key: reviews, event: review.posted, if: size(data.text) >= 20, aggregate: count}}
  - {{key: visits, event: visit.logged, aggregate: count}}
rules:
  - {{key: purchase, event: purchase.completed, award: {{beans: data.amount, xp: data.amount / 10}}}}
  - key: review
    event: review.posted
    if: size(data.text) >= 20
    award: {{beans: 15, xp: 5}}
    cap: {{max: 2, per: week}}
  - {{key: visit, event: visit.logged, award: {{xp: 4}}, cooldown: PT6H}}
levels:
  currency: xp
  steps: [{{name: Newbie, at: 0}}, {{name: Regular, at: 60}}, {{name: Pro, at: 250}}, {{name: Legend, at: 800}}]
badges:
  - key: big-spender
    name: Big spender
    grades:
      - {{name: Bronze, when: [{{metric: spend, window: all, at_least: 200}}]}}
      - name: Silver
        when: [{{metric: spend, window: all, at_least: 800}}, {{metric: purchases, window: all, at_least: 3}}]
  - key: regular
    name: Regular
    repeatable: week
    grades: [{{name: Busy week, when: [{{metric: visits, window: week, at_least: 3}}]}}]
  - key: explorer
    name: Explorer
    grades: [{{name: Two stores, when: [{{metric: stores, window: all, at_least: 2}}]}}]
streaks:
  - {{key: daily-visitor, metric: visits, period: day, at_least: 1, grace: 1}}
  - {{key: weekly-buyer, metric: purchases, period: week}}
tiers:
  metric: spend
  window: last_90_days
  steps:
    - {{name: Green, at: 0}}
    - {{name: Gold, at: 300, multiplier: {{beans: 1.25, xp: 1.5}}}}
    - {{name: Reserve, at: 1000, multiplier: {{beans: 1.5, xp: 2}}}}
challenges:
  - key: welcome
    kind: quest
    steps: [{{metric: purchases, target: 1}}, {{metric: reviews, target: 1}}, {{metric: visits, target: 2}}]
    reward: {{beans: 100, xp: 20}}
  - {{key: weekly-spender, metric: spend, target: 250, every: week, reward: {{beans: 50, xp: 10}}}}
rewards:
  - {{key: coffee, name: Coffee, cost: {{beans: 120}}}}
  - {{key: mug, name: Mug, cost: {{beans: 400}}, stock: 3, limit: {{max: 1, per: all}}, requires: {{tier: Gold}}}}
kudos: {{currency: beans, budget: {{amount: 100, per: week}}}}
referrals: {{event: referral.made, referrer: referrer, qualify: purchase.completed, award: {{beans: 150}}, hold: P10D}}
"""

PEOPLE = ("ana", "bo", "cy")
REVERSAL_TYPE = {
    "purchase.completed": "purchase.refunded",
    "review.posted": "review.removed",
    "visit.logged": "visit.voided",
    "referral.made": "referral.withdrawn",
}

people = st.sampled_from(PEOPLE)
# (days, hours, minutes) before NOW: a pending lot (P7D) is at least two hours from maturing, either way.
# A few days and hours come often, so that events share days and weeks (caps, cooldowns, velocity, goals).
whens = st.tuples(
    st.one_of(st.sampled_from([1, 3, 9, 12, 25, 33]), st.integers(0, 40)),
    st.one_of(st.sampled_from([2, 3, 9]), st.integers(2, 21)),
    st.integers(0, 59),
)
amounts = st.one_of(
    st.sampled_from([4.5, 19.99, 60, 149.5, 240, 480.25, 900]), st.integers(1, 120_000).map(lambda c: c / 100)
)
portions = st.sampled_from([None, None, 0.5, 0.25, 0.75, 0.1, 0.3333])
buys = st.tuples(st.just("buy"), people, amounts, whens, st.sampled_from(["soho", "soho", "leeds", "york"]))
specs = st.one_of(
    buys,
    st.tuples(st.just("review"), people, st.booleans(), whens),
    st.tuples(st.just("visit"), people, whens),
    buys,
    st.tuples(st.just("refund"), st.integers(0, 30), portions, whens),
    st.tuples(st.just("refer"), people, st.sampled_from((*PEOPLE, "zed")), whens),
    st.tuples(st.just("reverse"), st.integers(0, 30), whens),
    buys,
    st.tuples(st.just("again"), st.integers(0, 30), st.booleans()),
    st.tuples(st.just("refund"), st.integers(0, 30), portions, whens),
    st.tuples(st.just("visit"), people, whens),
    st.tuples(st.just("review"), people, st.booleans(), whens),
)
side_ops = st.one_of(
    st.builds(Kudos, people, st.sampled_from((*PEOPLE, "zed")), st.sampled_from([5, 30, 80])),
    st.builds(Redeem, people, st.sampled_from(["coffee", "coffee", "mug"])),
)


def at(when: tuple[int, int, int]) -> str:
    days, hours, minutes = when
    return (NOW - dt.timedelta(days=days, hours=hours, minutes=minutes)).isoformat()


def build(steps: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Raw events e0, e1…: purchases, reviews, visits, referrals; full and partial refunds of earlier
    purchases; reversals of any earlier event (a reversal of a reversal, or of an event already reversed,
    is refused); an earlier event sent again (a duplicate) or its id with other content (a conflict).
    A step that needs an earlier event when there is none is dropped."""
    events: list[dict[str, Any]] = []
    for i, step in enumerate(steps):
        kind, event_id = step[0], f"e{i}"
        purchases = [e for e in events if e["type"] == "purchase.completed"]
        if kind == "buy":
            _, who, amount, when, store = step
            events.append(event(event_id, "purchase.completed", who, when, {"amount": amount, "store": store}))
        elif kind == "review":
            _, who, long, when = step
            text = "Lovely crema, friendly staff." if long else "ok"
            events.append(event(event_id, "review.posted", who, when, {"text": text}))
        elif kind == "visit":
            _, who, when = step
            events.append(event(event_id, "visit.logged", who, when, {}))
        elif kind == "refer":
            _, who, referrer, when = step
            events.append(event(event_id, "referral.made", who, when, {"referrer": referrer}))
        elif kind == "refund" and purchases:
            _, back, portion, when = step
            target = purchases[-1 - back % len(purchases)]
            refund = event(event_id, "purchase.refunded", target["participant"], when, {}, reverses=target["id"])
            if portion is not None:
                refund["portion"] = portion
            events.append(refund)
        elif kind == "reverse" and events:
            _, back, when = step
            target = events[-1 - back % len(events)]
            kind_ = REVERSAL_TYPE.get(target["type"], "correction")
            events.append(event(event_id, kind_, target["participant"], when, {}, reverses=target["id"]))
        elif kind == "again" and events:
            _, back, same = step
            target = events[-1 - back % len(events)]
            events.append(dict(target) if same else {**target, "data": {**target["data"], "changed": True}})
    return events


def event(
    event_id: str, kind: str, who: str, when: tuple[int, int, int], data: dict[str, Any], **more: Any
) -> dict[str, Any]:
    return {"id": event_id, "type": kind, "participant": who, "occurred_at": at(when), "data": data, **more}


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """A stream of events cut at multiples of 7 (a batch boundary for sizes 1, 7 and a segment), with kudos
    and redemptions at some cuts (the first may come before any event)."""
    size = draw(st.integers(1, 42))  # drawn first: lists alone are mostly short
    events = build(draw(st.lists(specs, min_size=size, max_size=size)))
    cuts = sorted(draw(st.sets(st.integers(0, len(events) // 7), max_size=4)))
    segments, between, start = [], [], 0
    for cut in cuts:
        segments.append(events[start : 7 * cut])
        between.append(draw(st.lists(side_ops, min_size=1, max_size=3)))
        start = 7 * cut
    segments.append(events[start:])
    return Scenario(segments, between)


def describe(scenario: Scenario) -> str:
    lines = []
    for i, segment in enumerate(scenario.segments):
        if i:
            lines += [f"  -- {op!r}" for op in scenario.between[i - 1]]
        for e in segment:
            extra = "".join(f" {k}={e[k]!r}" for k in ("reverses", "portion") if k in e)
            lines.append(f"  {e['id']} {e['type']} {e['participant']} {e['occurred_at']} {e['data']}{extra}")
    return "\n".join(lines)


def on(days: int, hour: int) -> str:
    """A London time ``days`` before NOW's date: the tour's days stay clear of 7 (maturing), 22 (expiring
    by the jobs) and 2 (a referral payable by the jobs), so the clock cannot tip any of them."""
    today = NOW.astimezone(LONDON).date()
    return dt.datetime.combine(today - dt.timedelta(days=days), dt.time(hour), LONDON).isoformat()


def tour() -> Scenario:
    """Every mechanic on purpose, in three segments of 14, 7 and 7 events."""

    def e(n: int, kind: str, who: str, days: int, hour: int, data: dict[str, Any] | None = None, **more: Any):
        return {
            "id": f"t{n}",
            "type": kind,
            "participant": who,
            "occurred_at": on(days, hour),
            "data": data or {},
            **more,
        }

    buy, long_review = "purchase.completed", {"text": "Lovely crema, friendly staff."}
    first = [
        e(0, "referral.made", "ana", 30, 9, {"referrer": "bo"}),  # waiting for ana's first purchase
        e(1, buy, "ana", 29, 10, {"amount": 240, "store": "soho"}),  # qualifies: bo is paid by the jobs
        e(2, "review.posted", "ana", 28, 10, long_review),
        e(3, "visit.logged", "ana", 27, 9),
        e(4, "visit.logged", "ana", 27, 11),  # cooldown: no XP, but it counts: the welcome quest is done
        e(5, buy, "ana", 26, 10, {"amount": 480.25, "store": "york"}),  # Gold (spend 720.25); weekly goal
        e(6, buy, "ana", 26, 11, {"amount": 149.5, "store": "leeds"}),  # × 1.25; explorer, big-spender Silver
        e(7, buy, "bo", 12, 8, {"amount": 900, "store": "soho"}),  # Gold
        e(8, buy, "bo", 12, 9, {"amount": 900, "store": "soho"}),  # × 1.25; Reserve
        e(9, buy, "bo", 12, 10, {"amount": 480.25, "store": "soho"}),  # × 1.5, clipped by the velocity cap
        e(10, "review.posted", "cy", 3, 9, long_review),
        e(11, "review.posted", "cy", 3, 10, long_review),
        e(12, "review.posted", "cy", 3, 11, long_review),  # over the cap of 2 a week
        e(13, "visit.logged", "cy", 1, 9),
    ]
    second = [
        e(14, "purchase.refunded", "ana", 5, 9, reverses="t5"),  # the goal is undone, the mug spent: arrears
        e(15, "purchase.refunded", "ana", 5, 10, reverses="t6", portion=0.5),
        e(16, "purchase.refunded", "ana", 5, 11, reverses="t6", portion=0.5),  # the whole of it now
        e(17, buy, "ana", 4, 9, {"amount": 19.99, "store": "soho"}),  # pays arrears off first
        e(18, "referral.made", "cy", 5, 12, {"referrer": "zed"}),
        e(19, buy, "cy", 4, 10, {"amount": 60, "store": "york"}),  # zed is paid by the jobs
        e(20, "referral.made", "bo", 4, 11, {"referrer": "cy"}),  # bo bought already: void
    ]
    third = [
        e(21, "review.removed", "cy", 3, 12, reverses="t10"),
        first[7],  # a duplicate
        {**first[8], "data": {"amount": 1}},  # a conflict
        e(24, "purchase.refunded", "ana", 3, 13, reverses="t14"),  # a reversal of a reversal: refused
        e(25, "visit.voided", "ana", 3, 14, reverses="t4"),  # the quest's last step reopens
        e(26, buy, "bo", 1, 12, {"amount": 4.5, "store": "soho"}),  # pending at the end
        e(27, buy, "zed", 28, 13, {"amount": 30, "store": "york"}),  # late: its beans expire before the jobs
    ]
    between = [
        [Redeem("ana", "coffee"), Redeem("ana", "mug"), Kudos("bo", "cy", 80), Kudos("bo", "cy", 30)],
        [Kudos("cy", "cy", 5), Redeem("bo", "mug"), Kudos("zed", "ana", 30)],
    ]
    return Scenario([first, second, third], between)


def test_every_mechanic_in_one_stream(databases: Databases) -> None:
    """The tour: the same checks as the property, on a stream known to reach every mechanic (checked first)."""
    with databases() as runtimes:
        for runtime in runtimes.values():
            apply_program(runtime, PROGRAM_TEXT, KEY)
        outcome = run_variants(runtimes, KEY, tour())
    live, after = outcome.live["1"], outcome.after["1"]
    kinds = Counter(row[3] for row in after["ledger"])
    assert {"rule", "reversal", "challenge", "kudos", "redemption", "referral", "expiry"} <= set(kinds), kinds
    notes = " ".join(n for row in live["events"] for n in row[13] or ())
    assert "cooldown" in notes and "cap of 2 per week" in notes and "velocity cap" in notes, notes
    keys = " ".join(row[7] for row in live["ledger"])
    for done in (":challenge:welcome:", ":challenge-undone:welcome:", ":challenge-undone:weekly-spender:"):
        assert done in keys, f"no {done} entry"  # the quest paid and taken back, a goal taken back
    assert any(revoked for _, _, revoked in live["badge_grants"].values()), live["badge_grants"]
    assert {r[1] for r in after["referrals"].values()} == {"paid", "void"}, after["referrals"]
    assert any(not lot[8] for lot in live["lots"]), "a pending lot"
    assert any(arrears > 0 for _, arrears, _, _ in live["positions"].values()), "arrears"
    assert any(row[9] in ("Gold", "Reserve") for row in live["events"])  # a multiplier applied
    assert [a.get("status") for a in outcome.answers["1"] if "op" not in a].count("rejected") == 2
    assert not outcome.problems, "\n".join(outcome.problems)


@settings(
    max_examples=300 if LONG else 30,
    deadline=None,
    derandomize=not LONG,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenario=scenarios())
def test_a_batch_scores_like_one_event_at_a_time(databases: Databases, scenario: Scenario) -> None:
    note(f"NOW = {NOW.isoformat()}\n{describe(scenario)}")
    with databases() as runtimes:
        for runtime in runtimes.values():
            apply_program(runtime, PROGRAM_TEXT, KEY)
        outcome = run_variants(runtimes, KEY, scenario)
    assert not outcome.problems, "\n".join(outcome.problems)


def test_the_program_has_every_mechanic() -> None:
    """The property's program: tiers with multipliers, lots that are pending and expire, velocity, caps,
    cooldown, levels, graded and repeatable badges, streaks, a quest, a goal, rewards, kudos, referrals."""
    doc = load_document(PROGRAM_TEXT, program=KEY)
    assert doc.tiers is not None and doc.tiers.steps[1].multiplier and doc.kudos and doc.referrals and doc.levels
    assert {c.kind for c in doc.challenges} == {"quest", "goal"}
    assert any(c.pending and c.expires_after and c.velocity for c in doc.currencies)
