"""Opting out of public boards: a participant still scored, but not shown by name where anyone can look.

A hidden participant keeps their rank, their value and their place: the row stays on a public board (a TV
link's screen) with its id and name masked, so nobody else moves up or down because one person opted out
and the ranks of the others stay the truth. Authenticated readers (a read key, the participant's own link)
still see everything; the flag only masks what a public screen shows (docs/security.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, select

from levelup.engine.experiments import kept_out
from levelup.participants import repository as participants
from levelup.programs.document import Experiment
from levelup.storage import tables as t

HIDDEN_ID = "hidden"
HIDDEN_NAME = "Hidden participant"


def set_hidden(connection: Connection, program_id: int, external_id: str, hidden: bool) -> bool:
    """Set the participant's opt-out from public boards; returns it. NotFound for an unknown participant."""
    participant_id = participants.find_id(connection, program_id, external_id)
    connection.execute(t.participants.update().where(t.participants.c.id == participant_id).values(hidden=hidden))
    return hidden


def hidden(
    connection: Connection, program_id: int, external_ids: Iterable[str], held_out: Sequence[Experiment] = ()
) -> set[str]:
    """Those of these participants who opted out of public boards, and those the ``held_out`` experiments
    (the program's: ``CompiledProgram.program_holdouts``) keep out of the whole program: scored silently,
    shown to nobody by name, so a held-out participant never finds themselves on a public screen."""
    wanted = sorted(set(external_ids))
    if not wanted:
        return set()
    p = t.participants.c
    query = select(p.external_id).where(p.program_id == program_id, p.external_id.in_(wanted), p.hidden)
    out = set(connection.execute(query).scalars())
    return out | {w for w in wanted if kept_out(held_out, w)}


def masked(
    connection: Connection,
    program_id: int,
    entries: Iterable[Mapping[str, Any]],
    held_out: Sequence[Experiment] = (),
) -> list[dict[str, Any]]:
    """A participants' board's entries as a public screen shows them: a hidden participant's id and name
    replaced, rank and value kept (a team board's entries are teams: pass them through unchanged)."""
    rows = [dict(e) for e in entries]
    return mask(rows, hidden(connection, program_id, (r["id"] for r in rows), held_out))


def mask(entries: Iterable[Mapping[str, Any]], hidden_ids: set[str]) -> list[dict[str, Any]]:
    """:func:`masked` for a caller that already knows who is hidden."""
    rows = [dict(e) for e in entries]
    for row in rows:
        if row["id"] in hidden_ids:
            row["id"], row["name"] = HIDDEN_ID, HIDDEN_NAME
    return rows
