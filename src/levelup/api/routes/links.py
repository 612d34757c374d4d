"""Signed links to the web pages (admin): make one (its token shown once), list, revoke."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from levelup.api.deps import AdminAccess
from levelup.api.responses import Out
from levelup.errors import ExternalId, Text
from levelup.links import service as links
from levelup.programs.document import Key

router = APIRouter(tags=["links"])
LinkId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")]


class TvOptionsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    top: int = Field(default=links.DEFAULT_TOP, ge=1, le=50, description="rows shown per board; never the bottom")
    boards: list[Key] = Field(default_factory=list, max_length=100, description="board keys; empty: every board")
    rotate: int = Field(default=links.DEFAULT_ROTATE, ge=5, le=3600, description="seconds each board stays on")


class LinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["tv", "participant"]
    participant: ExternalId | None = Field(default=None, description="a participant link's participant")
    expires_in: int = Field(
        default=links.DEFAULT_EXPIRES_IN, ge=60, le=links.MAX_EXPIRES_IN, description="seconds; 30 days by default"
    )
    tv: TvOptionsIn | None = Field(default=None, description="what a tv link shows")
    note: Text | None = Field(default=None, max_length=200)


class TvOptions(Out):
    top: int
    boards: list[str]
    rotate: int


class Link(Out):
    id: str
    kind: Literal["tv", "participant"]
    participant: str | None
    options: TvOptions | dict[str, Any] = Field(description="a tv link's options; {} for a participant link")
    note: str | None
    created_at: str
    expires_at: str
    revoked_at: str | None


class LinkCreated(Link):
    url: str = Field(description="opens the page without any other credential; shown in this answer only")
    token: str = Field(description="the link's secret, shown in this answer only")


class Links(Out):
    links: list[Link] = Field(description="newest first, revoked and expired ones included; never a secret")


@router.post("/programs/{program}/links", status_code=201, response_model=LinkCreated)
def create_link(access: AdminAccess, body: LinkIn, request: Request) -> dict[str, Any]:
    """A signed link to the TV board or a participant's home; the token is shown this once (docs/web.md)."""
    options = links.TvOptions(**body.tv.model_dump()) if body.tv is not None else None
    with access.runtime.db.write() as connection:
        record = access.record(connection)
        made = links.create(
            connection,
            record,
            access.compiled(connection, record),
            kind=body.kind,
            participant=body.participant,
            expires_in=body.expires_in,
            options=options,
            note=body.note,
            actor=access.principal.key_id,
        )
    base = str(request.base_url).rstrip("/")
    return made | {"url": base + links.page_path(access.key, body.kind, made["token"])}


@router.get("/programs/{program}/links", response_model=Links)
def list_links(access: AdminAccess) -> dict[str, Any]:
    with access.runtime.db.read() as connection:
        return {"links": links.listed(connection, access.record(connection))}


@router.delete(
    "/programs/{program}/links/{link_id}",
    status_code=204,
    response_class=Response,
    responses={204: {"description": "revoked"}},
)
def revoke_link(access: AdminAccess, link_id: LinkId) -> Response:
    """The link opens nothing from now on (its row stays, listed as revoked)."""
    with access.runtime.db.write() as connection:
        links.revoke(connection, access.record(connection), link_id, actor=access.principal.key_id)
    return Response(status_code=204)
