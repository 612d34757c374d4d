"""Rendering pages: one Jinja2 environment (autoescaped), HTML error pages, forms and their CSRF token."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape

from levelup import __version__
from levelup.errors import FieldError, Forbidden, Invalid, LevelupError
from levelup.metrics.periods import grain_of, period_dates
from levelup.programs.document import Leaderboard

TEMPLATES = Path(__file__).parent / "templates"
MAX_FORM_BYTES = 16 * 1024
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"}

env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(), auto_reload=False)
env.globals["asset"] = lambda name: f"/static/web/{name}?v={__version__}"


def _number(value: float | int | None) -> str:
    """1234.0 → "1,234"; 0.5 → "0.5": numbers as people read them."""
    if value is None:
        return "–"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


env.filters["number"] = _number


def period_words(period: str) -> str:
    """A period key as people say it: "2026-12" → "December 2026", "all" → "all time", "last_7_days" → "last 7
    days"; a key it does not know (a challenge's own range) as it is."""
    try:
        grain = grain_of(period)
    except ValueError:
        return period.replace("_", " ")
    if grain == "all":
        return "all time"
    first, _ = period_dates(period) or (dt.date.min, dt.date.min)
    return {
        "day": f"{first.day} {first:%B %Y}",
        "week": f"week {first.isocalendar().week} of {first.isocalendar().year}",
        "month": f"{first:%B %Y}",
        "quarter": f"Q{(first.month - 1) // 3 + 1} {first.year}",
        "year": str(first.year),
    }[grain]


def board_title(board: Leaderboard) -> str:
    """A board's name, or its key in words when the document gives none ("xp-all" → "Xp all")."""
    return board.name or board.key.replace("-", " ").capitalize()


env.filters["period"] = period_words


def page(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """The template rendered as a page nobody caches (it holds a person's points, behind a secret link)."""
    body = env.get_template(template).render(**context)
    return HTMLResponse(body, status_code=status_code, headers=NO_STORE)


class PageRoute(APIRoute):
    """A page route: an expected refusal (LevelupError) is an HTML page with its status, not problem+json."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except LevelupError as error:
                return page("error.html", error.status, title=error.title, error=error)

        return guarded


def csrf_token(secret: str) -> str:
    """The form token of a page opened with ``secret`` (a link's token, a session's id): a site that does not
    know the secret cannot make it, so a forged cross-site form is refused."""
    return hmac.new(secret.encode(), b"levelup-form", hashlib.sha256).hexdigest()


async def form(request: Request, secret: str, limit: int = MAX_FORM_BYTES) -> dict[str, str]:
    """The posted form's fields (at most ``limit`` bytes), once its CSRF token is proven (403 otherwise)."""
    body = await request.body()
    if len(body) > limit:
        raise Invalid("form too large", errors=[FieldError("(body)", f"at most {limit} bytes")])
    fields = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    if not hmac.compare_digest(fields.get("csrf", "").encode(), csrf_token(secret).encode()):
        raise Forbidden("this form is out of date or came from another site: reload the page and try again")
    return fields


def whole(fields: dict[str, str], name: str, *, low: int = 1, high: int = 10**9) -> int:
    """A whole number field, within bounds, or a 422 naming the field."""
    text = fields.get(name, "").strip()
    if not text.lstrip("-").isdigit() or not low <= int(text) <= high:
        raise Invalid(f"bad {name}", errors=[FieldError(name, f"a whole number from {low:,} to {high:,}")])
    return int(text)
