"""``levelup clawback``: take back what an event paid, as an audited reversal (see levelup.events.clawback),
or what a kudos paid, with ``--kudos`` (see levelup.kudos.service.clawback).

Registered by :mod:`levelup.cli.main`, whose helpers (database option, errors) it uses.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from levelup.cli.main import DatabaseOption, _fail, _runtime, console
from levelup.errors import MAX_INT, FieldError, Invalid, LevelupError
from levelup.events import clawback as service
from levelup.kudos import service as kudos_service


def clawback(
    program: Annotated[str, typer.Argument(help="the program key")],
    note: Annotated[str, typer.Option(help="why: kept in the audit log (and on an event's reversal)")],
    event: Annotated[
        str | None, typer.Argument(help="the id of the event whose awards are taken back (or give --kudos)")
    ] = None,
    kudos: Annotated[
        int | None, typer.Option("--kudos", help="the id of the kudos whose points are taken back from its receiver")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON the API answers")] = False,
    database: DatabaseOption = None,
) -> None:
    """Claw back an event's awards (a reversal of reason clawback) or, with --kudos, what a kudos paid its
    receiver (a ledger entry of kind clawback; the giver's budget is not given back), audited as done by
    ``cli``; a second clawback of the same event or kudos changes nothing."""
    if (event is None) == (kudos is None):
        _fail(Invalid("what to claw back", errors=[FieldError("event", "give an event id or --kudos ID, not both")]))
    if kudos is not None and not 1 <= kudos <= MAX_INT:
        _fail(Invalid("bad kudos id", errors=[FieldError("kudos", "a kudos id: a whole number from 1")]))
    if not 1 <= len(note.strip()) <= 500:
        _fail(Invalid("bad note", errors=[FieldError("note", "1 to 500 characters")]))
    try:
        if kudos is not None:
            done = kudos_service.claw_back(_runtime(database), program, kudos, note=note, actor="cli")
        else:
            assert event is not None
            done = service.clawback(_runtime(database), program, event, note=note, actor="cli")
    except LevelupError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(done, indent=2))
        return
    what = f"kudos {kudos}" if kudos is not None else event
    taken = ", ".join(f"{amount:,} {currency}" for currency, amount in done["taken"].items()) or "nothing"
    if done["status"] == "duplicate":
        console.print(f"{what} was already clawed back by {done['by']} at {done['at']} ({taken}): nothing changed")
    else:
        console.print(f"{what} clawed back from {done['participant']} as {done['clawback']}: {taken}")
