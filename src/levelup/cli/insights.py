"""``levelup simulate`` and ``levelup insights``: rich tables, or ``--json`` (and ``--csv`` for insights).

Registered by :mod:`levelup.cli.main`, whose helpers (database option, progress bar, errors) these use.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from levelup.cli.main import DatabaseOption, _fail, _progress, _runtime, console, errors
from levelup.errors import FieldError, Invalid, LevelupError
from levelup.insights import common, engagement, fairness, gaming, possible, segments, targets
from levelup.insights import experiments as holdouts
from levelup.insights import simulate as sim
from levelup.programs import service as programs
from levelup.programs.validation import load_document

JsonOption = Annotated[bool, typer.Option("--json", help="print the JSON the API answers")]


def simulate(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="the draft document (YAML or JSON)")],
    start: Annotated[str, typer.Option("--from", help="first instant (RFC 3339; a date is midnight UTC)")],
    end: Annotated[str, typer.Option("--to", help="end of the window, exclusive")],
    program: Annotated[str | None, typer.Option(help="the program (default: the document's)")] = None,
    workers: Annotated[
        bool,
        typer.Option(
            "--workers/--one-process",
            help="share the participants among a process a CPU, each scoring its share by both documents "
            "(default with 2 CPUs or more; an in-memory "
            "database is scored in one)",
        ),
    ] = (os.cpu_count() or 1) >= 2,
    as_json: JsonOption = False,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="every participant's balance per currency, current and draft, as CSV")
    ] = False,
    database: DatabaseOption = None,
) -> None:
    """Score a draft over the stored events of a window beside the document in force; writes nothing."""
    runtime = _runtime(database)
    try:
        draft = load_document(file.read_bytes(), program=program)
        window = common.window(common.parse_instant(start, "from"), common.parse_instant(end, "to"))
        if as_json or as_csv:
            report = sim.run(runtime, draft.program, draft, *window, parallel=workers)
        else:
            with _progress() as progress:
                total = sim.count_events(runtime, draft.program, *window)
                task = progress.add_task("simulate", total=total, rate="")
                report = sim.run(
                    runtime, draft.program, draft, *window, lambda n: progress.advance(task, n), parallel=workers
                )
    except LevelupError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    if as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(["participant", "currency", "current", "draft", "change"])
        writer.writerows(_balance_rows(report["current"]["participants"], report["draft"]["participants"]))
        return
    print_simulation(report)


def _balance_rows(
    now: dict[str, dict[str, int]], then: dict[str, dict[str, int]]
) -> list[tuple[str, str, int, int, int]]:
    """Each participant's balance per currency in either report, current and draft (0 where absent)."""
    rows = []
    for pid in sorted(set(now) | set(then)):
        a, b = now.get(pid, {}), then.get(pid, {})
        rows += [(pid, c, a.get(c, 0), b.get(c, 0), b.get(c, 0) - a.get(c, 0)) for c in sorted(set(a) | set(b))]
    return rows


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
        if values or before:  # neither is empty unless the window holds no event
            spread.add_row(currency, *(f"{before.get(c, 0):,.0f} → {values.get(c, 0):,.0f}" for c in columns))
    console.print(spread if spread.rows else "no participant has an event in this window")
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
    if then["unsettled"]:
        periods = ", ".join(f"{u['challenge']} {u['period']}" for u in then["unsettled"])
        console.print(f"[yellow]not settled, begun before the window:[/yellow] {periods}")
    if not report["changes"]:
        console.print("[green]the draft changes nothing over this window[/green]")
    for change in report["changes"]:
        console.print(f"• {change['text']}")


KINDS = ("engagement", "fairness", "segments", "churn", "targets", "experiments", "flags", "possible")


