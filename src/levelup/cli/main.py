"""The ``levelup`` command (README.md, docs/). Works on the database in ``LEVELUP_DATABASE_URL``
(default: ``levelup.db`` in the working directory)."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
import uvicorn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from levelup.api.server import NoDelayH11Protocol, uvicorn_settings
from levelup.audit import service as audit
from levelup.cli import recovery
from levelup.cli.importer import count_records, import_file
from levelup.errors import LevelupError
from levelup.events.ingest import Outcome, batches, ingest
from levelup.events.replay import replay as run_replay
from levelup.events.schema import MAX_BATCH
from levelup.jobs import registry as jobs
from levelup.keys import service as keys
from levelup.leaderboards import redis_board
from levelup.leaderboards.service import leaderboard as board_of
from levelup.links import service as links
from levelup.links.service import DEFAULT_EXPIRES_IN as DEFAULT_LINK_EXPIRY
from levelup.links.service import DEFAULT_TOP
from levelup.observability.metrics import MULTIPROCESS_ENV
from levelup.programs import service as programs
from levelup.programs.validation import load_document
from levelup.runtime import Runtime
from levelup.storage.db import database_url
from levelup.webhooks import delivery

app = typer.Typer(help="Levelup: gamification engine for CRM.", no_args_is_help=True, add_completion=False)
program_app = typer.Typer(help="Program documents: validate, apply, show.", no_args_is_help=True)
events_app = typer.Typer(help="Events: import from files.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
jobs_app = typer.Typer(help="The periodic jobs: closing, expiry, tiers, referrals.", no_args_is_help=True)
links_app = typer.Typer(help="Signed links to the web pages.", no_args_is_help=True)
app.add_typer(program_app, name="program")
app.add_typer(events_app, name="events")
app.add_typer(keys_app, name="keys")
app.add_typer(jobs_app, name="jobs")
app.add_typer(links_app, name="links")
app.add_typer(recovery.participants_app, name="participants")
app.command("export")(recovery.export_program)
app.command("import-program")(recovery.import_program)
console = Console()
errors = Console(stderr=True)

DatabaseOption = Annotated[
    str | None, typer.Option("--database", envvar="LEVELUP_DATABASE_URL", help="database URL (default: levelup.db)")
]


def _runtime(database: str | None) -> Runtime:
    return Runtime.from_url(database or database_url())


def _fail(error: LevelupError) -> NoReturn:
    errors.print(f"[red]error:[/red] {error.detail}")
    for item in error.errors:
        errors.print(f"  {item.path}: {item.message}")
    raise typer.Exit(1)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


@app.command()
def init(database: DatabaseOption = None) -> None:
    """Create or upgrade the database schema."""
    runtime = _runtime(database)
    console.print(f"database ready: {runtime.db.engine.url.render_as_string(hide_password=True)}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    workers: Annotated[int, typer.Option(help="worker processes")] = 1,
    database: DatabaseOption = None,
) -> None:
    """Serve the HTTP API."""
    url = database or database_url()
    os.environ["LEVELUP_DATABASE_URL"] = url
    runtime = Runtime.from_url(url)  # migrate once, before the workers start
    try:
        with runtime.db.read() as connection:
            admin_stored = keys.admin_exists(connection)
    finally:
        runtime.db.dispose()
    with socket.socket() as probe:  # a busy port fails here, before a URL that would not answer is printed
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            errors.print(f"[red]error:[/red] cannot listen on {host}:{port}: {exc.strerror}")
            raise typer.Exit(1) from None
    if not admin_stored and not os.environ.get("LEVELUP_ADMIN_KEY"):
        errors.print(
            "[yellow]warning:[/yellow] no admin key: admin calls and the studio (/admin) will get 401. "
            "Set LEVELUP_ADMIN_KEY, or run\n"
            "  levelup keys create --role admin --program '*'",
            soft_wrap=True,
        )
    console.print(f"Levelup on http://{host}:{port}  (API docs: http://{host}:{port}/docs)", soft_wrap=True)
    with _metrics_folder(workers):
        uvicorn.run(
            "levelup.api.server:app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            http=NoDelayH11Protocol,
            # live-feed streams never end by themselves: cut them then (clients resume by Last-Event-ID)
            timeout_graceful_shutdown=SHUTDOWN_SECONDS,
            **uvicorn_settings(),  # keep-alive, largest head, concurrency, backlog (docs/deploy.md, Slow clients)
        )


SHUTDOWN_SECONDS = 5


@contextmanager
def _metrics_folder(workers: int) -> Iterator[None]:
    """Where several workers add up their Prometheus metrics (``PROMETHEUS_MULTIPROC_DIR``): the one
    given, emptied of a past run's values, else a temporary folder made for this run. One worker needs none."""
    given = os.environ.get(MULTIPROCESS_ENV)
    if given:
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        yield
    elif workers > 1:
        with tempfile.TemporaryDirectory(prefix="levelup-metrics-") as folder:
            os.environ[MULTIPROCESS_ENV] = folder  # inherited by the workers uvicorn spawns
            try:
                yield
            finally:
                del os.environ[MULTIPROCESS_ENV]
    else:
        yield


