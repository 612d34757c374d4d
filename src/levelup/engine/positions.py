"""How a signed ledger amount moves a participant's position in one currency.

A position is ``available`` (held now, never negative; ``pending`` of it is not spendable yet) and ``arrears`` (what
a reversal could not take back because the points were already spent). The sum
of the ledger always equals ``available - arrears``; new credits pay arrears off
first. Nothing is silently lost and no balance is ever secretly negative.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from levelup.programs.document import Currency, duration_seconds

# Entries that count toward what was earned (levels climb on it). Reversals only
# ever undo earning entries, so they count too; spending (redemptions) does not.
EARNING_KINDS = frozenset({"rule", "challenge", "prize", "referral", "adjustment", "reversal"})


@dataclass
class Position:
    available: int = 0
    arrears: int = 0
    earned: int = 0  # lifetime credits from play (rules, challenges, prizes): what levels climb on
    pending: int = 0  # the part of available not spendable yet (see ledger.lots); the engine never moves it

    @property
    def net(self) -> int:
        return self.available - self.arrears


@dataclass(slots=True)  # never changed once made; not frozen, as a frozen one costs twice as much to make
class PositionDelta:
    available: int = 0
    arrears: int = 0
    earned: int = 0
    pending: int = 0

    def __add__(self, other: PositionDelta) -> PositionDelta:
        return PositionDelta(
            self.available + other.available,
            self.arrears + other.arrears,
            self.earned + other.earned,
            self.pending + other.pending,
        )


def move(position: Position, amount: int, kind: str) -> PositionDelta:
    """The delta that books ``amount``: credits pay arrears first, debits beyond the balance become arrears."""
    earned = amount if kind in EARNING_KINDS else 0
    if amount >= 0:
        paid = min(position.arrears, amount)
        return PositionDelta(amount - paid, -paid, earned)
    taken = min(position.available, -amount)
    return PositionDelta(-taken, -amount - taken, earned)


def apply(position: Position, delta: PositionDelta) -> None:
    position.available += delta.available
    position.arrears += delta.arrears
    position.earned += delta.earned
    position.pending += delta.pending


def lot_dates(currency: Currency, kind: str, at: dt.datetime) -> tuple[dt.datetime, dt.datetime | None]:
    """When a credit of ``currency`` booked at ``at`` becomes spendable (after the currency's ``pending`` period,
    for what is earned) and when it expires (``expires_after``; None: never)."""
    pending = duration_seconds(currency.pending) if currency.pending and kind in EARNING_KINDS else 0
    available_at = at + dt.timedelta(seconds=pending) if pending else at
    expires_at = at + dt.timedelta(seconds=duration_seconds(currency.expires_after)) if currency.expires_after else None
    return available_at, expires_at
