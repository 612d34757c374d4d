"""Make ``data/uci_retail_invoices.csv`` from the UCI Online Retail daily files (see data/SOURCE.md).

The raw files are 9 MB of invoice lines; the loyalty demo needs invoices. This
folds lines into one row per invoice of an identified customer, keeping what
the return mapping of :mod:`levelup.demo.retail` reads and nothing else:

    python -m levelup.demo.derive_retail path/to/retail-data/by-day    # the daily CSV files

Columns: ``invoice`` (C… for a cancellation), ``customer``, ``country``,
``invoiced_at`` (the first line's time, UK local as in the source), ``lines``,
``total`` (sum of Quantity × UnitPrice in pounds, exact; negative for a
cancellation) and ``items``: on a sale, the ``;``-separated stock codes on it
that the same customer returned on some cancellation in the window (the only
codes the mapping looks up); on a cancellation, ``code=value`` for each
returned stock code, value the refunded pounds.
"""

from __future__ import annotations

import csv
import hashlib
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

OUTPUT = Path(__file__).with_name("data") / "uci_retail_invoices.csv"
COLUMNS = ["invoice", "customer", "country", "invoiced_at", "lines", "total", "items"]


@dataclass
class _Invoice:
    customer: str
    country: str
    invoiced_at: str
    lines: int = 0
    total: Decimal = Decimal(0)
    values: dict[str, Decimal] = field(default_factory=dict)  # stock code → value on this invoice


def derive(folder: Path) -> list[dict[str, str]]:
    """One row per invoice with a CustomerID, in invoice-time order (guest lines are skipped)."""
    invoices: dict[str, _Invoice] = {}
    for path in sorted(folder.glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if not row["CustomerID"]:
                    continue
                customer = row["CustomerID"].removesuffix(".0")
                found = invoices.setdefault(row["InvoiceNo"], _Invoice(customer, row["Country"], row["InvoiceDate"]))
                if found.customer != customer:
                    raise ValueError(f"invoice {row['InvoiceNo']} has two customers")
                value = Decimal(row["Quantity"]) * Decimal(row["UnitPrice"])
                found.invoiced_at = min(found.invoiced_at, row["InvoiceDate"])
                found.lines += 1
                found.total += value
                found.values[row["StockCode"]] = found.values.get(row["StockCode"], Decimal(0)) + value
    returned: dict[str, set[str]] = defaultdict(set)
    for number, inv in invoices.items():
        if number.startswith("C"):
            returned[inv.customer].update(inv.values)
    rows = []
    for number, inv in sorted(invoices.items(), key=lambda kv: (kv[1].invoiced_at, kv[0].lstrip("C"), kv[0])):
        if number.startswith("C"):
            items = ";".join(f"{code}={-value}" for code, value in inv.values.items())
        else:
            items = ";".join(code for code in inv.values if code in returned[inv.customer])
        rows.append(
            {
                "invoice": number,
                "customer": inv.customer,
                "country": inv.country,
                "invoiced_at": inv.invoiced_at,
                "lines": str(inv.lines),
                "total": str(inv.total),
                "items": items,
            }
        )
    return rows


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m levelup.demo.derive_retail FOLDER_OF_DAILY_CSVS")
    rows = derive(Path(argv[0]))
    with OUTPUT.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    digest = hashlib.sha256(OUTPUT.read_bytes()).hexdigest()
    print(f"{OUTPUT}: {len(rows)} invoices, {OUTPUT.stat().st_size:,} bytes, sha256 {digest}")


if __name__ == "__main__":
    main(sys.argv[1:])