@program_app.command("validate")
def program_validate(file: Path) -> None:
    """Check a program document and list every error with its path."""
    try:
        doc = load_document(file.read_bytes())
    except LevelupError as exc:
        _fail(exc)
    console.print(f"[green]valid[/green]: {doc.program} ({len(doc.rules)} rules, {len(doc.metrics)} metrics)")


@program_app.command("apply")
def program_apply(file: Path, database: DatabaseOption = None) -> None:
    """Apply a program document as a new version."""
    try:
        doc = load_document(file.read_bytes())
    except LevelupError as exc:
        _fail(exc)
    runtime = _runtime(database)
    with runtime.db.write() as connection:
        record, changed = programs.apply(connection, doc, actor="cli")
    state = "applied" if changed else "unchanged"
    console.print(f"{record.key}: version {record.version} ({state})")


@program_app.command("show")
def program_show(
    name: str,
    version: Annotated[int | None, typer.Option(help="a past version")] = None,
    database: DatabaseOption = None,
) -> None:
    """Print the document in force (as JSON)."""
    runtime = _runtime(database)
    try:
        with runtime.db.read() as connection:
            record = programs.find(connection, name)
            document = programs.document_of(connection, record, version)
    except LevelupError as exc:
        _fail(exc)
    console.print(f"# {record.key}, version {version or record.version} of {record.version}")
    print(json.dumps(document, indent=2, ensure_ascii=False))


def ingest_with_progress(
    runtime: Runtime, program: str, events: list[dict[str, Any]], *, batch: int = MAX_BATCH, label: str = "events"
) -> dict[str, int]:
    """Ingest in batches with a progress bar; returns counts by status."""
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
    first_errors: list[Outcome] = []
    with _progress() as progress:
        task = progress.add_task(label, total=len(events), rate="")
        for chunk in batches(events, batch):
            for outcome in ingest(runtime, program, chunk):
                counts[outcome.status] += 1
                if outcome.status == "rejected" and len(first_errors) < 5:
                    first_errors.append(outcome)
            elapsed = progress.tasks[task].elapsed or 1e-9
            done = progress.tasks[task].completed + len(chunk)
            progress.update(task, advance=len(chunk), rate=f"{done / elapsed:,.0f} events/s")
    for outcome in first_errors:
        details = "; ".join(f"{e.path}: {e.message}" for e in outcome.errors)
        errors.print(f"[yellow]rejected[/yellow] {outcome.id}: {details}")
    return counts


