"""The one writer of the audit log (``audit_log`` table): changes made by a person or a key,
not by scoring — program versions, manual adjustments, tier overrides, status changes, launches."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection

from levelup.storage import tables as t


def record(
    connection: Connection, program_id: int | None, actor: str, action: str, detail: dict[str, Any], at: dt.datetime
) -> None:
    """Write one audit row: ``actor`` (an API key id or ``cli``) did ``action`` (``area.verb``) with ``detail``."""
    connection.execute(
        t.audit_log.insert().values(program_id=program_id, actor=actor, action=action, detail=detail, at=at)
    )
