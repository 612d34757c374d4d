"""Export a program's inputs as JSON Lines, and rebuild a program from them elsewhere.

Only what was *given* is exported — documents as applied, teams and participants, the event log, adjustments,
kudos and their clawbacks, redemptions and their cancellations, status changes, tier overrides, launches, cases,
and what the engine was handed beside events (segment assignments, frozen ``target: auto`` targets) — plus the moments
the time-driven jobs had effects. Everything derived (ledger, lots, balances, metrics, badges, levels, tiers,
ranks, feed) is recomputed by the import, which sends each input through the path that first took it
(``events.ingest``, ``ledger.service.adjust``, ``kudos.give``, ``rewards.redeem``, ``jobs.run`` …, all posting
through ``ledger.posting``), in the original order and with the original time. So the import proves the
export complete: what it rebuilds must equal the source (``tests/storage/test_export_round_trip.py``).

The file: a ``header`` line (``format: levelup-export``, ``version``), ``team`` and ``participant`` lines in
the order they were first seen (ties on boards follow it), then the timeline merged by time, then ``end`` with
the number of lines (a truncated file is refused). Reading streams from server-side cursors, so memory stays
bounded whatever the program's size. docs/security.md lists what an import cannot reproduce.
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from sqlalchemy import Connection, Select, String, and_, cast, func, not_, select

from levelup.cases import service as cases
from levelup.challenges.launch import launch
from levelup.errors import Conflict, FieldError, Invalid
from levelup.events.ingest import ingest
from levelup.jobs import registry as jobs
from levelup.kudos import service as kudos
from levelup.kudos.service import give
from levelup.ledger import service as ledger
from levelup.participants import repository as participants
from levelup.participants import visibility
from levelup.programs import service as programs
from levelup.programs.document import ProgramDocument
from levelup.rewards import service as rewards
from levelup.runtime import Runtime
from levelup.storage import tables as t
from levelup.tiers import service as tiers

FORMAT, VERSION = "levelup-export", 1
CHUNK = 1000  # rows fetched at a time from each cursor; events ingested at most this many a batch
ADJUSTED = "manual adjustment by "
Line = dict[str, Any]


def _iso(at: dt.datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _rows(connection: Connection, query: Select[Any]) -> Iterator[Any]:
    """A query's rows through a server-side cursor, CHUNK at a time."""
    yield from connection.execution_options(stream_results=True, yield_per=CHUNK).execute(query)


def _launches(connection: Connection, program_id: int) -> dict[int, Any]:
    """Versions made by launching a draft (the launch rebuilds them), by version."""
    a = t.audit_log.c
    rows = connection.execute(
        select(a.detail, a.actor, a.at).where(a.program_id == program_id, a.action == "challenge.launch")
    )
    return {r.detail["version"]: r for r in rows}


def _documents(connection: Connection, program_id: int) -> Iterator[tuple[dt.datetime, Line]]:
    """Each version at the moment it took effect: when applied, or earlier when events received with an earlier
    time (a history imported with ``--now``) were scored with it or a later version — so each event is
    scored again by the version that scored it."""
    v, e = t.program_versions.c, t.events.c
    launched = _launches(connection, program_id)
    first = dict(
        connection.execute(
            select(e.program_version, func.min(e.received_at))
            .where(e.program_id == program_id)
            .group_by(e.program_version)
        ).all()
    )
    versions = connection.execute(
        select(v.version, v.applied_at).where(v.program_id == program_id).order_by(v.version.desc())
    ).all()  # one row a version: a few
    effective: dict[int, dt.datetime] = {}
    soonest: dt.datetime | None = None
    for version, applied_at in versions:
        if version in first:
            soonest = first[version] if soonest is None else min(soonest, first[version])
        effective[version] = applied_at if soonest is None else min(applied_at, soonest)
    query = select(v.version, v.document, v.applied_by).where(v.program_id == program_id)
    for r in _rows(connection, query.order_by(v.version)):
        if r.version in launched:
            done = launched[r.version]
            line = {"kind": "launch", "challenge": done.detail["challenge"], "by": done.actor}
        else:
            line = {"kind": "document", "version": r.version, "document": r.document, "by": r.applied_by}
        yield effective[r.version], line


