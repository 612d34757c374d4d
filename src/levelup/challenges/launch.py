"""Launching a draft challenge: it becomes visible and pays from now on, as a new program version.

A draft is scored silently (progress, completions, standings; no rewards, hidden
from participants), so a team can test a contest on live data first. Launching
applies the document in force with ``draft: false`` for that challenge (audited
like any version) and, in the same transaction, pays the constant reward of the
completions the draft recorded in periods that have not ended: nobody loses what
they did while the contest was being tested. Completions of ended periods stay
unpaid (the contest was not open then). A launch payment is booked like a prize,
outside event scoring: the completion keeps the draft's empty reward (as replay
computes it), so a later reversal of the completing event does not take it back.
Competitions and team goals need nothing here: they pay when their period closes,
and a launched challenge is no longer a draft then.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, select

from levelup.audit import service as audit
from levelup.engine.goals import goal_period
from levelup.errors import Conflict, NotFound
from levelup.ledger.service import Booking, book
from levelup.metrics.periods import local_date
from levelup.programs import service as programs
from levelup.programs.compiled import CompiledProgram
from levelup.programs.document import ProgramDocument
from levelup.storage import tables as t


def launch(
    connection: Connection, program_key: str, challenge_key: str, *, actor: str, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Take a challenge out of draft; returns the new version and what was paid."""
    record = programs.find(connection, program_key)
    document = programs.document_of(connection, record)
    found = next((c for c in document.get("challenges", []) if c.get("key") == challenge_key), None)
    if found is None:
        raise NotFound(f"no challenge {challenge_key!r} in program {program_key!r}")
    if not found.get("draft"):
        raise Conflict(f"challenge {challenge_key!r} is not a draft")
    found["draft"] = False
    doc = ProgramDocument.model_validate(document)
    record, _ = programs.apply(connection, doc, actor=actor)
    challenge = next(c for c in doc.challenges if c.key == challenge_key)
    now = now or dt.datetime.now(dt.UTC)
    current = goal_period(challenge, local_date(now, doc.timezone))
    c = t.challenge_completions.c
    rows = connection.execute(
        select(c.participant_id, c.period).where(
            c.program_id == record.id, c.challenge == challenge_key, c.period == current
        )
    ).all()
    reward = [(cur, int(n)) for cur, n in (challenge.reward or {}).items() if isinstance(n, int | float) and n >= 1]
    bookings = [
        Booking(
            r.participant_id,
            currency,
            amount,
            "challenge",
            f"launch:{challenge_key}:{r.period}:{r.participant_id}:{currency}",
            f"challenge {challenge.name or challenge_key} ({r.period}): reached while in draft, paid at launch",
            now,
        )
        for r in rows
        for currency, amount in reward
    ]
    book(connection, record.id, bookings, now=now, compiled=CompiledProgram(doc, record.version))
    paid = len({b.participant_id for b in bookings})
    audit.record(
        connection,
        record.id,
        actor,
        "challenge.launch",
        {"challenge": challenge_key, "version": record.version, "paid": paid},
        now,
    )
    return {"program": record.key, "version": record.version, "challenge": challenge_key, "paid": paid}
