"""One exception hierarchy for expected outcomes; the API renders each as problem+json.

Anything not derived from :class:`LevelupError` is a bug and becomes a 500.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldError:
    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


class LevelupError(Exception):
    status = 400
    title = "Bad request"
    code = "bad_request"

    def __init__(self, detail: str, *, errors: Sequence[FieldError] = (), **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors)
        self.extra = extra

    def problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"https://levelup.dev/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
            **self.extra,
        }
        if self.errors:
            body["errors"] = [e.as_dict() for e in self.errors]
        return body


class Invalid(LevelupError):
    status = 422
    title = "Invalid input"
    code = "invalid"


class NotFound(LevelupError):
    status = 404
    title = "Not found"
    code = "not_found"


class Conflict(LevelupError):
    status = 409
    title = "Conflict"
    code = "conflict"


class Unauthorized(LevelupError):
    status = 401
    title = "Unauthorized"
    code = "unauthorized"


class Forbidden(LevelupError):
    status = 403
    title = "Forbidden"
    code = "forbidden"


class TooLarge(LevelupError):
    status = 413
    title = "Payload too large"
    code = "too_large"


def path_of(loc: Sequence[str | int]) -> str:
    """``('rules', 2, 'award', 'xp')`` → ``rules[2].award.xp``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
