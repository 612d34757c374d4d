"""Challenges with status and progress; launching drafts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from levelup.api.deps import AdminAccess, ReadAccess
from levelup.challenges.launch import launch
from levelup.challenges.service import list_challenges

router = APIRouter(tags=["challenges"])


@router.get("/programs/{program}/challenges")
def get_challenges(access: ReadAccess, participant: str | None = None) -> dict[str, Any]:
    """Every challenge with its status (upcoming, active, ended), current period and progress;
    ``?participant=`` adds that participant's progress. Drafts are shown to admin keys only."""
    with access.runtime.db.read() as connection:
        record = access.record(connection)
        return list_challenges(
            connection,
            record,
            access.compiled(connection, record),
            participant=participant,
            include_drafts=access.principal.can("admin", access.key),
        )


@router.post("/programs/{program}/challenges/{challenge}/launch")
def launch_challenge(access: AdminAccess, challenge: str) -> dict[str, Any]:
    """Take a draft live: a new program version, and the draft's completions of the current period paid."""
    with access.runtime.db.write() as connection:
        return launch(connection, access.key, challenge, actor=access.principal.key_id)