def insights(
    kind: Annotated[
        str, typer.Argument(help="engagement, fairness, segments, churn, targets, experiments, flags or possible")
    ],
    program: Annotated[str, typer.Option(help="the program")],
    start: Annotated[
        str | None, typer.Option("--from", help="engagement, experiments: window start (default 13 weeks ago)")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="engagement, experiments: window end (default now)")] = None,
    grain: Annotated[str, typer.Option(help="engagement: day, week or month")] = "week",
    period: Annotated[str | None, typer.Option(help="fairness: e.g. 2026-10, 2026-Q4")] = None,
    metric: Annotated[str | None, typer.Option(help="fairness, segments: the metric")] = None,
    currency: Annotated[str | None, typer.Option(help="fairness: a currency instead of a metric")] = None,
    as_of: Annotated[str | None, typer.Option(help="segments, churn: measured from (default now)")] = None,
    segment: Annotated[str | None, typer.Option(help="segments: list this segment's members")] = None,
    challenge: Annotated[
        str | None, typer.Option(help="targets: a recurring individual goal; possible: a competition")
    ] = None,
    periods: Annotated[int, typer.Option(min=1, max=52, help="targets: periods of history")] = 8,
    factor: Annotated[float, typer.Option(min=1, max=3, help="targets: the stretch")] = 1.1,
    experiment: Annotated[str | None, typer.Option(help="experiments: only this one")] = None,
    participant: Annotated[
        str | None, typer.Option(help="possible: only this participant (a team's id for a team competition)")
    ] = None,
    flag: Annotated[str | None, typer.Option(help=f"flags: only this kind ({', '.join(gaming.KINDS)})")] = None,
    threshold: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME=VALUE",
            help=f"flags: a threshold, repeatable: {', '.join(gaming.Thresholds.model_fields)} (docs/insights.md)",
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            min=1,
            help=f"rows listed (default 100, at most {segments.MAX_LIST:,}); churn and segments --segment with "
            "--csv or --json: everyone by default, any limit",
        ),
    ] = None,
    as_json: JsonOption = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="the main table as CSV")] = False,
    database: DatabaseOption = None,
) -> None:
    """Analytics of a program: engagement, fairness, RFM segments, churn risk, suggested personal targets,
    holdout experiments, anti-gaming flags (with the events to claw back), what each prize still takes."""
    if kind not in KINDS or grain not in engagement.GRAINS:
        errors.print(f"[red]error:[/red] KIND is one of {', '.join(KINDS)}; --grain day, week or month")
        raise typer.Exit(1)
    if limit is not None and limit > segments.MAX_LIST and kind not in ("segments", "churn"):
        raise typer.BadParameter(f"at most {segments.MAX_LIST:,} for {kind}", param_hint="'--limit'")
    listed = 100 if limit is None else limit
    # segments and churn export everyone as CSV or JSON unless --limit cuts it; their table shows the first 100
    exported = None if limit is None and (as_csv or as_json) else listed
    runtime = _runtime(database)
    try:
        moment = common.instant(common.parse_instant(as_of, "as_of") if as_of else None, "as_of")
        with runtime.db.read() as connection:
            record = programs.find(connection, program)
            compiled = runtime.programs.compiled(connection, record)
            if kind == "engagement":
                window = common.window(
                    common.parse_instant(start, "from") if start else None,
                    common.parse_instant(end, "to") if end else None,
                )
                body = engagement.engagement(connection, record, compiled, *window, grain)
            elif kind == "fairness":
                if period is None:
                    raise Invalid("--period is needed", errors=[FieldError("period", "e.g. 2026-10")])
                body = fairness.fairness(connection, record, compiled, period=period, metric=metric, currency=currency)
            elif kind == "segments":
                body = segments.rfm(
                    connection, record, compiled, metric=metric, as_of=moment, segment=segment, limit=exported
                )
            elif kind == "churn":
                body = segments.churn(connection, record, as_of=moment, limit=exported)
            elif kind == "experiments":
                window = common.window(
                    common.parse_instant(start, "from") if start else None,
                    common.parse_instant(end, "to") if end else None,
                )
                body = holdouts.experiments(connection, record, compiled, *window, key=experiment)
            elif kind == "flags":
                since, until = _window(start, end)
                tuned = gaming.thresholds(dict(_setting(s) for s in threshold or ()))
                body = gaming.flags(
                    connection, record, compiled, start=since, end=until, kind=flag, limit=listed, tuned=tuned
                )
            elif kind == "possible":
                body = possible.possible(
                    connection,
                    record,
                    compiled,
                    as_of=moment,
                    challenge=challenge,
                    participant=participant,
                    limit=listed,
                )
            else:
                body = targets.targets(
                    connection,
                    record,
                    compiled,
                    challenge=challenge or "",
                    as_of=moment,
                    periods=periods,
                    factor=factor,
                    limit=listed,
                )
    except LevelupError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(body, indent=2))
        return
    title, rows = _main_table(kind, body)
    if as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(rows[0].keys() if rows else [])
        writer.writerows([_cell(v) for v in row.values()] for row in rows)
        return
    table = Table(title=title)
    for column in rows[0] if rows else []:
        table.add_column(column, justify="left" if column in ("period", "id", "name", "team", "segment") else "right")
    for row in rows:
        table.add_row(*(_shown(v) for v in row.values()))
    console.print(table)
    if kind in ("segments", "churn") and len(rows) < body.get("total", 0):
        console.print(f"the first {len(rows):,} of {body['total']:,}: --csv or --json lists everyone")
    console.print(body["sentence"])
    for found in body["experiments"] if kind == "experiments" else ():
        console.print(found["sentence"])
    if kind == "flags":
        console.print("thresholds: " + ", ".join(f"{name}={value:g}" for name, value in body["thresholds"].items()))
    if kind == "fairness":
        for part in ("top3", "never_rewarded", "inflation"):
            console.print(body[part]["sentence"])
        for badge in body["badges"]:
            console.print(badge["sentence"])


