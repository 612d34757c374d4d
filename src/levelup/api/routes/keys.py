"""API keys: create (the secret is shown once, an expiry optional), list (with when each was last used) and
revoke."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from levelup.api.deps import IdPath, PrincipalDep, RuntimeDep
from levelup.api.responses import Out
from levelup.errors import Text
from levelup.keys import service as keys
from levelup.programs.document import PROGRAM_PATTERN

router = APIRouter(tags=["keys"])


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["admin", "ingest", "read"]
    programs: list[Annotated[str, Field(pattern=f"{PROGRAM_PATTERN}|^[*]$")]] = Field(
        min_length=1, max_length=100, description="program keys, or * for every program"
    )
    note: Text | None = Field(default=None, max_length=200)
    expires_at: dt.datetime | None = Field(
        default=None, description="when the key stops working (RFC 3339 with an offset, in the future); null: never"
    )


class KeyCreated(Out):
    id: str
    key: str = Field(description="the secret, shown this once")
    role: Literal["admin", "ingest", "read"]
    programs: list[str]
    expires_at: str | None


@router.post("/keys", status_code=201, response_model=KeyCreated)
def create_key(body: KeyIn, runtime: RuntimeDep, principal: PrincipalDep) -> dict[str, Any]:
    with runtime.db.write() as connection:
        key_id, secret = keys.create(
            connection,
            role=body.role,
            programs=body.programs,
            creator=principal,
            note=body.note,
            expires_at=body.expires_at,
        )
    expires_at = body.expires_at.astimezone(dt.UTC).isoformat() if body.expires_at else None
    return {
        "id": key_id,
        "key": secret,
        "role": body.role,
        "programs": sorted(set(body.programs)),
        "expires_at": expires_at,
    }


class KeyListed(Out):
    id: str
    role: Literal["admin", "ingest", "read"]
    programs: list[str]
    note: str | None
    created_at: str
    revoked_at: str | None
    expires_at: str | None
    last_used_at: str | None = Field(description="when it was last used, at most a minute behind; null: never")


class KeyList(Out):
    keys: list[KeyListed]


@router.get("/keys", response_model=KeyList)
def list_keys(runtime: RuntimeDep, principal: PrincipalDep) -> dict[str, Any]:
    """The keys this admin key could revoke, revoked and expired ones included, with when each was last used;
    never a secret."""
    with runtime.db.read() as connection:
        return {"keys": keys.listed(connection, by=principal)}


@router.delete("/keys/{key_id}", status_code=204, response_class=Response, responses={204: {"description": "revoked"}})
def revoke_key(key_id: IdPath, runtime: RuntimeDep, principal: PrincipalDep) -> Response:
    with runtime.db.write() as connection:
        keys.revoke(connection, key_id, by=principal)
    return Response(status_code=204)
