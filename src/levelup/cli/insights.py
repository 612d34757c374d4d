"""``levelup simulate`` and ``levelup insights``: rich tables, or ``--json`` (and ``--csv`` for insights).

Registered by :mod:`levelup.cli.main`, whose helpers (database option, progress bar, errors) these use.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from levelup.cli.main import DatabaseOption, _fail, _progress, _runtime, console
from levelup.errors import LevelupError
from levelup.insights import common
from levelup.insights import simulate as sim
from levelup.programs.validation import load_document

JsonOption = Annotated[bool, typer.Option("--json", help="print the JSON the API answers")]


def simulate(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="the draft document (YAML or JSON)")],
    start: Annotated[str, typer.Option("--from", help="first instant (RFC 3339; a date is midnight UTC)")],
    end: Annotated[str, typer.Option("--to", help="end of the window, exclusive")],
    program: Annotated[str | None, typer.Option(help="the program (default: the document's)")] = None,
    as_json: JsonOption = False,
    database: DatabaseOption = None,
) -> None:
    """Score a draft over the stored events of a window beside the document in force; writes nothing."""
    runtime = _runtime(database)
    try:
        draft = load_document(file.read_bytes(), program=program)
        window = common.window(common.parse_instant(start, "from"), common.parse_instant(end, "to"))
        if as_json:
            report = sim.run(runtime, draft.program, draft, *window)
        else:
            with _progress() as progress:
                total = sim.count_events(runtime, draft.program, *window)
                task = progress.add_task("simulate", total=total, rate="")
                report = sim.run(runtime, draft.program, draft, *window, lambda n: progress.advance(task, n))
    except LevelupError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    print_simulation(report)


def _side_by_side(title: str, head: str, now: dict[str, Any], then: dict[str, Any]) -> Table:
    table = Table(title=title)
    for name, justify in ((head, "left"), ("current", "right"), ("draft", "right"), ("change", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for key in sorted(set(now) | set(then)):
        a, b = now.get(key, 0), then.get(key, 0)
        table.add_row(key, f"{a:,}", f"{b:,}", f"{b - a:+,}" if b != a else "")
    return table


def print_simulation(report: dict[str, Any]) -> None:
    now, then, window = report["current"], report["draft"], report["window"]
    console.print(
        f"{report['program']} (version {report['version']} in force) over {window['from']} → {window['to']}: "
        f"{window['events']:,} events, {then['skipped']:,} skipped"
    )
    console.print(_side_by_side("totals", "currency", now["totals"], then["totals"]))
    spread = Table(title="balances per participant (current → draft)")
    spread.add_column("currency")
    columns = ("p10", "p50", "p90", "p99", "max")
    for column in columns:
        spread.add_column(column, justify="right")
    for currency, values in then["distribution"].items():
        before = now["distribution"].get(currency, {})
        spread.add_row(currency, *(f"{before.get(c, 0):,.0f} → {values[c]:,.0f}" for c in columns))
    console.print(spread)
    badges = {f"{b['badge']} {b['grade']}": b["holders"] for b in now["badges"]}
    console.print(
        _side_by_side(
            "badge holders", "badge", badges, {f"{b['badge']} {b['grade']}": b["holders"] for b in then["badges"]}
        )
    )
    console.print(
        _side_by_side(
            "challenge completions",
            "challenge",
            {c["challenge"]: c["completions"] for c in now["challenges"]},
            {c["challenge"]: c["completions"] for c in then["challenges"]},
        )
    )
    owed = {c: v["outstanding"] for c, v in now["liability"].items()}
    if owed or then["liability"]:
        console.print(
            _side_by_side(
                "liability created (outstanding)",
                "currency",
                owed,
                {c: v["outstanding"] for c, v in then["liability"].items()},
            )
        )
    for board in then["leaderboards"]:
        table = Table(title=f"{board['key']} · {board['period']} (draft, top {sim.TOP})")
        for name in ("rank", "name", "value"):
            table.add_column(name, justify="left" if name == "name" else "right")
        for e in board["entries"]:
            table.add_row(str(e["rank"]), e["name"] or e["id"], f"{e['value']:,}")
        console.print(table)
    if then["prizes"]:
        table = Table(title="prizes and team rewards paid at close (draft)")
        for name in ("challenge", "period", "rank", "winner", "awards"):
            table.add_column(name)
        for p in then["prizes"]:
            awards = ", ".join(f"{n:,} {c}" for c, n in p["awards"].items())
            table.add_row(p["challenge"], p["period"], str(p["rank"] or "goal"), p["winner"], awards)
        console.print(table)
    if not report["changes"]:
        console.print("[green]the draft changes nothing over this window[/green]")
    for change in report["changes"]:
        console.print(f"• {change['text']}")