@events_app.command("import")
def events_import(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, help="JSON Lines (an event a line), a JSON array (.json), or CSV (.csv)"
        ),
    ],
    program: Annotated[str, typer.Option("--program", "-p", help="program key")],
    mapping: Annotated[Path | None, typer.Option(help="YAML mapping of CSV columns to event fields")] = None,
    source: Annotated[
        str | None,
        typer.Option(help="map each record (a CSV row: a HubSpot or Salesforce export) as an item of this source"),
    ] = None,
    batch: Annotated[int, typer.Option(min=1, max=MAX_BATCH, help="events a transaction")] = MAX_BATCH,
    database: DatabaseOption = None,
) -> None:
    """Import events from a file of any size, streamed in batches, with a progress bar. Safe to re-run: what
    is in already is a duplicate. Exit code 2 when some were rejected (the first are listed, with their line)."""
    runtime = _runtime(database)
    with _progress() as progress:
        task = progress.add_task("records", total=count_records(file), rate="")

        def advance(read: int) -> None:
            elapsed = progress.tasks[task].elapsed or 1e-9
            done = progress.tasks[task].completed + read
            progress.update(task, advance=read, rate=f"{done / elapsed:,.0f} records/s")

        try:
            summary = import_file(
                runtime, program, file, mapping_path=mapping, source_key=source, batch=batch, progress=advance
            )
        except LevelupError as exc:
            _fail(exc)
    for where, outcome in summary.first_errors:
        details = "; ".join(f"{e.path}: {e.message}" for e in outcome.errors)
        errors.print(f"[yellow]rejected[/yellow] {where}: {outcome.id or '(no id)'}: {details}")
    counts = ", ".join(f"{n:,} {status}" for status, n in summary.counts.items())
    console.print(f"{counts}, {summary.skipped:,} skipped")
    if summary.counts["rejected"]:
        raise typer.Exit(2)


@app.command()
def replay(
    program: str,
    rebuild: Annotated[bool, typer.Option(help="rewrite balances, metrics and counters from the replay")] = False,
    database: DatabaseOption = None,
) -> None:
    """Recompute everything from the event log and compare it with what is stored (and rebuild with --rebuild)."""
    runtime = _runtime(database)
    with _progress() as progress:
        task = progress.add_task("replay", total=None, rate="")
        try:
            report = run_replay(runtime, program, rebuild=rebuild, progress=lambda n: progress.advance(task, n))
        except LevelupError as exc:
            _fail(exc)
    console.print(f"{report.events:,} events replayed, {report.ledger_entries:,} event ledger entries checked")
    for line in report.mismatches:
        console.print(f"[red]mismatch[/red] {line}")
    if report.rebuilt:
        console.print("balances, metrics and rule counters rebuilt from the replay")
    if report.ok:
        console.print("[green]replay matches the stored state[/green]")
    elif not report.rebuilt:
        raise typer.Exit(3)


ProgramsOption = Annotated[list[str] | None, typer.Option("--program", "-p", help="only these programs")]
NowOption = Annotated[
    str | None, typer.Option(help="pretend it is this time (RFC 3339 with an offset), e.g. to settle in tests")
]


def _run_jobs(names: list[str], program: list[str] | None, now: str | None, database: str | None) -> list[jobs.Ran]:
    """Run these jobs one program at a time; a program that fails is told on stderr after the rest ran
    (exit code 1), so one program's bad data does not hold the others back."""
    when = _when(now)
    try:
        ran = jobs.run(_runtime(database), names, now=when, program_keys=program or None)
    except LevelupError as exc:
        _fail(exc)
    for failed in (r for r in ran if r.error is not None):
        errors.print(f"[red]error:[/red] {failed.job} failed for {failed.program}: {failed.error}")
    return ran


def _exit_on_failure(ran: list[jobs.Ran]) -> None:
    if any(r.error is not None for r in ran):
        raise typer.Exit(1)


def _lines(ran: list[jobs.Ran], job: str) -> list[str]:
    return [line for r in ran if r.job == job for line in r.lines]


def _count(ran: list[jobs.Ran], job: str) -> int:
    return sum(r.count for r in ran if r.job == job)


@app.command("close-periods")
def close_periods_command(
    program: ProgramsOption = None, now: NowOption = None, database: DatabaseOption = None
) -> None:
    """Settle team goals and competitions whose period ended (plus the grace time). Safe to run twice."""
    ran = _run_jobs(["close-periods"], program, now, database)
    closed = _lines(ran, "close-periods")
    for line in closed:
        console.print(line)
    if not closed:
        console.print("nothing to close")
    _exit_on_failure(ran)


