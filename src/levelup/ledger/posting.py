"""The one posting path: the only code that appends ledger entries and moves balances.

Every credit or debit — scored events and their reversals, adjustments, prizes and
team rewards, kudos, referrals, redemptions and their cancellations, expiry — is
posted here, so a balance can only change together with the entries that explain
it, in the same statement sequence: entries first, then the lots that earnings
create and reversals draw, then one conditional update per position (the CHECK
constraints judge the result). ``replay --rebuild`` restores positions from the
folded ledger through :func:`restore_positions`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from levelup.engine.positions import PositionDelta
from levelup.leaderboards import redis_board, windows
from levelup.ledger.lots import LotMove, apply_moves
from levelup.programs.compiled import CompiledProgram
from levelup.storage import tables as t
from levelup.storage.sql import add_checked, bulk_insert

Deltas = Mapping[tuple[int, str], PositionDelta]  # (participant id, currency) → the move of its position


@dataclass(frozen=True)
class Entry:
    """One ledger entry to append; ``key`` is its idempotency key, unique in the program."""

    participant_id: int
    currency: str
    amount: int
    kind: str
    key: str
    explain: str
    at: dt.datetime
    rule: str | None = None
    rule_version: int | None = None
    event_seq: int | None = None

    def row(self, program_id: int, created_at: dt.datetime) -> dict[str, Any]:
        return {
            "program_id": program_id,
            "participant_id": self.participant_id,
            "currency": self.currency,
            "amount": self.amount,
            "kind": self.kind,
            "rule": self.rule,
            "rule_version": self.rule_version,
            "event_seq": self.event_seq,
            "idempotency_key": self.key,
            "explain": self.explain,
            "at": self.at,
            "created_at": created_at,
        }


def post(
    connection: Connection,
    program_id: int,
    compiled: CompiledProgram | None,
    entries: Sequence[Entry],
    deltas: Deltas,
    *,
    now: dt.datetime,
    lots: Sequence[LotMove] = (),
) -> None:
    """Append ``entries`` and move positions by ``deltas`` (what the entries did, computed by the engine's
    arithmetic: credits pay arrears first, a debit never goes below zero); ``lots`` are the lot moves of
    the entries, in booking order (created for credits, drawn for debits; they change ``pending``)."""
    bulk_insert(connection, t.ledger_entries, [e.row(program_id, now) for e in entries])
    windows.posted(connection, program_id, ((e.participant_id, e.currency, e.kind, e.amount, e.at) for e in entries))
    moved = dict(deltas)
    if lots and compiled is not None:
        for key, pending in apply_moves(connection, program_id, compiled, lots, now).items():
            moved[key] = moved.get(key, PositionDelta()) + PositionDelta(pending=pending)
    _move_positions(connection, program_id, moved)


REDACTED = "[redacted] "  # the prefix migration 0012's ledger trigger requires of a rewritten explain


def redact(connection: Connection, explains: Mapping[int, str]) -> None:
    """Rewrite the text of these entries (an erasure: participants/erasure.py), marked redacted; the only
    change the ledger's trigger allows an entry (amounts, keys and times never move)."""
    le = t.ledger_entries.c
    for entry_id, text in explains.items():
        update = t.ledger_entries.update().where(le.id == entry_id)
        connection.execute(update.values(explain=REDACTED + text.removeprefix(REDACTED)))


def restore_positions(connection: Connection, program_id: int, positions: Deltas) -> None:
    """Write positions anew after ``replay --rebuild`` deleted them (from the folded ledger, so they equal it)."""
    _move_positions(connection, program_id, positions)


def _move_positions(connection: Connection, program_id: int, deltas: Deltas) -> None:
    redis_board.touched(connection, ((program_id, "e", c, "all", p) for (p, c), d in deltas.items() if d.earned))
    add_checked(
        connection,
        t.positions,
        [
            {
                "participant_id": p,
                "currency": c,
                "program_id": program_id,
                "available": d.available,
                "arrears": d.arrears,
                "earned": d.earned,
                "pending": d.pending,
            }
            for (p, c), d in deltas.items()
        ],
        keys=["participant_id", "currency"],
        add=["available", "arrears", "earned", "pending"],
    )
