"""``levelup clawback``: take back what an event paid, as an audited reversal (see levelup.events.clawback).

Registered by :mod:`levelup.cli.main`, whose helpers (database option, errors) it uses.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from levelup.cli.main import DatabaseOption, _fail, _runtime, console
from levelup.errors import FieldError, Invalid, LevelupError
from levelup.events import clawback as service


def clawback(
    program: Annotated[str, typer.Argument(help="the program key")],
    event: Annotated[str, typer.Argument(help="the id of the event whose awards are taken back")],
    note: Annotated[str, typer.Option(help="why: kept in the audit log and on the reversal")],
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON the API answers")] = False,
    database: DatabaseOption = None,
) -> None:
    """Claw back an event's awards: a reversal of reason clawback, audited as done by ``cli``; a second
    clawback of the same event changes nothing."""
    if not 1 <= len(note.strip()) <= 500:
        _fail(Invalid("bad note", errors=[FieldError("note", "1 to 500 characters")]))
    try:
        done = service.clawback(_runtime(database), program, event, note=note, actor="cli")
    except LevelupError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(done, indent=2))
        return
    taken = ", ".join(f"{amount:,} {currency}" for currency, amount in done["taken"].items()) or "nothing"
    if done["status"] == "duplicate":
        console.print(f"{event} was already clawed back by {done['by']} at {done['at']} ({taken}): nothing changed")
    else:
        console.print(f"{event} clawed back from {done['participant']} as {done['clawback']}: {taken}")
