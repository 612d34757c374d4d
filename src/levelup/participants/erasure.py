"""Erasure: pseudonymise a participant everywhere, keeping every figure of the books.

A person asks to be forgotten; the program must still balance. So nothing is deleted: the participant
row keeps its internal id (every ledger entry, lot, metric and rank points at it) and gets a stable
pseudonym as its external id, and every copy of who they are is replaced where it was stored:

- the participant: external id → ``erased-<hash>``, name → null, attributes → ``{}``, ``erased_at`` set;
- their events' data fields the program document marks ``personal`` (in any of its versions) are deleted;
- kudos messages they gave or received, their cases' texts, their tier override note → ``[erased]``;
- the free text of the ledger entries about them (kudos messages, adjustment notes) is redacted, and their
  old external id in any other entry's text replaced (the only ledger change the database accepts);
- the feed, the webhook outbox (pending and delivered), closing results and the audit log: their old
  external id → the pseudonym, their name and the free text (``message``, ``note``, ``reply``) of an object
  naming them → ``[erased]``;
- their participant links are revoked.

The pseudonym is a hash of the program and the internal id, not of anything the person gave: it cannot be
traced back, and the same erasure run twice gives the same result. Nothing keeps the old external id, so a
later event naming it makes a new participant, with no history (docs/security.md says why).

Replay still equals the stored state: no expression that scores an event may read a personal field
(:mod:`levelup.programs.personal` refuses such a document), and an id in event data (a referral's referrer)
is replaced by the pseudonym the participant row now carries, so every lookup by external id still resolves.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, ColumnElement, Connection, String, Table, case, cast, false, or_, select

from levelup.audit import service as audit
from levelup.errors import NotFound
from levelup.kudos.service import kudos_key
from levelup.leaderboards import normalised, windows
from levelup.ledger import posting
from levelup.participants import repository as participants
from levelup.programs.personal import fields_by_type
from levelup.storage import tables as t

ERASED = "[erased]"
FREE_TEXT = ("message", "note", "reply")


@dataclass(frozen=True)
class Erased:
    """What an erasure changed: the pseudonym now in use, and how many stored rows it rewrote per table."""

    participant: str
    rewritten: dict[str, int]
    already: bool = False


def pseudonym(program_id: int, participant_id: int) -> str:
    """Stable and untraceable: derived from internal ids only, never from what the person gave."""
    digest = hashlib.sha256(f"levelup-erasure:{program_id}:{participant_id}".encode()).hexdigest()
    return f"erased-{digest[:20]}"


@dataclass(frozen=True)
class _Scrub:
    """Replaces one person's identifiers in stored JSON and text."""

    old_id: str
    new_id: str
    name: str | None
    free_text: bool = True  # False in event data: rules may read it, and the id is all replay must keep

    def value(self, value: Any, *, mentioned: bool = False) -> Any:
        """``value`` with the old id replaced and the name erased; free text erased in an object naming them
        and inside it (everywhere when ``mentioned``: the row itself is theirs)."""
        if isinstance(value, list):
            return [self.value(v, mentioned=mentioned) for v in value]
        if isinstance(value, dict):
            theirs = self.free_text and (mentioned or any(v == self.old_id for v in value.values()))
            return {
                k: ERASED if theirs and k in FREE_TEXT and isinstance(v, str) else self.value(v, mentioned=theirs)
                for k, v in value.items()
            }
        if value == self.old_id:
            return self.new_id
        if self.name and value == self.name:
            return ERASED
        return value

    def patterns(self) -> list[str]:
        """LIKE patterns finding a row whose JSON holds the old id or the name as a string (either escaping)."""
        wanted = [self.old_id] + ([self.name] if self.name else [])
        forms = {json.dumps(w, ensure_ascii=a) for w in wanted for a in (True, False)}
        return ["%" + f.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%" for f in forms]


def _rewrite_json(
    connection: Connection,
    table: Table,
    key: tuple[Column[Any], ...],
    column: Column[Any],
    program_id: int,
    scrub: _Scrub,
    *,
    own: Column[Any] | None = None,
) -> int:
    """Rewrite the JSON ``column`` of the program's rows of ``table`` that mention the person; ``own`` is a
    column naming the participant a row is about (the feed's), which also makes the row theirs."""
    text = cast(column, String)
    found: list[ColumnElement[bool]] = [text.like(p, escape="!") for p in scrub.patterns()]
    if own is not None:
        found.append(own == scrub.old_id)
    n = len(key)
    selected = [*key, column] + ([own] if own is not None else [])
    rows = connection.execute(select(*selected).where(table.c.program_id == program_id, or_(*found))).all()
    for row in rows:
        theirs = own is not None and row[n + 1] == scrub.old_id
        changes: dict[str, Any] = {column.name: scrub.value(row[n], mentioned=theirs)}
        if own is not None and theirs:
            changes[own.name] = scrub.new_id
        where = [k == v for k, v in zip(key, row[:n], strict=True)]
        connection.execute(table.update().where(*where).values(**changes))
    return len(rows)


def _without(data: dict[str, Any], path: tuple[str, ...]) -> None:
    """Delete ``data.<path>`` in place, if it is there."""
    for name in path[:-1]:
        inner = data.get(name)
        if not isinstance(inner, dict):
            return
        data = inner
    data.pop(path[-1], None)


def _events(connection: Connection, program_id: int, participant_id: int, scrub: _Scrub) -> int:
    """Delete the personal fields of the person's events, and replace their id wherever event data names it
    (only the id: a name or a note there may be what a rule reads, and replay must score the same)."""
    scrub = _Scrub(scrub.old_id, scrub.new_id, None, free_text=False)
    documents = connection.execute(
        select(t.program_versions.c.document).where(t.program_versions.c.program_id == program_id)
    ).scalars()
    personal = fields_by_type(iter(documents))
    e = t.events.c
    text = cast(e.data, String)
    mentioning = or_(*(text.like(p, escape="!") for p in scrub.patterns()))
    own = e.participant_id == participant_id
    if personal:
        own_personal = own & e.type.in_(list(personal))
        rows = connection.execute(select(e.seq, e.type, e.data, e.participant_id).where(own_personal | mentioning))
    else:
        rows = connection.execute(select(e.seq, e.type, e.data, e.participant_id).where(mentioning))
    changed = 0
    for seq, kind, data, owner in rows.all():
        new = scrub.value(data)
        if owner == participant_id:
            for path in personal.get(kind, ()):
                _without(new, path)
        if new != data:
            connection.execute(t.events.update().where(e.seq == seq).values(data=new))
            changed += 1
    return changed


def _ledger(connection: Connection, program_id: int, participant_id: int, scrub: _Scrub) -> int:
    """Redact the text of ledger entries: kudos and adjustments of theirs lose their free text, and any entry
    naming their old id names the pseudonym. Amounts, keys and times never change (the trigger checks)."""
    le, k, p = t.ledger_entries.c, t.kudos.c, t.participants.c
    givers = dict(
        connection.execute(
            select(k.id, p.external_id)
            .join_from(t.kudos, t.participants, k.giver_id == p.id)
            .where(k.program_id == program_id, or_(k.giver_id == participant_id, k.receiver_id == participant_id))
        ).all()
    )
    kudos_keys = {kudos_key(i): giver for i, giver in givers.items()}
    rows = connection.execute(
        select(le.id, le.kind, le.idempotency_key, le.explain).where(
            le.program_id == program_id,
            or_(
                le.idempotency_key.in_(list(kudos_keys)) if kudos_keys else false(),
                (le.participant_id == participant_id) & (le.kind == "adjustment"),
                le.explain.like("%" + scrub.old_id.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%", "!"),
            ),
        )
    ).all()
    explains = {}
    for entry_id, kind, key, explain in rows:
        if key in kudos_keys:
            explains[entry_id] = f"kudos from {kudos_keys[key]}: {ERASED}"
        elif kind == "adjustment" and explain.startswith("manual adjustment by "):
            explains[entry_id] = explain.split(":", 1)[0] + f": {ERASED}"  # who adjusted stays; the note goes
        else:
            explains[entry_id] = explain.replace(scrub.old_id, scrub.new_id)
    posting.redact(connection, explains)
    return len(rows)


def _texts(connection: Connection, program_id: int, participant_id: int, now: dt.datetime) -> dict[str, int]:
    """Free text about them: kudos messages, case texts, the tier override note; their links revoked."""
    k, c, ts, ln = t.kudos.c, t.cases.c, t.tier_state.c, t.links.c
    counts = {
        "kudos": connection.execute(
            t.kudos.update()
            .where(k.program_id == program_id, or_(k.giver_id == participant_id, k.receiver_id == participant_id))
            .values(message=ERASED)
        ).rowcount,
        "cases": connection.execute(
            t.cases.update()
            .where(c.participant_id == participant_id)
            .values(message=ERASED, reply=case((c.reply.is_(None), None), else_=ERASED))
        ).rowcount,
        "tier_state": connection.execute(
            t.tier_state.update()
            .where(ts.participant_id == participant_id, ts.override_note.is_not(None))
            .values(override_note=ERASED)
        ).rowcount,
        "links": connection.execute(
            t.links.update().where(ln.participant_id == participant_id, ln.revoked_at.is_(None)).values(revoked_at=now)
        ).rowcount,
    }
    return counts


def erase(
    connection: Connection, program_id: int, external_id: str, *, actor: str, now: dt.datetime | None = None
) -> Erased:
    """Pseudonymise the participant ``external_id`` of the program everywhere (see the module's note); audited
    with the pseudonym only. Erasing an erased participant (by its pseudonym) changes nothing more.
    Raises NotFound for an unknown participant. The caller owns the transaction."""
    now = now or dt.datetime.now(dt.UTC)
    p = t.participants.c
    row = connection.execute(
        select(p.id, p.name, p.erased_at).where(p.program_id == program_id, p.external_id == external_id)
    ).first()
    if row is None:
        raise NotFound(f"no participant {external_id!r}")
    if row.erased_at is not None:
        return Erased(external_id, {}, already=True)
    participants.lock(connection, [row.id])
    scrub = _Scrub(external_id, pseudonym(program_id, row.id), row.name or None)
    connection.execute(
        t.participants.update()
        .where(p.id == row.id)
        .values(external_id=scrub.new_id, name=None, attributes={}, erased_at=now)
    )
    normalised.refresh(connection, program_id, [row.id])  # no handicap left: off the normalised boards
    windows.handicaps_changed(connection, program_id, [row.id])
    rewritten = {"participants": 1, "events": _events(connection, program_id, row.id, scrub)}
    rewritten["ledger_entries"] = _ledger(connection, program_id, row.id, scrub)
    rewritten |= _texts(connection, program_id, row.id, now)
    # the insight page's kept analyses may name them (churn, flags): derived figures, dropped, computed again
    snapshots = t.insight_snapshots.delete().where(t.insight_snapshots.c.program_id == program_id)
    rewritten["insight_snapshots"] = connection.execute(snapshots).rowcount
    for name, table, key, column, own in _JSON_TABLES:
        rewritten[name] = _rewrite_json(connection, table, key, column, program_id, scrub, own=own)
    audit.record(
        connection, program_id, actor, "participant.erase", {"participant": scrub.new_id, "rewritten": rewritten}, now
    )
    return Erased(scrub.new_id, rewritten)


_JSON_TABLES: Iterable[tuple[str, Table, tuple[Column[Any], ...], Column[Any], Column[Any] | None]] = (
    ("feed", t.feed, (t.feed.c.id,), t.feed.c.payload, t.feed.c.participant),
    ("webhook_outbox", t.webhook_outbox, (t.webhook_outbox.c.id,), t.webhook_outbox.c.body, None),
    (
        "closed_periods",
        t.closed_periods,
        (t.closed_periods.c.challenge, t.closed_periods.c.period),
        t.closed_periods.c.result,
        None,
    ),
    ("audit_log", t.audit_log, (t.audit_log.c.id,), t.audit_log.c.detail, None),
)