def _main_table(kind: str, body: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The rows a kind is mostly about, flat (the table, and the CSV)."""
    if kind == "engagement":
        return f"engagement by {body['grain']}", body["periods"]
    if kind == "fairness":
        overall = {"team": "(all)", "participants": body["participants"], "gini": body["gini"]}
        rows = [overall | {"top10_share": body["top10_share"]}]
        rows += [{k: team[k] for k in ("team", "participants", "gini", "top10_share")} for team in body["teams"]]
        return f"fairness of {body['metric'] or body['currency']} in {body['period']}", rows
    if kind == "segments" and "members" in body:
        return "segment members", body["members"]
    if kind == "segments":
        return f"RFM segments on {body['metric']}", body["segments"]
    if kind == "experiments":
        return "holdout experiments (treated − held out, 95% interval)", [
            _experiment_row(e) for e in body["experiments"]
        ]
    if kind == "flags":
        return "anti-gaming flags, highest score first", [_flag_row(f) for f in body["flags"]]
    if kind == "possible":
        rows = [_contender_row(c, p) for c in body["competitions"] for p in c["participants"]]
        return "still possible: each prize rank's gap and the chance at one's own pace", rows
    if kind == "targets":
        return f"suggested targets for {body['challenge']} (it asks {body['target']:g})", body["participants"]
    return f"churn risk ({body['total']:,} participants, riskiest first)", body["participants"]


def _experiment_row(found: dict[str, Any]) -> dict[str, Any]:
    """One experiment, flat: its groups' sizes and means, the difference and its interval."""
    return {
        "experiment": found["key"],
        "applies_to": found["applies_to"],
        "metric": found["metric"],
        "treated": found["treated"]["participants"],
        "treated_mean": found["treated"]["mean"],
        "held_out": found["held_out"]["participants"],
        "held_out_mean": found["held_out"]["mean"],
        "difference": found["difference"],
        "low": found["low"],
        "high": found["high"],
        "real": found["real"],
    }


def _cell(value: Any) -> Any:
    return "" if value is None else value


def _shown(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:,.4g}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value)


segments_app: typer.Typer = typer.Typer(
    help="RFM segments as rules read them (participant.segment).", no_args_is_help=True
)


@segments_app.command("refresh")
def segments_refresh(
    program: Annotated[str, typer.Option(help="the program")],
    metric: Annotated[str | None, typer.Option(help="the monetary metric (default: the first sum metric)")] = None,
    as_json: JsonOption = False,
    database: DatabaseOption = None,
) -> None:
    """Assign every participant's RFM segment as of now, where it changed (effective from now: replay reads
    for each event the segment in force at its time). The segments job does this once a day by itself."""
    runtime = _runtime(database)
    try:
        with runtime.db.write() as connection:
            record = programs.find(connection, program)
            compiled = runtime.programs.compiled(connection, record)
            body = segments.assign(connection, record, compiled, now=common.instant(None, "now"), metric=metric)
    except LevelupError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(body, indent=2))
        return
    table = Table(title=f"segments on {body['metric']}, effective {body['effective_at']}")
    table.add_column("segment")
    table.add_column("participants", justify="right")
    for name, count in body["segments"].items():
        table.add_row(name, f"{count:,}")
    console.print(table)
    console.print(body["sentence"])


# ---------------------------------------------------------------------------- anti-gaming flags, still possible


def _window(start: str | None, end: str | None) -> tuple[dt.datetime, dt.datetime]:
    """``--from`` and ``--to`` as a checked window (default: the 13 weeks up to now)."""
    return common.window(
        common.parse_instant(start, "from") if start else None, common.parse_instant(end, "to") if end else None
    )


def _setting(text: str) -> tuple[str, str]:
    """``--threshold NAME=VALUE`` as (name, value)."""
    name, equals, value = text.partition("=")
    if not equals:
        raise Invalid("a threshold is NAME=VALUE", errors=[FieldError("threshold", f"{text!r} is not NAME=VALUE")])
    return name.strip(), value.strip()


def _flag_row(flag: dict[str, Any]) -> dict[str, Any]:
    """A flag, flat: the events (or kudos) involved, the first few named, then how many."""
    items = flag["events"] or [str(k) for k in flag["kudos"]]
    shown = ", ".join(items[:3]) + (f" … ({len(items)})" if len(items) > 3 else "")
    return {"kind": flag["kind"], "score": flag["score"], "sentence": flag["sentence"], "involved": shown}


def _contender_row(competition: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """A participant of an open competition, flat: each prize rank as "held" or "gap (chance)"."""
    prizes = "; ".join(
        f"{p['rank']}: held" if p["holds"] else f"{p['rank']}: {p['needed']:,.6g} ({p['chance']:.0%})"
        for p in row["prizes"]
    )
    return {
        "challenge": competition["challenge"],
        "id": row["id"],
        "value": row["value"],
        "per_day": row["per_day"],
        "prizes": prizes,
    }
