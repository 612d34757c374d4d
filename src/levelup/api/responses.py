"""How routes declare and send what they answer, so ``/openapi.json`` describes every response.

Small answers are validated by their ``response_model`` as usual. Read answers that can be
large (boards, profiles, pages, catalogs) skip validation: :func:`as_is` writes the service's
dict exactly as FastAPI writes an undeclared dict, and the route's model only documents it.
With ``LEVELUP_CHECK_RESPONSES`` set (the tests set it), those are validated too, so a model
that drifts from what a service returns fails a test instead of misleading a client.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import Response
from pydantic import BaseModel, ConfigDict, TypeAdapter

_ANY = TypeAdapter(Any)
CHECK_ENV = "LEVELUP_CHECK_RESPONSES"


class Out(BaseModel):
    """A response body: every key declared (``additionalProperties: false`` in the OpenAPI document)."""

    model_config = ConfigDict(extra="forbid")


def as_is(model: type[BaseModel], body: Any, status_code: int = 200) -> Response:
    """``body`` as JSON, byte for byte what FastAPI sends for an undeclared dict; ``model`` documents it."""
    if os.environ.get(CHECK_ENV):
        model.model_validate(body)
    return Response(_ANY.dump_json(body), status_code=status_code, media_type="application/json")
