"""The sales demo: the real Maven CRM pipeline as Levelup events (see data/SOURCE.md)."""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

PROGRAM = "acme-sales"
PROGRAM_FILE = "acme-sales.yaml"
TIMEZONE = ZoneInfo("America/New_York")


def data_dir() -> Path:
    return Path(str(resources.files("levelup.demo") / "data"))


def program_text() -> str:
    return (resources.files("levelup.demo") / PROGRAM_FILE).read_text(encoding="utf-8")


def slug(name: str) -> str:
    return name.strip().lower().replace(" ", "-")


def _at(day: str, hour: int) -> str:
    return dt.datetime.combine(dt.date.fromisoformat(day), dt.time(hour), TIMEZONE).isoformat()


def participants(folder: Path | None = None) -> list[dict[str, Any]]:
    """Each agent with the team of their regional office and their manager."""
    with (folder or data_dir()).joinpath("sales_teams.csv").open(newline="", encoding="utf-8") as f:
        return [
            {
                "id": slug(row["sales_agent"]),
                "name": row["sales_agent"],
                "teams": [slug(row["regional_office"])],
                "attributes": {"manager": row["manager"], "office": row["regional_office"]},
            }
            for row in csv.DictReader(f)
        ]


def events(folder: Path | None = None) -> Iterator[dict[str, Any]]:
    """Calls when an opportunity was engaged, deals won and lost on their close date, in time order."""
    out: list[dict[str, Any]] = []
    with (folder or data_dir()).joinpath("sales_pipeline.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rep, opportunity = slug(row["sales_agent"]), row["opportunity_id"]
            if row["engage_date"]:
                out.append(
                    {
                        "id": f"{opportunity}-engaged",
                        "type": "activity.logged",
                        "participant": rep,
                        "occurred_at": _at(row["engage_date"], 10),
                        "data": {"kind": "call", "duration_s": 300, "opportunity": opportunity},
                    }
                )
            if row["deal_stage"] in ("Won", "Lost") and row["close_date"]:
                won = row["deal_stage"] == "Won"
                out.append(
                    {
                        "id": f"{opportunity}-{'won' if won else 'lost'}",
                        "type": "deal.won" if won else "deal.lost",
                        "participant": rep,
                        "occurred_at": _at(row["close_date"], 16),
                        "data": {
                            "amount": int(row["close_value"] or 0),
                            "deal_id": opportunity,
                            "product": row["product"],
                            "account": row["account"],
                        },
                    }
                )
    out.sort(key=lambda e: (e["occurred_at"], e["id"]))
    yield from out
