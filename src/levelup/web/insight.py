"""The studio's insight page (issue 12, WEB.md "Charts: engagement once insight lands"): each analysis of
``levelup.insights`` (engagement with its chart, fairness, segments, churn, flags, experiments) over a window
that ends after the last event received. An analysis is an aggregate over the window's events (seconds at
100,000 participants, docs/insights.md), so the page never runs one: an admin's "Compute" (a POST, like the
editor's simulation) runs it and keeps its answer (``insight_snapshots``), which the page shows with when
and by whom it was computed — a read, within a page's 100 ms."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Connection, and_, func, select
from starlette.concurrency import run_in_threadpool

from levelup.errors import FieldError, Invalid
from levelup.insights import engagement, experiments, fairness, gaming, segments
from levelup.metrics.periods import period_dates, period_key
from levelup.programs import service as programs
from levelup.programs.compiled import CompiledProgram
from levelup.storage import tables as t
from levelup.web.admin import Notice, page_context, posted, runtime_of, signed_in
from levelup.web.charts import engagement_by_period
from levelup.web.render import PageRoute, page, whole

router = APIRouter(route_class=PageRoute, include_in_schema=False)
VIEWS = {  # each analysis, by its key in the API's path and as the page names it
    "engagement": "Engagement",
    "fairness": "Fairness",
    "segments": "Segments",
    "churn": "Churn risk",
    "flags": "Flags",
    "experiments": "Experiments",
}
View = Annotated[str, Query(pattern=f"^({'|'.join(VIEWS)})$")]
RECENT = 1000  # events received last, whose latest time ends the default window
KEPT = 100  # analyses kept a program (the newest): a cache, computed again when asked
SHOWN = 20  # rows of a list (churn, flags, a segment's members): the API and CLI export them all


def _last_day(connection: Connection, program_id: int, now: dt.datetime) -> dt.date:
    """The UTC day of the latest event time among the last RECENT received (an index read, not a scan of the
    log: a back-dated straggler does not pull the window back), or the day before ``now`` when there is none
    or it is later: the demo's 2017 data shows its own weeks, a live program its latest ones."""
    e = t.events.c
    recent = select(e.occurred_at).where(e.program_id == program_id).order_by(e.seq.desc()).limit(RECENT).subquery()
    last = connection.execute(select(func.max(recent.c.occurred_at))).scalar_one_or_none()
    return (now - dt.timedelta(days=1)).date() if last is None or last > now else last.date()


def _analysis(
    connection: Connection,
    record: programs.ProgramRecord,
    compiled: CompiledProgram,
    view: str,
    start: dt.datetime,
    end: dt.datetime,
    period: str | None,
) -> dict[str, Any]:
    """The one analysis the page shows, as the API answers it."""
    if view == "engagement":
        return engagement.engagement(connection, record, compiled, start, end, "week")
    if view == "fairness":
        metric = segments.default_metric_or_none(compiled)
        currency = None if metric else compiled.doc.currencies[0].key
        assert period is not None  # _params names the month of the last day when none was asked
        return fairness.fairness(connection, record, compiled, period=period, metric=metric, currency=currency)
    if view == "segments":
        if segments.default_metric_or_none(compiled) is None:
            return {"sentence": "no sum metric to segment by", "segments": []}
        return segments.rfm(connection, record, compiled, as_of=end, limit=SHOWN)
    if view == "churn":
        return segments.churn(connection, record, as_of=end, limit=SHOWN)
    if view == "flags":
        return gaming.flags(connection, record, compiled, start=start, end=end, limit=SHOWN)
    return experiments.experiments(connection, record, compiled, start, end)


def _params(view: str, last_day: dt.date, weeks: int, period: str | None) -> str:
    """The window an analysis is kept under (fairness: the month of the last day unless a period is named)."""
    chosen: dict[str, Any] = {"to": last_day.isoformat(), "weeks": weeks}
    if view == "fairness":
        chosen["period"] = period or period_key("month", last_day)
    return urlencode(chosen)


def _bounds(last_day: dt.date, weeks: int) -> tuple[dt.datetime, dt.datetime]:
    end = dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time(), dt.UTC)
    return end - dt.timedelta(weeks=weeks), end


