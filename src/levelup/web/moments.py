"""The feed as people read it: each item a sentence ("Dana won Top Closer — Bronze"), and whether it is a
moment to celebrate (a badge, a level up, a completed challenge, a prize, a tier up)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from levelup.engine.experiments import kept_out
from levelup.feed.service import Published
from levelup.participants.visibility import HIDDEN_NAME
from levelup.programs.compiled import CompiledProgram
from levelup.programs.document import Experiment
from levelup.storage import tables as t

QUIET_KINDS = {"award", "badge.revoked", "challenge.undone", "status", "quest"}  # told, never shown on a TV


@dataclass(frozen=True)
class Moment:
    id: int
    text: str
    celebrate: bool
    at: str

    def data(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "celebrate": self.celebrate, "at": self.at}


def recent(connection: Connection, program_id: int, limit: int, scanned: int = 500) -> list[Published]:
    """The program's newest ``limit`` feed items worth showing, newest first, among its newest ``scanned``:
    awards make most of a busy feed, and a walk back past all of them to find older moments would cost a
    read of the whole feed (what a TV shows is what just happened)."""
    f = t.feed.c
    newest = select(f.id, f.kind).where(f.program_id == program_id).order_by(f.id.desc()).limit(scanned).subquery()
    shown = select(newest.c.id).where(newest.c.kind.not_in(QUIET_KINDS))  # payloads read for these only
    rows = connection.execute(
        select(f.id, f.participant, f.kind, f.payload, f.at).where(f.id.in_(shown)).order_by(f.id.desc()).limit(limit)
    )
    return [Published(*row) for row in rows]


def names(
    connection: Connection, program_id: int, external_ids: set[str], held_out: Sequence[Experiment] = ()
) -> dict[str, str]:
    """Display names of those participants (their id when they have none; a participant who opted out of
    public boards, or whom the ``held_out`` experiments keep out of the program, is not named: docs/security.md)."""
    if not external_ids:
        return {}
    p = t.participants.c
    rows = connection.execute(
        select(p.external_id, p.name, p.hidden).where(
            p.program_id == program_id, p.external_id.in_(sorted(external_ids))
        )
    )
    return {
        row.external_id: HIDDEN_NAME
        if row.hidden or kept_out(held_out, row.external_id)
        else row.name or row.external_id
        for row in rows
    }


def _named(item: Published) -> set[str]:
    """Every participant a feed item's sentence names."""
    p = item.payload
    named = {item.participant} if item.participant else set()
    if item.kind == "kudos":
        named.add(str(p["from"]))
    if item.kind == "period.closed":
        named.update(str(r["id"]) for r in (p.get("ranking") or [])[:1])
        named.update(str(r) for r in (p.get("reached") or [])[:5])
    return named


def moments(
    connection: Connection, program_id: int, compiled: CompiledProgram, items: Sequence[Published]
) -> list[Moment]:
    """The sentences of those feed items that say something to a room (others are left out)."""
    who = names(connection, program_id, {n for i in items for n in _named(i)}, compiled.program_holdouts)
    said = []
    for item in items:
        text = _sentence(item, who, compiled)
        if text is not None:
            celebrate = item.kind in ("badge", "challenge", "period.closed") or (
                item.kind in ("level", "tier") and bool(item.payload.get("up"))
            )
            said.append(Moment(item.id, text, celebrate, item.at.isoformat()))
    return said


def _sentence(item: Published, who: Mapping[str, str], compiled: CompiledProgram) -> str | None:
    p = item.payload
    name = who.get(item.participant or "", item.participant or "")
    badges = {b.key: b.name for b in compiled.doc.badges}
    challenges = {c.key: c.name or c.key for c in compiled.doc.challenges}
    if item.kind == "badge":
        return f"{name} won {badges.get(p['badge'], p['badge'])} — {p['grade']}"
    if item.kind == "level":
        return f"{name} reached {p['to']}" if p.get("up") else None
    if item.kind == "tier":
        return f"{name} is now {p['to']}" if p.get("up") and p.get("to") else None
    if item.kind == "challenge":
        return f"{name} completed {challenges.get(p['challenge'], p['challenge'])}"
    if item.kind == "streak":
        return f"{name} is on a {p['length']}-long {p['streak']} streak" if p["length"] >= 3 else None
    if item.kind == "kudos":
        return f"{who.get(p['from'], p['from'])} gave {name} kudos: “{p['message']}”"
    if item.kind == "period.closed":
        title = challenges.get(p["challenge"], p["challenge"])
        if p.get("ranking"):
            first = p["ranking"][0]["id"]
            return f"{title} ({p['period']}): {who.get(first, first)} takes first prize"
        reached = ", ".join(who.get(r, r) for r in (p.get("reached") or [])[:5])
        return f"{title} ({p['period']}): reached by {reached}" if reached else None
    return None