@app.command()
def expire(program: ProgramsOption = None, now: NowOption = None, database: DatabaseOption = None) -> None:
    """Make pending points spendable, expire points past their lifetime (an expiry entry each) and pay
    referrals whose hold has passed. Safe to rerun."""
    ran = _run_jobs(["expire", "referrals"], program, now, database)
    console.print(f"{_count(ran, 'referrals')} referrals paid")
    expired = _lines(ran, "expire")
    for line in expired:
        console.print(line)
    if not expired:
        console.print("nothing to do")
    _exit_on_failure(ran)


@app.command()
def tiers(program: ProgramsOption = None, now: NowOption = None, database: DatabaseOption = None) -> None:
    """Re-rate tiers as activity leaves their window (promotions happen as events arrive). Safe to rerun."""
    ran = _run_jobs(["tiers"], program, now, database)
    console.print(f"{_count(ran, 'tiers')} tier changes")
    _exit_on_failure(ran)


@app.command()
def deliver(
    forever: Annotated[bool, typer.Option("--forever", help="keep delivering until stopped")] = False,
    idle: Annotated[float, typer.Option(help="with --forever: seconds between looks when nothing is due")] = 0.5,
    database: DatabaseOption = None,
) -> None:
    """Send due webhook notifications (settings: LEVELUP_WEBHOOK_* variables, see docs/api.md). Safe beside
    other workers and `levelup serve`: each notification is claimed by one at a time."""
    runtime = _runtime(database)
    with httpx.Client() as client:
        worker = delivery.Worker(runtime, delivery.Settings.from_env(), client)
        try:
            if forever:
                worker.run_forever(idle, threading.Event())
            else:
                done = worker.run_until_idle()
                console.print(f"{done.delivered} delivered, {done.retrying} to retry, {done.failed} failed")
        finally:
            worker.close()


@jobs_app.command("list")
def jobs_list() -> None:
    """The periodic jobs, in the order the server runs them (every minute)."""
    for job in jobs.JOBS:
        console.print(f"{job.name}: {job.doing}")


@jobs_app.command("run")
def jobs_run(
    name: Annotated[
        list[str] | None, typer.Argument(help="jobs to run (default: all; see `levelup jobs list`)", show_default=False)
    ] = None,
    program: ProgramsOption = None,
    now: NowOption = None,
    database: DatabaseOption = None,
) -> None:
    """Run periodic jobs now, one program at a time, as the server does every minute. Safe to rerun."""
    ran = _run_jobs(name or [], program, now, database)
    for job in jobs.JOBS:
        if name and job.name not in name:
            continue
        for line in _lines(ran, job.name):
            console.print(line)
        console.print(f"{job.name}: {_count(ran, job.name)} {job.unit}")
    _exit_on_failure(ran)


def _when(now: str | None) -> dt.datetime | None:
    when = dt.datetime.fromisoformat(now) if now else None
    if when is not None and when.tzinfo is None:
        errors.print("[red]error:[/red] --now needs a UTC offset, e.g. 2026-12-01T00:00:00Z")
        raise typer.Exit(1)
    return when


@app.command("rebuild-leaderboards")
def rebuild_leaderboards(
    program: ProgramsOption = None,
    redis_url: Annotated[
        str | None, typer.Option("--redis", envvar="LEVELUP_REDIS_URL", help="Redis URL (LEVELUP_REDIS_URL)")
    ] = None,
    database: DatabaseOption = None,
) -> None:
    """Copy the leaderboards from the database to Redis afresh (they are also rebuilt when found stale)."""
    if not redis_url:
        errors.print("[red]error:[/red] no Redis: set LEVELUP_REDIS_URL or pass --redis")
        raise typer.Exit(1)
    runtime = _runtime(database)
    boards = redis_board.of(runtime.db.engine) or redis_board.Boards.connect(redis_url, runtime.db)
    with runtime.db.read() as connection:
        chosen = programs.selected(connection, program or None)
    for record in chosen:
        copied = boards.rebuild(record.id)
        done = "another process is rebuilding it" if copied is None else f"{copied} rows copied"
        console.print(f"{record.key}: {done}")