@router.get("/admin/p/{program}/insights", response_class=HTMLResponse)
async def insights_page(
    program: str,
    request: Request,
    view: View = "engagement",
    to: Annotated[dt.date | None, Query(description="the window's last day (default: the last event's)")] = None,
    weeks: Annotated[int, Query(ge=1, le=104)] = 13,
    period: Annotated[str | None, Query(max_length=40)] = None,
    notice: Notice = None,
) -> HTMLResponse:
    """One analysis over ``weeks`` weeks ending with the day ``to`` (default: that of the last event received),
    as an admin last computed it; never computed here (a page stays a read: "Compute" posts)."""
    await signed_in(request, program)
    runtime = runtime_of(request)

    def read() -> tuple[dt.date, str, Any]:
        with runtime.db.read() as connection:
            record = programs.find(connection, program)
            last_day = to or _last_day(connection, record.id, dt.datetime.now(dt.UTC))
            params = _params(view, last_day, weeks, period)
            s = t.insight_snapshots.c
            kept = connection.execute(
                select(s.body, s.computed_at, s.computed_by).where(
                    s.program_id == record.id, s.view == view, s.params == params
                )
            ).first()
            return last_day, params, kept

    last_day, params, kept = await run_in_threadpool(read)
    start, _ = _bounds(last_day, weeks)
    found = dict(kept.body) if kept is not None else None
    if found is not None and view == "engagement":
        starts = {p["period"]: (period_dates(p["period"]) or (last_day,))[0] for p in found["periods"]}
        found["chart"] = engagement_by_period(found["periods"], starts)
    chosen = dict(parse_qsl(params))
    return page(
        "admin_insights.html",
        program=program,
        view=view,
        views=[
            (key, label, f"/admin/p/{program}/insights?" + urlencode({"view": key, "to": last_day, "weeks": weeks}))
            for key, label in VIEWS.items()
        ],
        start=start.date(),
        last_day=last_day,
        weeks=weeks,
        period=chosen.get("period"),
        found=found,
        computed=kept,
        shown=SHOWN,
        **page_context(request, notice),
    )


@router.post("/admin/p/{program}/insights")
async def compute(program: str, request: Request) -> Response:
    """Run one analysis over the window posted (seconds at 100,000 participants), keep its answer for the page,
    and go back to it."""
    principal, fields, runtime = await posted(request, program)
    view = fields.get("view", "")
    if view not in VIEWS:
        raise Invalid("no such analysis", errors=[FieldError("view", f"one of {', '.join(VIEWS)}")])
    try:
        last_day = dt.date.fromisoformat(fields.get("to", ""))
    except ValueError:
        raise Invalid("bad day", errors=[FieldError("to", "a day, YYYY-MM-DD")]) from None
    weeks = whole(fields, "weeks", low=1, high=104)
    period = fields.get("period") or None
    if period is not None and len(period) > 40:
        raise Invalid("bad period", errors=[FieldError("period", "at most 40 characters")])

    def run() -> str:
        with runtime.db.write() as connection:
            record = programs.find(connection, program)
            compiled = runtime.programs.compiled(connection, record)
            params = _params(view, last_day, weeks, period)
            chosen = dict(parse_qsl(params))
            body = _analysis(connection, record, compiled, view, *_bounds(last_day, weeks), chosen.get("period"))
            _keep(connection, record.id, view, params, body, principal.key_id)
            return params

    params = await run_in_threadpool(run)
    said = f"{VIEWS[view]} computed."
    return RedirectResponse(
        f"/admin/p/{program}/insights?" + urlencode({"view": view, **dict(parse_qsl(params)), "notice": said}),
        status_code=303,
    )


def _keep(connection: Connection, program_id: int, view: str, params: str, body: dict[str, Any], by: str) -> None:
    """The analysis in place of the one kept for the same window, and the program's KEPT newest only."""
    s = t.insight_snapshots.c
    mine = and_(s.program_id == program_id, s.view == view, s.params == params)
    connection.execute(t.insight_snapshots.delete().where(mine))
    now = dt.datetime.now(dt.UTC)
    row = {"program_id": program_id, "view": view, "params": params, "body": body, "computed_at": now}
    connection.execute(t.insight_snapshots.insert().values(row | {"computed_by": by}))
    oldest = connection.execute(
        select(s.computed_at).where(s.program_id == program_id).order_by(s.computed_at.desc()).offset(KEPT).limit(1)
    ).scalar_one_or_none()
    if oldest is not None:
        connection.execute(t.insight_snapshots.delete().where(s.program_id == program_id, s.computed_at <= oldest))
