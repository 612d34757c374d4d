"""Typed errors: one class per kind of problem, each carrying the server's problem+json (RFC 9457)."""

from __future__ import annotations

from typing import Any

import httpx


class ApiError(Exception):
    """An answer that is not a success; ``problem`` is its problem+json (``status``, ``title``, ``detail``,
    ``code`` and, for invalid input, ``errors: [{path, message}]``)."""

    def __init__(self, problem: dict[str, Any]) -> None:
        self.problem = problem
        self.status: int = problem.get("status", 0)
        self.title: str = problem.get("title", "")
        self.detail: str = problem.get("detail", "")
        self.code: str | None = problem.get("code")
        self.errors: list[dict[str, str]] = problem.get("errors", [])
        super().__init__(f"{self.status} {self.title}: {self.detail}")


class BadRequest(ApiError):
    pass


class Unauthorized(ApiError):
    pass


class Forbidden(ApiError):
    pass


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    """409: insufficient balance, out of stock, a limit, a budget… (``code`` says which)."""


class PayloadTooLarge(ApiError):
    pass


class InvalidInput(ApiError):
    """422: ``errors`` lists every problem with its path."""


class RateLimited(ApiError):
    pass


class ServerError(ApiError):
    pass


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidInput,
    429: RateLimited,
}


def raise_for_problem(response: httpx.Response) -> None:
    """Raise the typed error of a non-2xx answer (a body that is not JSON becomes a minimal problem)."""
    if response.is_success:
        return
    try:
        problem = response.json()
    except ValueError:
        problem = None
    if not isinstance(problem, dict):
        problem = {"status": response.status_code, "title": response.reason_phrase, "detail": response.text[:500]}
    problem.setdefault("status", response.status_code)
    kind = _BY_STATUS.get(response.status_code, ServerError if response.status_code >= 500 else ApiError)
    raise kind(problem)
