"""API keys: random secrets stored as SHA-256 hashes, each with a role and the programs it may touch.

A key is ``lvl_<id>_<secret>``; the id finds the row, the hash proves the secret. Only the SHA-256 of the
secret is stored, and the presented secret's hash is compared with :func:`hmac.compare_digest` (an unknown
id is compared against a dummy hash, so it costs the same). The secrets are 256-bit random, so a fast hash
is enough (no password stretching). A key may expire (``expires_at``); when it was last used is noted at most
once a minute per key and process, off the request's path (:class:`LastUsed`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, or_, select

from levelup.audit import service as audit
from levelup.errors import FieldError, Forbidden, Invalid, NotFound, Unauthorized
from levelup.storage import tables as t
from levelup.storage.db import Database

Role = Literal["admin", "ingest", "read"]
RANK: dict[str, int] = {"read": 0, "ingest": 1, "admin": 2}
ALL_PROGRAMS = "*"
LAST_USED_EVERY = 60.0  # seconds: a key's last use is written at most this often per process
MAX_EXPIRY_DAYS = 36_500
LATEST_EXPIRY = dt.datetime(3000, 1, 1, tzinfo=dt.UTC)

logger = logging.getLogger("levelup.keys")


class KeyExpired(Unauthorized):
    code = "key_expired"


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


_NO_KEY = _digest(secrets.token_urlsafe(32))  # what a token naming no stored key is compared with


def parse_expiry(text: str, now: dt.datetime) -> dt.datetime:
    """``30d`` or ``12h`` from ``now``, an ISO date (midnight UTC) or an ISO time (UTC unless it has an offset):
    what ``levelup keys create --expires`` takes."""
    relative = re.fullmatch(r"\s*(\d{1,6})\s*([dh])\s*", text)
    if relative:
        amount, unit = int(relative[1]), relative[2]
        if amount > MAX_EXPIRY_DAYS * (24 if unit == "h" else 1):
            raise ValueError(f"at most {MAX_EXPIRY_DAYS} days")
        return now + (dt.timedelta(days=amount) if unit == "d" else dt.timedelta(hours=amount))
    try:
        parsed = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration (30d, 12h) nor an ISO date or time") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _check_expiry(expires_at: dt.datetime | None, now: dt.datetime) -> None:
    if expires_at is None:
        return
    if expires_at.tzinfo is None:
        raise Invalid("invalid key", errors=[FieldError("expires_at", "needs a UTC offset, e.g. 2027-01-01T00:00:00Z")])
    if not now < expires_at < LATEST_EXPIRY:
        message = f"must be in the future and before {LATEST_EXPIRY:%Y-%m-%d}"
        raise Invalid("invalid key", errors=[FieldError("expires_at", message)])


def create(
    connection: Connection,
    *,
    role: str,
    programs: list[str],
    creator: Principal | None,
    note: str | None = None,
    expires_at: dt.datetime | None = None,
) -> tuple[str, str]:
    """A new key: its id and the full secret, which is shown this once and never stored. ``expires_at``:
    from then on the key gets 401 ``key_expired`` (None: it never expires)."""
    if role not in RANK:
        raise ValueError(f"unknown role {role!r}")
    now = dt.datetime.now(dt.UTC)
    _check_expiry(expires_at, now)
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
            created_at=now,
            note=note,
            expires_at=expires_at,
        )
    )
    detail: dict[str, Any] = {"id": key_id, "role": role, "programs": sorted(set(programs))}
    if expires_at is not None:
        detail["expires_at"] = expires_at.astimezone(dt.UTC).isoformat()
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
    """The keys ``by`` could revoke (an admin of every program they name), oldest first; never a secret.
    ``last_used_at`` is up to a minute behind (:class:`LastUsed`)."""
    by.require("admin")
    k = t.api_keys.c
    columns = (k.id, k.role, k.programs, k.note, k.created_at, k.revoked_at, k.expires_at, k.last_used_at)
    rows = connection.execute(select(*columns).order_by(k.created_at, k.id)).all()
    return [
        {
            "id": row.id,
            "role": row.role,
            "programs": list(row.programs),
            "note": row.note,
            "created_at": row.created_at.isoformat(),
            "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
            "expires_at": row.expires_at.isoformat() if row.expires_at else None,
            "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None,
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


def authenticate(
    connection: Connection, presented: str | None, admin_key: str | None, *, now: dt.datetime | None = None
) -> Principal:
    """The principal behind a bearer token; Unauthorized for a missing, unknown or revoked key, and
    :class:`KeyExpired` for an expired one (only once its secret is proven: an expiry is no oracle).

    The row is found by the key's id; the secret is proven by comparing SHA-256 hashes in constant time,
    against a dummy hash when no row has that id, so an unknown id and a wrong secret take the same work."""
    found = bootstrap(presented, admin_key)
    if found is not None:
        return found
    assert presented is not None
    parts = presented.split("_", 2)
    k = t.api_keys.c
    row = None
    if len(parts) == 3 and parts[0] == "lvl":
        columns = (k.id, k.role, k.programs, k.secret_hash, k.revoked_at, k.expires_at)
        row = connection.execute(select(*columns).where(k.id == parts[1])).first()
    proven = hmac.compare_digest((row.secret_hash if row else _NO_KEY).encode(), _digest(parts[-1]).encode())
    if row is None or not proven or row.revoked_at is not None:
        raise Unauthorized("unknown or revoked key")
    if row.expires_at is not None and row.expires_at <= (now or dt.datetime.now(dt.UTC)):
        raise KeyExpired(f"key expired at {row.expires_at.isoformat()}")
    return Principal(row.id, row.role, frozenset(row.programs))


class LastUsed:
    """Notes when stored keys are used, cheaply: at most one write every ``every`` seconds per key in this
    process, made by a thread of its own in a short transaction that writes every key noted meanwhile (never in
    a request's transaction, and a request never waits for it). So ``last_used_at`` is at most ``every``
    seconds behind; a failed write is logged and left (the next use writes again)."""

    def __init__(self, db: Database, every: float = LAST_USED_EVERY) -> None:
        self.db, self.every = db, every
        self._lock = threading.Lock()
        self._written: dict[str, float] = {}  # key id → when its use was last queued (monotonic)
        self._due: dict[str, dt.datetime] = {}  # key id → the use to write
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="levelup-key-use")

    def note(self, key_id: str) -> None:
        """``key_id`` was just used: queue a write unless one was queued for it within ``every`` seconds."""
        now = time.monotonic()
        with self._lock:
            last = self._written.get(key_id)
            if last is not None and now - last < self.every:
                return
            self._written[key_id] = now
            first = not self._due
            self._due[key_id] = dt.datetime.now(dt.UTC)
        if first:  # a write already queued takes this one along
            self._writer.submit(self._write)

    def _write(self) -> None:
        with self._lock:
            due, self._due = self._due, {}
        if not due:
            return
        k = t.api_keys.c
        try:
            with self.db.write() as connection:
                for key_id, at in sorted(due.items()):  # in id order: two processes never deadlock
                    statement = t.api_keys.update().where(
                        k.id == key_id, or_(k.last_used_at.is_(None), k.last_used_at < at)
                    )
                    connection.execute(statement.values(last_used_at=at))
        except Exception:  # best effort: the next use past ``every`` writes again
            logger.warning("could not note the use of keys %s", sorted(due), exc_info=True)

    def flush(self) -> None:
        """Wait for the writes queued so far."""
        self._writer.submit(self._write).result()

    def close(self) -> None:
        """Write what is noted (at shutdown); the writer stays usable, as an app may be started again."""
        self.flush()
