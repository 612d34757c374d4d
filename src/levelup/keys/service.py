"""API keys: random secrets stored as SHA-256 hashes, each with a role and the programs it may touch.

A key is ``lvl_<id>_<secret>``; the id finds the row, the hash proves the secret.
The secrets are 256-bit random, so a fast hash is enough (no password stretching).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, select

from levelup.audit import service as audit
from levelup.errors import Forbidden, NotFound, Unauthorized
from levelup.storage import tables as t

Role = Literal["admin", "ingest", "read"]
RANK: dict[str, int] = {"read": 0, "ingest": 1, "admin": 2}
ALL_PROGRAMS = "*"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key's id, role and programs (``*`` for all)."""

    key_id: str
    role: str
    programs: frozenset[str]

    def can(self, role: str, program: str | None = None) -> bool:
        if RANK[self.role] < RANK[role]:
            return False
        return program is None or ALL_PROGRAMS in self.programs or program in self.programs

    def require(self, role: str, program: str | None = None) -> None:
        if RANK[self.role] < RANK[role]:
            raise Forbidden(f"this key's role is {self.role}; {role} is needed")
        if not self.can(role, program):
            raise Forbidden(f"this key may not touch program {program!r}")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create(
    connection: Connection, *, role: str, programs: list[str], creator: Principal | None, note: str | None = None
) -> tuple[str, str]:
    """A new key: its id and the full secret, which is shown this once and never stored."""
    if role not in RANK:
        raise ValueError(f"unknown role {role!r}")
    if creator is not None:
        for program in programs:
            creator.require("admin", None if program == ALL_PROGRAMS else program)
        if ALL_PROGRAMS in programs and ALL_PROGRAMS not in creator.programs:
            raise Forbidden("only a key for every program can make one")
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    connection.execute(
        t.api_keys.insert().values(
            id=key_id,
            secret_hash=_digest(secret),
            role=role,
            programs=sorted(set(programs)),
            created_at=dt.datetime.now(dt.UTC),
            note=note,
        )
    )
    detail = {"id": key_id, "role": role, "programs": sorted(set(programs))}
    _audit(connection, programs, creator.key_id if creator else "cli", "key.create", detail)
    return key_id, f"lvl_{key_id}_{secret}"


def _audit(connection: Connection, scope: list[str], actor: str, action: str, detail: dict[str, Any]) -> None:
    """A key action, in the audit log of every existing program of its scope (a key for every program,
    or one whose programs do not exist yet: without a program)."""
    p = t.programs.c
    ids = [] if ALL_PROGRAMS in scope else list(connection.execute(select(p.id).where(p.key.in_(scope))).scalars())
    for program_id in ids or [None]:
        audit.record(connection, program_id, actor, action, detail, dt.datetime.now(dt.UTC))


def admin_exists(connection: Connection) -> bool:
    """Whether any live admin key is stored (the bootstrap key of the environment aside)."""
    k = t.api_keys.c
    found = connection.execute(select(k.id).where(k.role == "admin", k.revoked_at.is_(None)).limit(1)).first()
    return found is not None


def listed(connection: Connection, *, by: Principal) -> list[dict[str, Any]]:
    """The keys ``by`` could revoke (an admin of every program they name), oldest first; never a secret."""
    by.require("admin")
    k = t.api_keys.c
    rows = connection.execute(
        select(k.id, k.role, k.programs, k.note, k.created_at, k.revoked_at).order_by(k.created_at, k.id)
    ).all()
    return [
        {
            "id": row.id,
            "role": row.role,
            "programs": list(row.programs),
            "note": row.note,
            "created_at": row.created_at.isoformat(),
            "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
        }
        for row in rows
        if all(by.can("admin", None if p == ALL_PROGRAMS else p) for p in row.programs)
        and (ALL_PROGRAMS not in row.programs or ALL_PROGRAMS in by.programs)
    ]


def revoke(connection: Connection, key_id: str, *, by: Principal) -> None:
    row = connection.execute(select(t.api_keys).where(t.api_keys.c.id == key_id)).first()
    if row is None or row.revoked_at is not None:
        raise NotFound(f"no active key {key_id!r}")
    for program in row.programs:
        by.require("admin", None if program == ALL_PROGRAMS else program)
    if ALL_PROGRAMS in row.programs and ALL_PROGRAMS not in by.programs:
        raise Forbidden("only a key for every program can revoke this key")
    connection.execute(t.api_keys.update().where(t.api_keys.c.id == key_id).values(revoked_at=dt.datetime.now(dt.UTC)))
    _audit(connection, list(row.programs), by.key_id, "key.revoke", {"id": key_id})


def bootstrap(presented: str | None, admin_key: str | None) -> Principal | None:
    """The bootstrap admin when the token is ``LEVELUP_ADMIN_KEY`` (no database needed); Unauthorized
    without a token; None for a token the database must judge."""
    if not presented:
        raise Unauthorized("send Authorization: Bearer <key>")
    if admin_key and hmac.compare_digest(presented.encode(), admin_key.encode()):
        return Principal("bootstrap-admin", "admin", frozenset({ALL_PROGRAMS}))
    return None


def authenticate(connection: Connection, presented: str | None, admin_key: str | None) -> Principal:
    """The principal behind a bearer token; Unauthorized for a missing, unknown or revoked key."""
    found = bootstrap(presented, admin_key)
    if found is not None:
        return found
    assert presented is not None
    parts = presented.split("_", 2)
    if len(parts) == 3 and parts[0] == "lvl":
        row = connection.execute(select(t.api_keys).where(t.api_keys.c.id == parts[1])).first()
        if (
            row is not None
            and row.revoked_at is None
            and hmac.compare_digest(row.secret_hash.encode(), _digest(parts[2]).encode())
        ):
            return Principal(row.id, row.role, frozenset(row.programs))
    raise Unauthorized("unknown or revoked key")
