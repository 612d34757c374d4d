"""Leaderboards by period, scope and neighbourhood."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from levelup.api.deps import ReadAccess
from levelup.leaderboards.service import leaderboard

router = APIRouter(tags=["leaderboards"])


@router.get("/programs/{program}/leaderboards/{key}")
def get_leaderboard(
    access: ReadAccess,
    key: str,
    period: str | None = None,
    scope: str | None = None,
    limit: int = 10,
    offset: int = 0,
    around: str | None = None,
) -> dict[str, Any]:
    """``period`` defaults to the current one (``2026-11``, ``2026-W47``, ``2026-Q4``…);
    ``scope=team:<id>`` or ``<attribute>:<value>``; ``around=<participant>`` shows ``limit`` neighbours each side."""
    with access.runtime.db.read() as connection:
        record = access.record(connection)
        return leaderboard(
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