def _events(connection: Connection, program_id: int) -> Iterator[tuple[dt.datetime, Line]]:
    e, p = t.events.c, t.participants.c
    query = (
        select(e.event_id, e.type, p.external_id, e.occurred_at, e.received_at, e.data, e.reverses, e.share)
        .join_from(t.events, t.participants, e.participant_id == p.id)
        .where(e.program_id == program_id)
        .order_by(e.seq)
    )
    for r in _rows(connection, query):
        event: Line = {"id": r.event_id, "type": r.type, "participant": r.external_id}
        event |= {"occurred_at": _iso(r.occurred_at), "data": r.data}
        if r.reverses is not None:
            event["reverses"] = r.reverses
        if r.share is not None:
            event["portion"] = r.share / 1_000_000
        yield r.received_at, {"kind": "event", "event": event}


def _adjustments(connection: Connection, program_id: int) -> Iterator[tuple[dt.datetime, Line]]:
    """Manual adjustments (not a case's: the case's answer posts it again)."""
    le, p = t.ledger_entries.c, t.participants.c
    query = (
        select(le.idempotency_key, le.currency, le.amount, le.explain, le.created_at, p.external_id)
        .join_from(t.ledger_entries, t.participants, le.participant_id == p.id)
        .where(le.program_id == program_id, le.kind == "adjustment", not_(le.idempotency_key.like("adjustment:case-%")))
        .order_by(le.id)
    )
    for r in _rows(connection, query):
        by, _, note = r.explain.removeprefix("[redacted] ").removeprefix(ADJUSTED).partition(": ")
        line = {"kind": "adjustment", "participant": r.external_id, "currency": r.currency, "amount": r.amount}
        yield r.created_at, line | {"note": note, "by": by, "key": r.idempotency_key.removeprefix("adjustment:")}


def _kudos(connection: Connection, program_id: int) -> Iterator[tuple[dt.datetime, Line]]:
    k, giver, receiver = t.kudos.c, t.participants.alias("giver"), t.participants.alias("receiver")
    query = (
        select(k.at, k.amount, k.message, k.idempotency_key, giver.c.external_id, receiver.c.external_id.label("to"))
        .join_from(t.kudos, giver, k.giver_id == giver.c.id)
        .join(receiver, k.receiver_id == receiver.c.id)
        .where(k.program_id == program_id)
        .order_by(k.id)
    )
    for r in _rows(connection, query):
        line = {"kind": "kudos", "from": r.external_id, "to": r.to, "amount": r.amount, "message": r.message}
        yield r.at, line | {"key": r.idempotency_key}


def _kudos_clawbacks(connection: Connection, program_id: int) -> Iterator[tuple[dt.datetime, Line]]:
    """Kudos clawed back (the audit log is their record: note and actor), each naming its kudos by the
    kudos' idempotency key, which the import gives the kudos again."""
    a, k = t.audit_log.c, t.kudos.c
    rows = list(
        connection.execute(
            select(a.actor, a.detail, a.at).where(a.program_id == program_id, a.action == kudos.AUDITED).order_by(a.id)
        )
    )
    wanted = [int(r.detail["kudos"]) for r in rows]
    keys = {i: key for i, key in connection.execute(select(k.id, k.idempotency_key).where(k.id.in_(wanted)))}
    for r in rows:
        yield (
            r.at,
            {"kind": kudos.AUDITED, "kudos": keys[int(r.detail["kudos"])], "note": r.detail["note"], "by": r.actor},
        )


def _redemptions(connection: Connection, program_id: int) -> Iterator[tuple[dt.datetime, Line]]:
    r, p = t.redemptions.c, t.participants.c
    query = (
        select(r.idempotency_key, r.reward, r.created_at, p.external_id)
        .join_from(t.redemptions, t.participants, r.participant_id == p.id)
        .where(r.program_id == program_id)
        .order_by(r.id)
    )
    for row in _rows(connection, query):
        yield (
            row.created_at,
            {"kind": "redemption", "participant": row.external_id, "reward": row.reward, "key": row.idempotency_key},
        )


def _redemption_outcomes(connection: Connection, program_id: int) -> Iterator[tuple[dt.datetime, Line]]:
    r = t.redemptions.c
    query = select(r.idempotency_key, r.status, r.updated_at).where(r.program_id == program_id, r.status != "pending")
    for row in _rows(connection, query.order_by(r.updated_at, r.id)):
        yield (
            row.updated_at,
            {"kind": f"redemption.{'cancel' if row.status == 'cancelled' else 'fulfil'}", "key": row.idempotency_key},
        )