@app.command()
def launch(
    program: str,
    challenge: str,
    database: DatabaseOption = None,
) -> None:
    """Take a draft challenge live (a new program version); pays the draft's completions of the current period."""
    from levelup.challenges.launch import launch as launch_challenge

    runtime = _runtime(database)
    try:
        with runtime.db.write() as connection:
            done = launch_challenge(connection, program, challenge, actor="cli")
    except LevelupError as exc:
        _fail(exc)
        return
    console.print(f"{program} {challenge}: launched as version {done['version']}, {done['paid']} completions paid")


@app.command()
def leaderboard(
    program: str,
    key: str,
    period: Annotated[str | None, typer.Option(help="e.g. 2026-11, 2026-W47, 2026-Q4 (default: current)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 10,
    scope: Annotated[str | None, typer.Option(help="team:<id> or <attribute>:<value>")] = None,
    database: DatabaseOption = None,
) -> None:
    """Print a leaderboard."""
    runtime = _runtime(database)
    try:
        with runtime.db.read() as connection:
            record = programs.find(connection, program)
            board = board_of(
                connection,
                record,
                runtime.programs.compiled(connection, record),
                key,
                period=period,
                limit=limit,
                scope=scope,
            )
    except LevelupError as exc:
        _fail(exc)
    print_board(board)


@app.command("audit")
def audit_log(
    program: str,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines instead of a table")] = False,
    database: DatabaseOption = None,
) -> None:
    """Who changed what in a program, newest first: documents applied, adjustments, overrides, webhooks."""
    runtime = _runtime(database)
    try:
        with runtime.db.read() as connection:
            entries = audit.page(connection, programs.find(connection, program).id, before=None, limit=limit)
    except LevelupError as exc:
        _fail(exc)
    if as_json:
        for entry in entries:
            print(json.dumps(entry, ensure_ascii=False))
        return
    table = Table(title=f"{program} · audit · newest first")
    for column in ("at", "actor", "action", "detail"):
        table.add_column(column)
    for entry in entries:
        table.add_row(entry["at"], entry["actor"], entry["action"], json.dumps(entry["detail"], ensure_ascii=False))
    console.print(table)


def print_board(board: dict[str, Any]) -> None:
    table = Table(title=f"{board['key']} · {board['period']} · {board['total']} ranked")
    table.add_column("rank", justify="right")
    table.add_column("name")
    table.add_column("value", justify="right")
    for entry in board["entries"]:
        table.add_row(str(entry["rank"]), entry["name"] or entry["id"], f"{entry['value']:,}")
    console.print(table)


CLI_ADMIN = keys.Principal("cli", "admin", frozenset({keys.ALL_PROGRAMS}))  # whoever runs the CLI owns the database


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="admin, ingest or read")],
    program: Annotated[list[str], typer.Option("--program", "-p", help="a program it may touch; * for all")],
    note: Annotated[str | None, typer.Option(help="what the key is for")] = None,
    expires: Annotated[
        str | None, typer.Option(help="when it stops working: 30d, 12h, or an ISO date or time (UTC by default)")
    ] = None,
    database: DatabaseOption = None,
) -> None:
    """Make an API key. The secret is printed once and never stored."""
    if role not in keys.RANK:
        errors.print(f"[red]error:[/red] role must be admin, ingest or read, not {role!r}")
        raise typer.Exit(1)
    try:
        expires_at = keys.parse_expiry(expires, dt.datetime.now(dt.UTC)) if expires else None
    except ValueError as exc:
        errors.print(f"[red]error:[/red] --expires: {exc}")
        raise typer.Exit(1) from None
    runtime = _runtime(database)
    try:
        with runtime.db.write() as connection:
            key_id, secret = keys.create(
                connection, role=role, programs=program, creator=None, note=note, expires_at=expires_at
            )
    except LevelupError as exc:
        _fail(exc)
    until = f", expires {expires_at.astimezone(dt.UTC).isoformat()}" if expires_at else ""
    console.print(f"key id {key_id} ({role} on {', '.join(program)}{until})")
    print(secret)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="the key's id (levelup keys list)")], database: DatabaseOption = None
) -> None:
    """Revoke a key: from now on it gets 401. Audited, with ``cli`` as the actor."""
    runtime = _runtime(database)
    try:
        with runtime.db.write() as connection:
            keys.revoke(connection, key_id, by=CLI_ADMIN)
    except LevelupError as exc:
        _fail(exc)
    console.print(f"key {key_id} revoked")


