"""Leaderboards by period, scope and neighbourhood."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import Field

from levelup.api.deps import IdPath, Offset, ReadAccess
from levelup.api.responses import Out, as_is
from levelup.leaderboards.service import leaderboard

router = APIRouter(tags=["leaderboards"])


class BoardEntry(Out):
    rank: int = Field(description="ties share a rank (1, 2, 2, 4)")
    id: str = Field(description="the participant or team")
    name: str | None
    value: float


class BoardPage(Out):
    key: str
    period: str
    by: Literal["participant", "team"]
    normalized: str | None = Field(description="the attribute values are divided by, if the board is normalized")
    total: int = Field(description="everyone on the board (scope applied)")
    entries: list[BoardEntry]


@router.get("/programs/{program}/leaderboards/{key}", response_model=BoardPage)
def get_leaderboard(
    access: ReadAccess,
    key: IdPath,
    period: Annotated[str | None, Query(max_length=40)] = None,
    scope: Annotated[str | None, Query(max_length=300)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
    offset: Offset = 0,
    around: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """``period`` defaults to the current one (``2026-11``, ``2026-W47``, ``2026-Q4``…);
    ``scope=team:<id>`` or ``<attribute>:<value>``; ``around=<participant>`` shows ``limit`` neighbours each side."""
    with access.runtime.db.read() as connection:
        record = access.record(connection)
        board = leaderboard(
            connection,
            record,
            access.compiled(connection, record),
            key,
            period=period,
            scope=scope,
            limit=limit,
            offset=offset,
            around=around,
        )
    return as_is(BoardPage, board)