def _audited(connection: Connection, program_id: int) -> Iterator[tuple[dt.datetime, Line]]:
    """Inputs the audit log is the record of: status changes and tier overrides."""
    a = t.audit_log.c
    query = select(a.action, a.actor, a.detail, a.at).where(
        a.program_id == program_id, a.action.in_(["participant.status", "tier.override"])
    )
    for r in _rows(connection, query.order_by(a.id)):
        yield r.at, {"kind": r.action.removeprefix("participant."), "by": r.actor} | r.detail


def _cases(connection: Connection, program_id: int) -> Iterator[tuple[dt.datetime, Line]]:
    c, p, le = t.cases.c, t.participants.c, t.ledger_entries.c
    query = (
        select(c.id, c.message, c.created_at, c.entry_id, p.external_id, le.idempotency_key)
        .join_from(t.cases, t.participants, c.participant_id == p.id)
        .outerjoin(t.ledger_entries, le.id == c.entry_id)
        .where(c.program_id == program_id)
        .order_by(c.id)
    )
    for r in _rows(connection, query):
        line = {"kind": "case", "id": r.id, "participant": r.external_id, "message": r.message}
        yield r.created_at, line | {"entry": r.idempotency_key}


def _answers(connection: Connection, program_id: int) -> Iterator[tuple[dt.datetime, Line]]:
    c, le = t.cases.c, t.ledger_entries.c
    query = (
        select(c.id, c.status, c.reply, c.answered_at, le.currency, le.amount, le.explain)
        .outerjoin(t.ledger_entries, le.id == c.adjustment_id)
        .where(c.program_id == program_id, c.answered_at.is_not(None))
        .order_by(c.answered_at, c.id)
    )
    for r in _rows(connection, query):
        by = r.explain.removeprefix("[redacted] ").removeprefix(ADJUSTED).partition(":")[0] if r.explain else None
        line = {"kind": "case.answer", "case": r.id, "status": r.status, "reply": r.reply, "by": by}
        yield r.answered_at, line | {"currency": r.currency, "amount": r.amount}


def _job_moments(connection: Connection, program_id: int) -> Iterator[tuple[dt.datetime, Line]]:
    """When each job had an effect: periods closed, lots expired, referrals paid, tiers re-rated by the job
    (a tier change told without an event). Rerun then, each job finds what it found then."""
    le, cp, f = t.ledger_entries.c, t.closed_periods.c, t.feed.c
    sources: list[tuple[str, Select[Any]]] = [
        ("close-periods", select(cp.closed_at.label("at")).where(cp.program_id == program_id)),
        ("expire", select(le.created_at.label("at")).where(le.program_id == program_id, le.kind == "expiry")),
        ("referrals", select(le.created_at.label("at")).where(le.program_id == program_id, le.kind == "referral")),
        (
            "tiers",
            select(f.at).where(
                f.program_id == program_id, f.kind == "tier", not_(cast(f.payload, String).like('%"event"%'))
            ),
        ),
    ]

    def moments(job: str, query: Select[Any]) -> Iterator[tuple[dt.datetime, str]]:
        for r in _rows(connection, select(query.subquery().c.at).distinct().order_by("at")):
            yield r.at, job

    for at, job in heapq.merge(*(moments(job, query) for job, query in sources)):
        yield at, {"kind": "job", "job": job}


