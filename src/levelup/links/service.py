"""Signed links: random secrets stored as SHA-256 hashes, each opening one program's page for a while.

A token is ``<id>.<secret>``: the id finds the row, the hash proves the secret (compared in constant
time). The secret is 256-bit random and shown once, so a fast hash is enough, as for API keys.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection, select

from levelup.audit import service as audit
from levelup.errors import FieldError, Forbidden, Invalid, NotFound
from levelup.participants import repository as participants
from levelup.programs.compiled import CompiledProgram
from levelup.programs.service import ProgramRecord
from levelup.storage import tables as t

Kind = Literal["tv", "participant"]
DEFAULT_EXPIRES_IN = 30 * 24 * 3600  # docs/web.md: 30 days
MAX_EXPIRES_IN = 366 * 24 * 3600
DEFAULT_TOP = 10
DEFAULT_ROTATE = 15

NOTHING = "this link does not open anything: it may have expired or been revoked"


@dataclass(frozen=True)
class TvOptions:
    """What a TV link shows: the top ``top`` of each board (never the bottom), which boards, how fast."""

    top: int = DEFAULT_TOP
    boards: list[str] = field(default_factory=list)  # empty: every board of the program, in document order
    rotate: int = DEFAULT_ROTATE  # seconds a board stays on screen

    def as_dict(self) -> dict[str, Any]:
        return {"top": self.top, "boards": list(self.boards), "rotate": self.rotate}


@dataclass(frozen=True)
class Link:
    """An opened link: the program it belongs to and who it shows (a participant's internal and external id)."""

    id: str
    program_id: int
    kind: str
    participant_id: int | None
    participant: str | None
    options: TvOptions


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create(
    connection: Connection,
    program: ProgramRecord,
    compiled: CompiledProgram,
    *,
    kind: Kind,
    participant: str | None = None,
    expires_in: int = DEFAULT_EXPIRES_IN,
    options: TvOptions | None = None,
    note: str | None = None,
    actor: str,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """A new link: its row as :func:`listed` shows it, plus the ``token``, shown this once. Audited."""
    if not 60 <= expires_in <= MAX_EXPIRES_IN:
        raise Invalid("bad expiry", errors=[FieldError("expires_in", f"60..{MAX_EXPIRES_IN} seconds")])
    if (kind == "participant") != (participant is not None):
        raise Invalid("bad link", errors=[FieldError("participant", "a participant link names one; a tv link none")])
    participant_id = participants.find_id(connection, program.id, participant) if participant is not None else None
    options = options or TvOptions()
    board_keys = {b.key for b in compiled.doc.leaderboards}
    unknown = [key for key in options.boards if key not in board_keys]
    if unknown:
        raise Invalid("unknown board", errors=[FieldError("boards", f"no leaderboard {unknown[0]!r}")])
    now = now or dt.datetime.now(dt.UTC)
    link_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    lifetime = dt.timedelta(seconds=expires_in)
    row = {
        "id": link_id,
        "program_id": program.id,
        "kind": kind,
        "participant_id": participant_id,
        "secret_hash": _digest(secret),
        "options": options.as_dict() if kind == "tv" else {},
        "note": note,
        "created_at": now,
        "expires_at": now + lifetime,
        "revoked_at": None,
    }
    connection.execute(t.links.insert().values(**row))
    detail = {"id": link_id, "kind": kind, "participant": participant, "expires_at": (now + lifetime).isoformat()}
    audit.record(connection, program.id, actor, "link.create", detail, now)
    return _shape(row, participant) | {"token": f"{link_id}.{secret}"}


def _shape(row: Any, participant: str | None) -> dict[str, Any]:
    values = row if isinstance(row, dict) else row._mapping
    revoked = values["revoked_at"]
    return {
        "id": values["id"],
        "kind": values["kind"],
        "participant": participant,
        "options": values["options"],
        "note": values["note"],
        "created_at": values["created_at"].isoformat(),
        "expires_at": values["expires_at"].isoformat(),
        "revoked_at": revoked.isoformat() if revoked else None,
    }


def listed(connection: Connection, program: ProgramRecord) -> list[dict[str, Any]]:
    """The program's links, newest first, revoked and expired ones included; never a secret."""
    k, p = t.links.c, t.participants.c
    rows = connection.execute(
        select(t.links, p.external_id)
        .outerjoin(t.participants, p.id == k.participant_id)
        .where(k.program_id == program.id)
        .order_by(k.created_at.desc(), k.id)
    )
    return [_shape(row, row.external_id) for row in rows]


def revoke(
    connection: Connection, program: ProgramRecord, link_id: str, *, actor: str, now: dt.datetime | None = None
) -> None:
    k = t.links.c
    now = now or dt.datetime.now(dt.UTC)
    done = connection.execute(
        t.links.update()
        .where(k.id == link_id, k.program_id == program.id, k.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    if done.rowcount != 1:
        raise NotFound(f"no active link {link_id!r} in program {program.key!r}")
    audit.record(connection, program.id, actor, "link.revoke", {"id": link_id}, now)


def open_link(
    connection: Connection, program: ProgramRecord, token: str | None, kind: Kind, now: dt.datetime | None = None
) -> Link:
    """The link ``token`` proves, if it is of ``kind``, for ``program``, unexpired and unrevoked.

    Every refusal is the same 404 (a page of another program, a guessed token, an expired or revoked
    link): the answer tells a stranger nothing about which links exist."""
    link_id, _, secret = (token or "").partition(".")
    k, p = t.links.c, t.participants.c
    row = (
        connection.execute(
            select(t.links, p.external_id).outerjoin(t.participants, p.id == k.participant_id).where(k.id == link_id)
        ).first()
        if link_id and secret
        else None
    )
    if (
        row is None
        or not hmac.compare_digest(row.secret_hash.encode(), _digest(secret).encode())
        or row.program_id != program.id
        or row.revoked_at is not None
        or row.expires_at <= (now or dt.datetime.now(dt.UTC))
    ):
        raise NotFound(NOTHING)
    if row.kind != kind:
        raise Forbidden(f"this is a {row.kind} link")
    options = TvOptions(**row.options) if row.kind == "tv" else TvOptions()
    return Link(row.id, row.program_id, row.kind, row.participant_id, row.external_id, options)


def page_path(program: str, kind: str, token: str) -> str:
    """Where a link's token opens its page, relative to the server's root."""
    return f"/p/{program}/{'tv' if kind == 'tv' else 'me'}?token={token}"
