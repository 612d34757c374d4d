"""The loyalty demo: a real online gift shop's invoices as purchases and refunds (see data/SOURCE.md).

Each sales invoice of an identified customer is a ``purchase.completed`` (id: the
invoice number, amount: its total in pounds). A cancellation invoice (``C…``)
returns items bought earlier, so it becomes refunds of earlier purchases: each
returned stock code goes to the customer's most recent earlier sale holding that
code (or, failing that, their most recent earlier sale), and each purchase hit
gets one refund event that ``reverses`` it with ``portion`` = refunded value /
its total, capped so the refunds of one purchase never add up to more than all
of it. A cancellation with no earlier purchase of its customer in the window
(the sale happened before December 2010) is dropped.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

PROGRAM = "uci-rewards"
PROGRAM_FILE = "retail-rewards.yaml"
DATA_FILE = "uci_retail_invoices.csv"
TIMEZONE = ZoneInfo("Europe/London")
WHOLE = 1_000_000  # a refund's portion in millionths, as the engine counts it: shares add up exactly
LAST_DAY = dt.date(2011, 2, 28)  # the last trading day in the data
# The end of the last day: what the demo's jobs, redemptions and reports take as "now".
AS_OF = dt.datetime.combine(LAST_DAY, dt.time(23, 59, 59), TIMEZONE)


@dataclass(frozen=True)
class Invoice:
    number: str  # C… for a cancellation
    customer: str
    country: str
    at: dt.datetime  # the first line's time, Europe/London
    lines: int
    total: Decimal  # pounds; negative for a cancellation
    codes: frozenset[str] = frozenset()  # a sale: its stock codes that the customer returned at some point
    returned: tuple[tuple[str, Decimal], ...] = ()  # a cancellation: (stock code, refunded pounds)

    @property
    def cancellation(self) -> bool:
        return self.number.startswith("C")


@dataclass(frozen=True)
class Refund:
    """The part of one cancellation invoice that refunds one earlier purchase."""

    cancellation: str
    purchase: str
    customer: str
    at: dt.datetime
    value: Decimal  # pounds returned against this purchase
    share: int  # millionths of the purchase refunded (capped: a purchase is refunded at most once in full)

    @property
    def id(self) -> str:
        return f"{self.cancellation}-{self.purchase}"


@dataclass
class Plan:
    """The events of the demo, and what happened to the cancellations on the way."""

    events: list[dict[str, Any]] = field(default_factory=list)
    purchases: int = 0
    refunds: list[Refund] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)  # cancellations without an earlier purchase
    nothing_left: list[Refund] = field(default_factory=list)  # the purchase was already refunded in full


def data_dir() -> Path:
    return Path(str(resources.files("levelup.demo") / "data"))


def program_text() -> str:
    return (resources.files("levelup.demo") / PROGRAM_FILE).read_text(encoding="utf-8")


def read_invoices(path: Path | None = None) -> list[Invoice]:
    """The invoices of identified customers, in time order (the derived file's order)."""
    out = []
    with (path or data_dir() / DATA_FILE).open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            items = [item for item in row["items"].split(";") if item]
            cancellation = row["invoice"].startswith("C")
            out.append(
                Invoice(
                    number=row["invoice"],
                    customer=row["customer"],
                    country=row["country"],
                    at=dt.datetime.fromisoformat(row["invoiced_at"]).replace(tzinfo=TIMEZONE),
                    lines=int(row["lines"]),
                    total=Decimal(row["total"]),
                    codes=frozenset() if cancellation else frozenset(items),
                    returned=tuple((c, Decimal(v)) for c, v in (i.split("=") for i in items)) if cancellation else (),
                )
            )
    return out


def share_of(value: Decimal, total: Decimal) -> int:
    """``value / total`` in millionths, at least one."""
    return max(1, int((value / total * WHOLE).quantize(Decimal(1), rounding=ROUND_HALF_UP)))


def plan(invoices: list[Invoice]) -> Plan:
    """Purchases and refunds, in time order."""
    out = Plan()
    sales: dict[str, list[Invoice]] = {}  # customer → their sales so far, oldest first
    refunded: dict[str, int] = {}  # purchase → millionths refunded so far
    for invoice in invoices:
        if not invoice.cancellation:
            if invoice.total <= 0:
                continue  # nothing was sold: no purchase, nothing to refund
            sales.setdefault(invoice.customer, []).append(invoice)
            out.purchases += 1
            out.events.append(purchase_event(invoice))
            continue
        earlier = sales.get(invoice.customer)
        if not earlier:
            out.unmatched.append(invoice.number)
            continue
        values: dict[str, Decimal] = {}  # purchase → pounds returned against it, in the order first hit
        totals = {sale.number: sale.total for sale in earlier}
        for code, value in invoice.returned:
            target = next((sale for sale in reversed(earlier) if code in sale.codes), earlier[-1])
            values[target.number] = values.get(target.number, Decimal(0)) + value
        for purchase, value in values.items():
            if value <= 0:
                continue
            done = refunded.get(purchase, 0)
            refund = Refund(
                invoice.number,
                purchase,
                invoice.customer,
                invoice.at,
                value,
                min(share_of(value, totals[purchase]), WHOLE - done),
            )
            if refund.share <= 0:
                out.nothing_left.append(refund)
                continue
            refunded[purchase] = done + refund.share
            out.refunds.append(refund)
            out.events.append(refund_event(refund))
    return out


def purchase_event(invoice: Invoice) -> dict[str, Any]:
    return {
        "id": invoice.number,
        "type": "purchase.completed",
        "participant": invoice.customer,
        "occurred_at": invoice.at.isoformat(),
        "data": {"amount": float(invoice.total), "lines": invoice.lines},
    }


def refund_event(refund: Refund) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": refund.id,
        "type": "purchase.refunded",
        "participant": refund.customer,
        "occurred_at": refund.at.isoformat(),
        "data": {"amount": float(refund.value), "cancellation": refund.cancellation},
        "reverses": refund.purchase,
    }
    if refund.share < WHOLE:
        event["portion"] = refund.share / WHOLE
    return event


def customers(invoices: list[Invoice], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A profile for each customer with an event: a display name and the country of their first invoice."""
    seen = {e["participant"] for e in events}
    country: dict[str, str] = {}
    for invoice in invoices:
        if invoice.customer in seen:
            country.setdefault(invoice.customer, invoice.country)
    return [
        {"id": c, "name": f"Customer {c}", "attributes": {"country": country[c]}}
        for c in sorted(country, key=lambda c: int(c))
    ]


def by_day(events: list[dict[str, Any]]) -> Iterator[tuple[dt.date, list[dict[str, Any]]]]:
    """The events of each trading day, in order (the events come in time order)."""
    day: dt.date | None = None
    batch: list[dict[str, Any]] = []
    for event in events:
        when = dt.datetime.fromisoformat(event["occurred_at"]).astimezone(TIMEZONE).date()
        if day is not None and when != day:
            yield day, batch
            batch = []
        day = when
        batch.append(event)
    if day is not None:
        yield day, batch