def _engine_inputs(connection: Connection, program_id: int) -> Iterator[tuple[dt.datetime, Line]]:
    """What the engine was handed besides events and could not recompute alike later: each segment
    assignment from its moment, each ``target: auto`` target as frozen when a batch first needed it."""
    p, sa, pt = t.participants.c, t.segment_assignments.c, t.personal_targets.c
    segments = (
        select(sa.effective_at.label("at"), p.external_id, sa.segment)
        .join_from(t.segment_assignments, t.participants, p.id == sa.participant_id)
        .where(sa.program_id == program_id)
        .order_by(sa.effective_at, sa.participant_id)
    )
    targets = (
        select(pt.created_at.label("at"), p.external_id, pt.challenge, pt.period, pt.target, pt.source)
        .join_from(t.personal_targets, t.participants, p.id == pt.participant_id)
        .where(pt.program_id == program_id)
        .order_by(pt.created_at, pt.participant_id, pt.challenge, pt.period)
    )
    segment_lines = (
        (r.at, {"kind": "segment", "participant": r.external_id, "segment": r.segment})
        for r in _rows(connection, segments)
    )
    target_lines = (
        (r.at, {"kind": "target", "participant": r.external_id, "challenge": r.challenge, "period": r.period}
         | {"target": r.target, "source": r.source})
        for r in _rows(connection, targets)
    )  # fmt: skip
    yield from heapq.merge(segment_lines, target_lines, key=lambda item: item[0])


TIMELINE: tuple[Callable[[Connection, int], Iterator[tuple[dt.datetime, Line]]], ...] = (
    _documents,
    _engine_inputs,  # before the events of the same moment: a batch found them stored
    _audited,
    _events,
    _adjustments,
    _kudos,
    _kudos_clawbacks,  # after the kudos of the same moment
    _redemptions,
    _redemption_outcomes,
    _cases,
    _answers,
    _job_moments,
)


def _people(connection: Connection, program_id: int) -> Iterator[Line]:
    """Teams, then participants with their teams, each in the order first seen (ids order ties on boards)."""
    m, p, ms = t.teams.c, t.participants.c, t.memberships.c
    for team in _rows(connection, select(m.external_id, m.name).where(m.program_id == program_id).order_by(m.id)):
        yield {"kind": "team", "id": team.external_id, "name": team.name}
    members: dict[int, list[str]] = {}
    pairs = select(ms.participant_id, m.external_id).join_from(t.memberships, t.teams, ms.team_id == m.id)
    for pid, team_id in connection.execute(pairs.where(m.program_id == program_id)):  # small next to the events
        members.setdefault(pid, []).append(team_id)
    people = select(p.id, p.external_id, p.name, p.attributes, p.hidden, p.erased_at).where(p.program_id == program_id)
    for r in _rows(connection, people.order_by(p.id)):
        yield {
            "kind": "participant",
            "id": r.external_id,
            "name": r.name,
            "attributes": r.attributes,
            "teams": sorted(members.get(r.id, [])),
            "hidden": r.hidden,
            "erased_at": _iso(r.erased_at),
        }


def lines(connection: Connection, program_key: str, *, now: dt.datetime | None = None) -> Iterator[Line]:
    """The export of a program, line by line (see the module's note). ``connection`` is a read snapshot."""
    program = programs.find(connection, program_key)
    now = now or dt.datetime.now(dt.UTC)
    yield {"kind": "header", "format": FORMAT, "version": VERSION, "program": program.key, "exported_at": _iso(now)}
    count = 1
    # Merged by time; at one moment, in TIMELINE's order (a document before the events it scores).
    streams = [((at, n, line) for at, line in source(connection, program.id)) for n, source in enumerate(TIMELINE)]
    for at, _, line in heapq.merge(*streams, key=lambda item: (item[0], item[1])):
        yield {"at": _iso(at)} | line
        count += 1
        if count == 2:  # right after the first document: the program exists to hold them
            for person in _people(connection, program.id):
                yield person
                count += 1
    yield {"kind": "end", "lines": count + 1}


def write(connection: Connection, program_key: str, out: IO[str], progress: Callable[[], None] | None = None) -> int:
    """Write the export to ``out``; returns the number of lines. ``progress`` is called once a line."""
    n = 0
    for line in lines(connection, program_key):
        out.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
        n += 1
        if progress is not None:
            progress()
    return n


def size(connection: Connection, program_key: str) -> int:
    """About how many lines an export has (for a progress bar): the rows of its largest inputs."""
    program_id = programs.find(connection, program_key).id
    total = 0
    for table in (t.events, t.participants, t.kudos, t.redemptions, t.program_versions):
        total += connection.execute(
            select(func.count()).select_from(table).where(table.c.program_id == program_id)
        ).scalar_one()
    return total


# ------------------------------------------------------------------------------------------------ import


@dataclass
class Imported:
    """What an import did: lines read and inputs re-applied per kind."""

    program: str
    lines: int = 0
    applied: dict[str, int] = field(default_factory=dict)


