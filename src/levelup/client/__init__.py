"""A typed Python client of the Levelup HTTP API (docs/api.md), sync and async, on httpx.

    from levelup.client import Client
    with Client("http://127.0.0.1:8000", key="…") as levelup:
        levelup.send_event("acme-sales", {"id": "deal-88-won", "type": "deal.won", …})

Errors come as :class:`ApiError` subclasses carrying the problem+json; idempotent calls (events,
whose ids make retries safe, redemptions with their key, reads) are retried on connection errors,
429 and 5xx, with the same body, as :class:`Retry` says.
"""

from levelup.client.calls import Retry
from levelup.client.clients import AsyncClient, Client
from levelup.client.errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    Unauthorized,
)

__all__ = [
    "ApiError",
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "Forbidden",
    "InvalidInput",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "Retry",
    "ServerError",
    "Unauthorized",
]
