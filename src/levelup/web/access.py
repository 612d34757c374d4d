"""Opening a page: its program, the version in force, and the link its token proves — in one read."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from levelup.engine.experiments import kept_out
from levelup.errors import NotFound
from levelup.links import service as links
from levelup.links.service import NOTHING
from levelup.programs import service as programs
from levelup.programs.compiled import CompiledProgram
from levelup.runtime import Runtime


@dataclass(frozen=True)
class Opened:
    program: programs.ProgramRecord
    compiled: CompiledProgram
    link: links.Link
    token: str

    @property
    def participant(self) -> str:
        """A participant link's participant (its external id)."""
        assert self.link.participant is not None
        return self.link.participant

    @property
    def participant_id(self) -> int:
        assert self.link.participant_id is not None
        return self.link.participant_id


def open_page(runtime: Runtime, connection: Connection, program: str, token: str | None, kind: links.Kind) -> Opened:
    """What ``token`` opens in ``program``; the same 404 for an unknown program as for a bad token, and for
    the link of a participant a holdout experiment keeps out of the whole program (docs/insights.md §9)."""
    record = programs.find(connection, program)
    link = links.open_link(connection, record, token, kind)
    compiled = runtime.programs.compiled(connection, record)
    if link.participant is not None and kept_out(compiled.program_holdouts, link.participant):
        raise NotFound(NOTHING)  # held out of the program: scored silently, shown nothing (not even the game)
    return Opened(record, compiled, link, token or "")