def _bad(n: int, message: str) -> Invalid:
    return Invalid("not a Levelup export", errors=[FieldError(f"line {n}", message)])


def _at(line: Line) -> dt.datetime:
    return dt.datetime.fromisoformat(line["at"])


# Inputs posted by one call (connection, program, compiled, now, fields): the call, and its arguments' fields.
_POSTED: dict[str, tuple[Callable[..., Any], dict[str, str]]] = {
    "adjustment": (
        ledger.adjust,
        {"participant": "participant", "currency": "currency", "amount": "amount", "note": "note", "actor": "by"}
        | {"idempotency_key": "key"},
    ),
    "kudos": (
        give,
        {"giver": "from", "receiver": "to", "amount": "amount", "message": "message", "idempotency_key": "key"},
    ),
    "redemption": (rewards.redeem, {"participant": "participant", "reward_key": "reward", "idempotency_key": "key"}),
}


class _Rebuild:
    """Re-applies one export's lines, in order, to a new program on ``runtime``."""

    def __init__(self, runtime: Runtime, key: str) -> None:
        self.runtime, self.key = runtime, key
        self.done = Imported(key)
        self.batch: list[Line] = []
        self.batch_at: dt.datetime | None = None
        self.cases: dict[int, int] = {}  # the source's case id → the new one

    def count(self, kind: str) -> None:
        self.done.applied[kind] = self.done.applied.get(kind, 0) + 1

    def flush(self) -> None:
        """Ingest the events waiting: one batch received at one moment, as they first were."""
        if self.batch:
            outcomes = ingest(self.runtime, self.key, self.batch, now=self.batch_at)
            refused = [o for o in outcomes if o.status not in ("accepted", "duplicate")]
            if refused:
                raise Conflict(f"event {refused[0].id} was refused on import: {refused[0].as_dict()}")
            self.batch, self.batch_at = [], None

    def line(self, line: Line) -> None:
        kind = line["kind"]
        if kind == "event":
            at = _at(line)
            if self.batch and (at != self.batch_at or len(self.batch) >= CHUNK):
                self.flush()
            self.batch.append(line["event"])
            self.batch_at = at
            self.count(kind)
            return
        self.flush()
        if kind == "job":
            jobs.run(self.runtime, [line["job"]], now=_at(line), program_keys=[self.key])
        elif kind == "document":
            document = line["document"] | {"program": self.key}
            with self.runtime.db.write() as connection:
                programs.apply(connection, ProgramDocument.model_validate(document), actor=line["by"] or "import")
        else:
            with self.runtime.db.write() as connection:
                self._in_transaction(connection, kind, line)
        self.count(kind)

    def _in_transaction(self, connection: Connection, kind: str, line: Line) -> None:
        if kind == "team":
            participants.set_team(connection, self._program(connection).id, line["id"], name=line["name"] or line["id"])
            return
        if kind == "participant":
            self._participant(connection, line)
            return
        program = self._program(connection)
        compiled = self.runtime.programs.compiled(connection, program)
        at = _at(line)
        if kind == "launch":
            launch(connection, self.key, line["challenge"], actor=line["by"], now=at)
        elif kind in _POSTED:
            function, names = _POSTED[kind]
            function(connection, program, compiled, now=at, **{arg: line[name] for arg, name in names.items()})
        elif kind in ("redemption.cancel", "redemption.fulfil"):
            r = t.redemptions.c
            found = select(r.id).where(r.program_id == program.id, r.idempotency_key == line["key"])
            redemption_id = connection.execute(found).scalar_one()
            act = rewards.cancel if kind == "redemption.cancel" else rewards.fulfil
            act(connection, program, redemption_id, actor="import", now=at)
        elif kind == "status":
            participants.set_status(
                connection, program.id, line["participant"], line["status"], note=line["note"], actor=line["by"], now=at
            )
        elif kind == "tier.override":
            until = dt.datetime.fromisoformat(line["until"]) if line["until"] else None
            tiers.set_override(
                connection,
                program.id,
                compiled,
                line["participant"],
                tier=line["tier"],
                until=until,
                note=line["note"],
                actor=line["by"],
                now=at,
            )
        elif kind == "segment":
            who = participants.find_id(connection, program.id, line["participant"])
            row = {"participant_id": who, "program_id": program.id, "effective_at": at, "segment": line["segment"]}
            connection.execute(t.segment_assignments.insert().values(row))
        elif kind == "target":
            who = participants.find_id(connection, program.id, line["participant"])
            fields = {name: line[name] for name in ("challenge", "period", "target", "source")}
            row = {"participant_id": who, "program_id": program.id, "created_at": at} | fields
            connection.execute(t.personal_targets.insert().values(row))
        elif kind == kudos.AUDITED:
            k = t.kudos.c
            found = select(k.id).where(k.program_id == program.id, k.idempotency_key == line["kudos"])
            kudos_id = connection.execute(found).scalar_one()
            kudos.clawback(
                connection, program, compiled, kudos_id=kudos_id, note=line["note"], actor=line["by"], now=at
            )
        elif kind == "case":
            self._case(connection, program, line, at)
        elif kind == "case.answer":
            cases.answer(
                connection,
                program,
                compiled,
                self.cases[line["case"]],
                status=line["status"],
                reply=line["reply"] or "",
                actor=line["by"] or "import",
                currency=line["currency"],
                amount=line["amount"],
                now=at,
            )
        else:
            raise _bad(self.done.lines, f"unknown kind {kind!r}")

    def _program(self, connection: Connection) -> programs.ProgramRecord:
        return programs.find(connection, self.key)

    def _participant(self, connection: Connection, line: Line) -> None:
        program_id = self._program(connection).id
        participants.set_profile(
            connection, program_id, line["id"], name=line["name"], teams=line["teams"], attributes=line["attributes"]
        )
        if line["hidden"]:
            visibility.set_hidden(connection, program_id, line["id"], True)
        if line["erased_at"]:  # already pseudonymised in the file: only the mark is left to keep
            p = t.participants.c
            erased = dt.datetime.fromisoformat(line["erased_at"])
            mark = t.participants.update().where(p.program_id == program_id, p.external_id == line["id"])
            connection.execute(mark.values(erased_at=erased))

    def _case(self, connection: Connection, program: programs.ProgramRecord, line: Line, at: dt.datetime) -> None:
        entry = None
        if line["entry"] is not None:
            le = t.ledger_entries.c
            where = and_(le.program_id == program.id, le.idempotency_key == line["entry"])
            entry = connection.execute(select(le.id).where(where)).scalar_one()
        who = participants.find_id(connection, program.id, line["participant"])
        self.cases[line["id"]] = cases.open_case(connection, program, who, line["message"], entry_id=entry, now=at)


