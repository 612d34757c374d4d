"""The liability report: what a program owes in each spendable currency, and how it moved.

Outstanding is every point held (spendable + pending); arrears are owed *to* the
program (taken back after being spent) and are shown, never netted away.
Expiring sums live lots by expiry date; redeemed and expired are per month of the
program's time zone (redeemed is net of cancelled redemptions' refunds).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BindParameter, Connection, bindparam, func, select

from levelup.metrics.periods import local_date
from levelup.programs.compiled import CompiledProgram
from levelup.programs.service import ProgramRecord
from levelup.storage import tables as t

HORIZONS = (30, 90)


def liability(
    connection: Connection, program: ProgramRecord, compiled: CompiledProgram, *, now: dt.datetime | None = None
) -> dict[str, Any]:
    now = now or dt.datetime.now(dt.UTC)
    spendable = [c for c in compiled.doc.currencies if c.spendable]
    p = t.positions.c
    held = {
        r.currency: r
        for r in connection.execute(
            select(
                p.currency,
                func.coalesce(func.sum(p.available), 0).label("available"),
                func.coalesce(func.sum(p.pending), 0).label("pending"),
                func.coalesce(func.sum(p.arrears), 0).label("arrears"),
                func.count().filter(p.available > 0).label("holders"),
            )
            .where(p.program_id == program.id, p.currency.in_([c.key for c in spendable]))  # the others owe nothing
            .group_by(p.currency)
        )
    }
    lot = t.lots.c
    expiring: dict[tuple[str, int], int] = {}
    for days in HORIZONS:
        for currency, amount in connection.execute(
            select(lot.currency, func.coalesce(func.sum(lot.remaining), 0))
            .where(
                lot.program_id == program.id,
                lot.remaining > 0,
                lot.expires_at > now,
                lot.expires_at <= now + dt.timedelta(days=days),
            )
            .group_by(lot.currency)
        ):
            expiring[(currency, days)] = int(amount)
    e = t.ledger_entries.c
    monthly: dict[tuple[str, str, str], int] = {}
    monthly_kinds: BindParameter[str] = bindparam("kinds", t.MONTHLY_KINDS, expanding=True, literal_execute=True)
    for currency, kind, at, amount in connection.execute(
        select(e.currency, e.kind, e.at, e.amount).where(e.program_id == program.id, e.kind.in_(monthly_kinds))
    ):
        month = local_date(at, compiled.timezone).strftime("%Y-%m")
        what = "expired" if kind == "expiry" else "redeemed"
        monthly[(currency, what, month)] = monthly.get((currency, what, month), 0) - int(amount)
    currencies = []
    for c in spendable:
        row = held.get(c.key)
        available, pending, arrears = (int(row.available), int(row.pending), int(row.arrears)) if row else (0, 0, 0)
        currencies.append(
            {
                "currency": c.key,
                "outstanding": available,
                "spendable": available - pending,
                "pending": pending,
                "arrears": arrears,
                "holders": int(row.holders) if row else 0,
                "expiring": {f"{days}d": expiring.get((c.key, days), 0) for days in HORIZONS},
                "redeemed_by_month": _months(monthly, c.key, "redeemed"),
                "expired_by_month": _months(monthly, c.key, "expired"),
            }
        )
    return {"program": program.key, "as_of": now.isoformat(), "currencies": currencies}


def _months(monthly: dict[tuple[str, str, str], int], currency: str, what: str) -> dict[str, int]:
    return {m: n for (c, w, m), n in sorted(monthly.items()) if c == currency and w == what and n}
