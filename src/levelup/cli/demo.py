"""``levelup demo``: the real CRM sales pipeline played through the acme-sales program."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from levelup.demo import sales
from levelup.keys import service as keys
from levelup.leaderboards.service import leaderboard
from levelup.participants import repository as participants
from levelup.programs import service as programs
from levelup.programs.validation import load_document
from levelup.runtime import Runtime


def set_up(runtime: Runtime, folder: Path | None = None, *, actor: str = "demo") -> programs.ProgramRecord:
    """Apply the demo program and register the reps in the teams of their offices."""
    doc = load_document(sales.program_text())
    people = sales.participants(folder)
    with runtime.db.write() as connection:
        record, _ = programs.apply(connection, doc, actor=actor)
        for person in people:
            participants.set_profile(
                connection,
                record.id,
                person["id"],
                name=person["name"],
                teams=person["teams"],
                attributes=person["attributes"],
            )
        for team in {t for p in people for t in p["teams"]}:
            participants.set_team(connection, record.id, team, name=team.title())
    return record


def run_demo(
    runtime: Runtime,
    console: Console,
    ingest_with_progress: Callable[..., dict[str, int]],
    print_board: Callable[[dict[str, Any]], None],
) -> str:
    """Load the demo and print the standings; returns a key to call the API with."""
    record = set_up(runtime)
    events = list(sales.events())
    console.print(
        f"[bold]Levelup demo[/bold]: {len(events):,} events from the Maven CRM pipeline "
        f"(8,800 opportunities, 35 reps, 3 offices) into program [bold]{record.key}[/bold]"
    )
    counts = ingest_with_progress(runtime, record.key, events, label="pipeline")
    console.print(", ".join(f"{n:,} {status}" for status, n in counts.items()))
    with runtime.db.read() as connection:
        compiled = runtime.programs.compiled(connection, record)
        for key, period in (("revenue-month", "2017-12"), ("team-revenue", "2017-Q4"), ("xp-all", None)):
            print_board(leaderboard(connection, record, compiled, key, period=period, limit=5))
    secret = os.environ.get("LEVELUP_ADMIN_KEY")
    if not secret:
        with runtime.db.write() as connection:
            _, secret = keys.create(connection, role="read", programs=[record.key], creator=None, note="demo")
        console.print(f"A read key for the API (shown once): [bold]{secret}[/bold]")
    return secret