def rebuild(
    runtime: Runtime, source: Iterable[str], *, as_key: str | None = None, progress: Callable[[int], None] | None = None
) -> Imported:
    """Rebuild the exported program on ``runtime`` (as ``as_key``, default its own key), which must not have it.
    ``progress`` gets the characters of each line read. A file that is not an export, or was cut short, is
    refused (the program made so far stays, for a look; ``levelup`` never deletes a program)."""
    rebuilt: _Rebuild | None = None
    ended = False
    for n, text in enumerate(source, start=1):
        if progress is not None:
            progress(len(text))
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _bad(n, f"not JSON: {exc}") from None
        if not isinstance(line, dict) or "kind" not in line:
            raise _bad(n, "not an export line")
        if rebuilt is None:
            if line.get("kind") != "header" or line.get("format") != FORMAT or line.get("version") != VERSION:
                raise _bad(n, f"the first line is the header of {FORMAT} version {VERSION}")
            key = as_key or line["program"]
            with runtime.db.read() as connection:
                exists = connection.execute(select(t.programs.c.id).where(t.programs.c.key == key)).first()
            if exists is not None:
                raise Conflict(f"program {key!r} exists here: import into a new key (--as)", code="program_exists")
            rebuilt = _Rebuild(runtime, key)
            rebuilt.done.lines = n
            continue
        rebuilt.done.lines = n
        if line["kind"] == "end":
            if line.get("lines") != n:
                raise _bad(n, f"the export says {line.get('lines')} lines, {n} were read")
            ended = True
            break
        rebuilt.line(line)
    if rebuilt is None or not ended:
        raise _bad(rebuilt.done.lines if rebuilt else 0, "the export ends early: no end line")
    rebuilt.flush()
    return rebuilt.done
