"""``fetch``: the objects a HubSpot delivery names, read through the CRM objects API's batch read.

A webhook item carries one changed property; the mapping usually needs more (the amount, the owner).
One ``POST /crm/v3/objects/{type}/batch/read`` per 100 objects of a delivery, with the private app's
token. HubSpot gives up on a webhook after 5 s, so retries (429 and 5xx, honouring ``Retry-After``) stop
within a budget of 4 s; past it the delivery is answered 503, nothing of it is stored, and HubSpot
sends it again later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import httpx

from levelup.errors import LevelupError
from levelup.programs.document import SourceFetch

logger = logging.getLogger("levelup")

DEFAULT_BASE_URL = "https://api.hubapi.com"
BATCH = 100  # the batch read's limit of inputs
ATTEMPTS = 4
BUDGET_S = 4.0
FIRST_BACKOFF_S = 0.25


class Unavailable(LevelupError):
    """The CRM's API could not be read in time: retry the delivery later."""

    status = 503
    title = "Service unavailable"
    code = "source_unavailable"


def object_path(kind: str) -> str:
    """HubSpot's URL names object types in the plural (``deals``, ``companies``)."""
    if kind.endswith("s"):
        return kind
    return kind[:-1] + "ies" if kind.endswith("y") else kind + "s"


async def fetch_objects(
    client: httpx.AsyncClient, fetch: SourceFetch, token: str, base_url: str, ids: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """The objects found, by id (``{"id", "properties": {...}, ...}`` as HubSpot returns them); an id
    HubSpot does not know is left out."""
    deadline = time.monotonic() + BUDGET_S
    url = f"{base_url.rstrip('/')}/crm/v3/objects/{object_path(fetch.object)}/batch/read"
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), BATCH):
        body = {"properties": fetch.properties, "inputs": [{"id": i} for i in ids[start : start + BATCH]]}
        answer = await _post(client, url, token, body, deadline)
        for result in answer.get("results", []):
            if isinstance(result, dict) and "id" in result:
                found[str(result["id"])] = result
    return found


async def _post(client: httpx.AsyncClient, url: str, token: str, body: Any, deadline: float) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    for attempt in range(ATTEMPTS):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            response = await client.post(url, json=body, headers=headers, timeout=left)
        except httpx.HTTPError as exc:
            logger.warning("HubSpot batch read failed (attempt %d): %s", attempt + 1, exc)
            wait = FIRST_BACKOFF_S * 2**attempt
        else:
            if response.status_code in (200, 207):  # 207: some ids unknown, the rest found
                result: dict[str, Any] = response.json()
                return result
            if response.status_code != 429 and response.status_code < 500:
                logger.error("HubSpot batch read refused: %s %s", response.status_code, response.text[:500])
                raise Unavailable(f"HubSpot's CRM API answered {response.status_code}: check the source's token")
            wait = _retry_after(response) or FIRST_BACKOFF_S * 2**attempt
        if time.monotonic() + wait >= deadline or attempt == ATTEMPTS - 1:
            break
        await asyncio.sleep(wait)
    raise Unavailable("HubSpot's CRM API did not answer in time; nothing was stored, send the delivery again")


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None
