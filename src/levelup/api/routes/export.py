"""A program's export over HTTP (admin): the JSON Lines ``levelup export`` writes, streamed."""

from __future__ import annotations

import json
from collections.abc import Iterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from levelup.api.deps import AdminAccess
from levelup.programs import export

router = APIRouter(tags=["programs"])


@router.get(
    "/programs/{program}/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {"schema": {"type": "string"}}}}},
)
def get_export(access: AdminAccess) -> StreamingResponse:
    """Every input of the program as JSON Lines, from one consistent snapshot, read and sent a chunk at a
    time; ``levelup import-program`` rebuilds the program from it (docs/security.md)."""
    with access.runtime.db.read() as connection:
        key = access.record(connection).key  # a missing program is a 404 before anything is sent

    def lines() -> Iterator[str]:
        with access.runtime.db.read() as connection:
            for line in export.lines(connection, key):
                yield json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n"

    disposition = {"Content-Disposition": f'attachment; filename="{key}.jsonl"'}
    return StreamingResponse(lines(), media_type="application/x-ndjson", headers=disposition)