@keys_app.command("list")
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines instead of a table")] = False,
    database: DatabaseOption = None,
) -> None:
    """Every stored key, oldest first, with its expiry and when it was last used (at most a minute behind);
    never a secret."""
    runtime = _runtime(database)
    with runtime.db.read() as connection:
        listed = keys.listed(connection, by=CLI_ADMIN)
    if as_json:
        for key in listed:
            print(json.dumps(key, ensure_ascii=False))
        return
    table = Table(title="API keys · oldest first")
    table.add_column("id", no_wrap=True, min_width=16)  # whole, to copy into levelup keys revoke
    for column in ("role", "programs", "note", "created", "expires", "last used", "revoked"):
        table.add_column(column)
    for key in listed:
        when = [key[name] or "" for name in ("created_at", "expires_at", "last_used_at", "revoked_at")]
        table.add_row(key["id"], key["role"], ", ".join(key["programs"]), key["note"] or "", *when)
    console.print(table)


@links_app.command("create")
def links_create(
    program: Annotated[str, typer.Argument(help="the program key")],
    kind: Annotated[str, typer.Option(help="tv or participant")] = "tv",
    participant: Annotated[str | None, typer.Option(help="a participant link's participant")] = None,
    expires_in: Annotated[int, typer.Option(help="seconds until it expires")] = DEFAULT_LINK_EXPIRY,
    top: Annotated[int, typer.Option(help="a tv link: rows shown per board")] = DEFAULT_TOP,
    base_url: Annotated[str, typer.Option(help="where the server answers")] = "http://127.0.0.1:8000",
    database: DatabaseOption = None,
) -> None:
    """Make a signed link to the TV board or a participant's home; its URL is printed once."""
    if kind not in ("tv", "participant"):
        errors.print(f"[red]error:[/red] kind must be tv or participant, not {kind!r}")
        raise typer.Exit(1)
    runtime = _runtime(database)
    try:
        with runtime.db.write() as connection:
            record = programs.find(connection, program)
            made = links.create(
                connection,
                record,
                runtime.programs.compiled(connection, record),
                kind="tv" if kind == "tv" else "participant",
                participant=participant,
                expires_in=expires_in,
                options=links.TvOptions(top=top) if kind == "tv" else None,
                actor="cli",
            )
    except LevelupError as error:
        _fail(error)
    console.print(f"link {made['id']} ({kind}), expires {made['expires_at']}")
    print(base_url.rstrip("/") + links.page_path(program, kind, made["token"]))


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve", help="serve the API when loaded")] = True,
    database: DatabaseOption = None,
) -> None:
    """Load the real CRM sales pipeline into acme-sales and a real shop's customers into the uci-rewards
    loyalty program, show what they give, then serve."""
    from levelup.cli.demo import before_serving, run_demo

    url = database or database_url()
    runtime = _runtime(url)
    secret = run_demo(runtime, console, ingest_with_progress, print_board)
    if serve_after:
        before_serving(runtime, console, f"http://{host}:{port}", secret)
        serve(host=host, port=port, workers=1, database=url)


# registered last: the module uses the helpers above
from levelup.cli import insights as _insights  # noqa: E402

app.command()(_insights.simulate)
app.command()(_insights.insights)
app.add_typer(_insights.segments_app, name="segments")

from levelup.cli import clawback as _clawback  # noqa: E402

app.command()(_clawback.clawback)
