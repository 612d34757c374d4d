"""``levelup export``, ``levelup import-program`` and ``levelup participants erase`` (docs/security.md).

The export goes to stdout or ``--out``; its progress bar goes to stderr, so a pipe gets the JSON Lines alone.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path
from typing import IO, Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from levelup.errors import LevelupError
from levelup.participants import erasure
from levelup.programs import export
from levelup.programs import service as programs
from levelup.runtime import Runtime
from levelup.storage.db import database_url

DatabaseOption = Annotated[
    str | None, typer.Option("--database", envvar="LEVELUP_DATABASE_URL", help="database URL (default: levelup.db)")
]
participants_app = typer.Typer(help="Participants: erasure.", no_args_is_help=True)
stderr = Console(stderr=True)


def _fail(error: LevelupError) -> NoReturn:
    stderr.print(f"[red]error:[/red] {error.detail}")
    for item in error.errors:
        stderr.print(f"  {item.path}: {item.message}")
    raise typer.Exit(1)


def _bar() -> Progress:
    """A progress bar on stderr, gone when done: stdout may be the export itself."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    return Progress(*columns, console=stderr, transient=True)


def export_program(
    program: str,
    out: Annotated[Path | None, typer.Option("--out", help="the file to write (default: stdout)")] = None,
    database: DatabaseOption = None,
) -> None:
    """Export a program's inputs (documents, participants, events, adjustments, kudos, redemptions …) as
    JSON Lines, streamed with bounded memory; `levelup import-program` rebuilds the program from it."""
    runtime = Runtime.from_url(database or database_url())
    target: IO[str] | nullcontext[IO[str]] = out.open("w", encoding="utf-8") if out else nullcontext(sys.stdout)
    try:
        with runtime.db.read() as connection, target as file, _bar() as bar:
            task = bar.add_task(f"exporting {program}", total=export.size(connection, program))
            lines = export.write(connection, program, file, progress=lambda: bar.advance(task))
    except LevelupError as exc:
        _fail(exc)
    stderr.print(f"{program}: {lines} lines" + (f" in {out}" if out else ""))


def import_program(
    file: Path,
    as_key: Annotated[str | None, typer.Option("--as", help="the program's key here (default: its own)")] = None,
    database: DatabaseOption = None,
) -> None:
    """Rebuild an exported program on this database by re-applying every input in its original order and time
    through the normal paths: every balance, badge, rank and total is recomputed, none is copied."""
    runtime = Runtime.from_url(database or database_url())
    try:
        with file.open(encoding="utf-8") as source, _bar() as bar:
            task = bar.add_task(f"importing {file.name}", total=file.stat().st_size)
            done = export.rebuild(runtime, source, as_key=as_key, progress=lambda n: bar.advance(task, n))
    except LevelupError as exc:
        _fail(exc)
    applied = ", ".join(f"{n} {kind}" for kind, n in sorted(done.applied.items()))
    typer.echo(f"{done.program}: {done.lines} lines read; {applied}")


@participants_app.command("erase")
def participants_erase(program: str, participant: str, database: DatabaseOption = None) -> None:
    """Pseudonymise a participant everywhere (name, attributes, id, personal event fields, texts); balances,
    the ledger's amounts and the liability stay. Audited. Prints the pseudonym."""
    runtime = Runtime.from_url(database or database_url())
    try:
        with runtime.db.write() as connection:
            done = erasure.erase(connection, programs.find(connection, program).id, participant, actor="cli")
    except LevelupError as exc:
        _fail(exc)
    typer.echo(done.participant if not done.already else f"{done.participant} (erased before)")
