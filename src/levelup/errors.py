"""One exception hierarchy for expected outcomes; the API renders each as problem+json.

Anything not derived from :class:`LevelupError` is a bug and becomes a 500. The bounds
every input is held to (ids, text, numbers) live here too, so documents, events and
request bodies refuse the same things with the same words.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, Field

MAX_ID_LENGTH = 200
# an external id (participant, event, team…): no control character, no "/" (it could never be read back
# through a URL), no leading or trailing space
ID_PATTERN = r"^[^\s/\x00-\x1f\x7f](?:[^/\x00-\x1f\x7f]*[^\s/\x00-\x1f\x7f])?$"
ID_RULE = 'no "/", no control character, no leading or trailing space'
MAX_INT = 2**63 - 1  # what a database integer holds


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("contains a NUL character")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
ExternalId = Annotated[
    str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN, description=f"an id: {ID_RULE}")
]


def nesting(value: Any, limit: int) -> int:
    """Nesting depth of JSON-like data, giving up just past ``limit`` (so never deeper than that)."""
    if limit < 0:
        return 1
    if isinstance(value, dict):
        return 1 + max((nesting(v, limit - 1) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((nesting(v, limit - 1) for v in value), default=0)
    return 0


def data_errors(value: Any, path: str = "") -> Iterator[FieldError]:
    """What free JSON data (event data, attributes, documents) must not hold: NUL in a key or a string,
    a number that is not finite, an integer past 64 bits (no database column or CEL number holds them)."""
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if not isinstance(key, str):  # YAML reads on, off, yes and no as booleans
                yield FieldError(where, f"the key {key!r} is not text (YAML reads on/off/yes/no as true/false)")
            elif "\x00" in key:
                yield FieldError(path or "(body)", "a key contains a NUL character")
            yield from data_errors(item, where)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from data_errors(item, f"{path}[{i}]")
    elif isinstance(value, str):
        if "\x00" in value:
            yield FieldError(path or "(body)", "contains a NUL character")
    elif isinstance(value, float) and not math.isfinite(value):
        yield FieldError(path or "(body)", f"{value} is not a finite number")
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        yield FieldError(path or "(body)", f"integer beyond ±{MAX_INT}")


@dataclass(frozen=True)
class FieldError:
    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


MAX_ERRORS = 100  # listed in one answer: past that, a count (an error list must not outgrow the input)


class LevelupError(Exception):
    status = 400
    title = "Bad request"
    code = "bad_request"

    def __init__(self, detail: str, *, errors: Sequence[FieldError] = (), **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors[:MAX_ERRORS])
        if len(errors) > MAX_ERRORS:
            self.errors.append(FieldError("(more)", f"{len(errors) - MAX_ERRORS} more errors not listed"))
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
