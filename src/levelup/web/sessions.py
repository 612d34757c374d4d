"""Admin studio sessions: an admin key is exchanged once for a random cookie secret, stored as its hash.

The key's principal (id, role, programs) is kept with the session, so the studio checks rights exactly as
the API does (:meth:`levelup.keys.service.Principal.require`); revoking the key ends its sessions."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import Connection, select

from levelup.keys.service import Principal
from levelup.storage import tables as t

LIFETIME = dt.timedelta(hours=12)
COOKIE = "levelup_admin"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def start(connection: Connection, principal: Principal, now: dt.datetime | None = None) -> str:
    """A new session of ``principal`` (an admin); returns the cookie's secret, never stored."""
    principal.require("admin")
    now = now or dt.datetime.now(dt.UTC)
    secret = secrets.token_urlsafe(32)
    connection.execute(
        t.admin_sessions.insert().values(
            id=_digest(secret),
            key_id=principal.key_id,
            role=principal.role,
            programs=sorted(principal.programs),
            created_at=now,
            expires_at=now + LIFETIME,
        )
    )
    return secret


def find(connection: Connection, secret: str | None, now: dt.datetime | None = None) -> Principal | None:
    """The principal of a live session (unexpired, its key neither revoked nor expired), or None."""
    if not secret:
        return None
    now = now or dt.datetime.now(dt.UTC)
    s, k = t.admin_sessions.c, t.api_keys.c
    row = connection.execute(
        select(s.key_id, s.role, s.programs, s.expires_at, k.revoked_at, k.expires_at.label("key_expires"))
        .outerjoin(t.api_keys, k.id == s.key_id)
        .where(s.id == _digest(secret))
    ).first()
    if row is None or row.expires_at <= now or row.revoked_at is not None:
        return None
    if row.key_expires is not None and row.key_expires <= now:  # a key's session ends with it
        return None
    return Principal(row.key_id, row.role, frozenset(row.programs))


def end(connection: Connection, secret: str) -> None:
    connection.execute(t.admin_sessions.delete().where(t.admin_sessions.c.id == _digest(secret)))
