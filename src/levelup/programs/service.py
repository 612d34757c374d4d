"""Applying program documents as immutable versions, and finding the version in force."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, literal, select

from levelup.audit import service as audit
from levelup.errors import NotFound
from levelup.leaderboards import normalised
from levelup.programs.compiled import CompiledProgram
from levelup.programs.document import ProgramDocument
from levelup.storage import tables as t
from levelup.storage.sql import fetch_by_keys


@dataclass(frozen=True)
class ProgramRecord:
    id: int
    key: str
    version: int


class ProgramCache:
    """Compiled versions, keyed by program id and version: a version never changes once applied."""

    def __init__(self) -> None:
        self._compiled: dict[tuple[int, int], CompiledProgram] = {}

    def compiled(self, connection: Connection, program: ProgramRecord, version: int | None = None) -> CompiledProgram:
        key = (program.id, version or program.version)
        found = self._compiled.get(key)
        if found is None:
            document = connection.execute(
                select(t.program_versions.c.document).where(
                    t.program_versions.c.program_id == key[0], t.program_versions.c.version == key[1]
                )
            ).scalar_one()
            found = self._compiled[key] = CompiledProgram(ProgramDocument.model_validate(document), key[1])
        return found


def find(connection: Connection, key: str) -> ProgramRecord:
    """The program and its version in force (every request asks: a lookup on the hot path's cursor)."""
    found = fetch_by_keys(
        connection, t.programs, fixed={}, keys=["key"], values=[(key,)], columns=["id", "key", "version"]
    )
    if not found:
        raise NotFound(f"no program {key!r}")
    return ProgramRecord(*found[0])


# PostgreSQL advisory lock keys of "events of program N are being scored": this base + the program's id.
SCORING_LOCK = 7_465_001 << 32


def find_for_scoring(connection: Connection, key: str) -> ProgramRecord:
    """The program and its version in force, for a transaction that scores and stores events under it.

    On PostgreSQL the transaction also holds the program's scoring lock, shared (writers of events do
    not wait for each other); :func:`apply` takes it exclusively, so it waits for the writers in flight
    and the next ones wait for it, queued fairly behind it. Events are so never scored under one
    version and stored beside an apply that rebuilds metrics or fills a new board from the events it
    can see. SQLite has a single writer anyway."""
    # A statement of its own: a statement reads as of when it starts, so one that waited for the lock
    # would still read the version an apply has just replaced.
    _scoring_lock(connection, key, shared=True)
    return find(connection, key)


def _scoring_lock(connection: Connection, key: str, *, shared: bool) -> None:
    """Take program ``key``'s scoring lock until the transaction ends (PostgreSQL; SQLite has one writer)."""
    if connection.dialect.name == "sqlite":
        return
    take = func.pg_advisory_xact_lock_shared if shared else func.pg_advisory_xact_lock
    c = t.programs.c
    connection.execute(select(take(literal(SCORING_LOCK) + c.id)).where(c.key == key))


def selected(connection: Connection, keys: Iterable[str] | None = None) -> list[ProgramRecord]:
    """Every program, or those named by ``keys`` (all must exist), in key order: what a job goes through."""
    query = select(t.programs.c.id, t.programs.c.key, t.programs.c.version).order_by(t.programs.c.key)
    wanted = None if keys is None else set(keys)
    if wanted is not None:
        query = query.where(t.programs.c.key.in_(wanted))
    found = [ProgramRecord(row.id, row.key, row.version) for row in connection.execute(query)]
    missing = (wanted or set()) - {p.key for p in found}
    if missing:
        raise NotFound(f"no program {min(missing)!r}")
    return found


def document_of(connection: Connection, program: ProgramRecord, version: int | None = None) -> dict[str, Any]:
    document = connection.execute(
        select(t.program_versions.c.document).where(
            t.program_versions.c.program_id == program.id,
            t.program_versions.c.version == (version or program.version),
        )
    ).scalar_one_or_none()
    if document is None:
        raise NotFound(f"program {program.key!r} has no version {version}")
    assert isinstance(document, dict)
    return document


def _normalised(stored: dict[str, Any]) -> dict[str, Any] | None:
    """A stored document as the current model writes it (fields added since, such as ``sources: []``, at
    their defaults), so re-applying the same document to a database made before them is still no change;
    None when the current model refuses it (then any document applied is a change)."""
    try:
        return ProgramDocument.model_validate(stored).model_dump(mode="json", by_alias=True, exclude_none=True)
    except ValueError:
        return None


def apply(connection: Connection, doc: ProgramDocument, *, actor: str) -> tuple[ProgramRecord, bool]:
    """Make ``doc`` the version in force. Returns the record and whether a new version was made.

    Re-applying the document already in force makes no new version, so a deploy
    script can apply on every run.
    """
    now = dt.datetime.now(dt.UTC)
    document = doc.model_dump(mode="json", by_alias=True, exclude_none=True)
    _scoring_lock(connection, doc.program, shared=False)  # before the row lock, as scoring takes them
    row = connection.execute(
        select(t.programs.c.id, t.programs.c.version).where(t.programs.c.key == doc.program).with_for_update()
    ).first()
    in_force: dict[str, Any] | None = None
    if row is None:
        program_id = connection.execute(
            t.programs.insert().values(key=doc.program, version=1, created_at=now).returning(t.programs.c.id)
        ).scalar_one()
        version = 1
    else:
        program_id = row.id
        current = ProgramRecord(row.id, doc.program, row.version)
        in_force = document_of(connection, current)
        if _normalised(in_force) == document:
            return current, False
        version = row.version + 1
        connection.execute(t.programs.update().where(t.programs.c.id == program_id).values(version=version))
    connection.execute(
        t.program_versions.insert().values(
            program_id=program_id, version=version, document=document, applied_at=now, applied_by=actor
        )
    )
    record = ProgramRecord(program_id, doc.program, version)
    detail: dict[str, Any] = {"version": version}
    before = CompiledProgram(ProgramDocument.model_validate(in_force), version - 1) if in_force else None
    if before is not None and CompiledProgram(doc, version).kept != before.kept:
        # Replay sits above programs (it scores with them): imported here, where the two meet.
        from levelup.events.replay import rebuild_metrics

        detail["metrics_rebuilt_from_events"] = rebuild_metrics(connection, record)
    normalised.register(connection, program_id, doc.leaderboards)  # a new normalised board, filled from history
    audit.record(connection, program_id, actor, "program.apply", detail, now)
    return record, True
