"""The studio's insight page (issue 12, WEB.md "Charts: engagement once insight lands"): each analysis of
``levelup.insights`` (engagement with its chart, fairness, segments, churn, flags, experiments) over a window
that ends after the last event received, one analysis a request — each is an aggregate over the window's
events (seconds at 100,000 participants, docs/insights.md), so a page computes only the one looked at."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import Connection, func, select
from starlette.concurrency import run_in_threadpool

from levelup.insights import engagement, experiments, fairness, gaming, segments
from levelup.metrics.periods import local_date, period_dates, period_key
from levelup.programs import service as programs
from levelup.programs.compiled import CompiledProgram
from levelup.storage import tables as t
from levelup.web.admin import page_context, runtime_of, signed_in
from levelup.web.charts import engagement_by_period
from levelup.web.render import PageRoute, page

router = APIRouter(route_class=PageRoute, include_in_schema=False)
View = Literal["engagement", "fairness", "segments", "churn", "flags", "experiments"]
VIEWS: tuple[tuple[str, str], ...] = (
    ("engagement", "Engagement"),
    ("fairness", "Fairness"),
    ("segments", "Segments"),
    ("churn", "Churn risk"),
    ("flags", "Flags"),
    ("experiments", "Experiments"),
)
RECENT = 1000  # events received last, whose latest time ends the default window
SHOWN = 20  # rows of a list (churn, flags, a segment's members): the API and CLI export them all


def _window_end(connection: Connection, program_id: int, now: dt.datetime) -> dt.datetime:
    """Midnight UTC after the latest event time among the last RECENT received (an index read, not a scan of
    the log: a back-dated straggler does not pull the window back), or ``now`` when there is none: the demo's
    2017 data shows its own weeks, a live program its latest ones."""
    e = t.events.c
    recent = select(e.occurred_at).where(e.program_id == program_id).order_by(e.seq.desc()).limit(RECENT).subquery()
    last = connection.execute(select(func.max(recent.c.occurred_at))).scalar_one_or_none()
    if last is None or last > now:
        return now
    return dt.datetime.combine(last.date() + dt.timedelta(days=1), dt.time(), dt.UTC)


def _analysis(
    connection: Connection,
    record: programs.ProgramRecord,
    compiled: CompiledProgram,
    view: str,
    start: dt.datetime,
    end: dt.datetime,
    period: str | None,
) -> dict[str, Any]:
    """The one analysis the page shows, as the API answers it (plus its chart)."""
    if view == "engagement":
        body = engagement.engagement(connection, record, compiled, start, end, "week")
        starts = {p["period"]: (period_dates(p["period"]) or (end.date(),))[0] for p in body["periods"]}
        return body | {"chart": engagement_by_period(body["periods"], starts)}
    if view == "fairness":
        metric = segments.default_metric_or_none(compiled)
        currency = None if metric else compiled.doc.currencies[0].key
        month = period or period_key("month", local_date(end - dt.timedelta(microseconds=1), compiled.timezone))
        return fairness.fairness(connection, record, compiled, period=month, metric=metric, currency=currency)
    if view == "segments":
        if segments.default_metric_or_none(compiled) is None:
            return {"sentence": "no sum metric to segment by", "segments": []}
        return segments.rfm(connection, record, compiled, as_of=end, limit=SHOWN)
    if view == "churn":
        return segments.churn(connection, record, as_of=end, limit=SHOWN)
    if view == "flags":
        return gaming.flags(connection, record, compiled, start=start, end=end, limit=SHOWN)
    return experiments.experiments(connection, record, compiled, start, end)


@router.get("/admin/p/{program}/insights", response_class=HTMLResponse)
async def insights_page(
    program: str,
    request: Request,
    view: View = "engagement",
    to: Annotated[dt.date | None, Query(description="the window's last day (default: the last event's)")] = None,
    weeks: Annotated[int, Query(ge=1, le=104)] = 13,
    period: Annotated[str | None, Query(max_length=40)] = None,
) -> HTMLResponse:
    """One insight over ``weeks`` weeks ending with the day ``to`` (default: that of the last event received)."""
    await signed_in(request, program)
    runtime = runtime_of(request)

    def read() -> tuple[dt.datetime, dt.datetime, dict[str, Any]]:
        with runtime.db.read() as connection:
            record = programs.find(connection, program)
            compiled = runtime.programs.compiled(connection, record)
            now = dt.datetime.now(dt.UTC)
            end = (
                dt.datetime.combine(to + dt.timedelta(days=1), dt.time(), dt.UTC)
                if to is not None
                else _window_end(connection, record.id, now)
            )
            start = end - dt.timedelta(weeks=weeks)
            return start, end, _analysis(connection, record, compiled, view, start, end, period)

    start, end, found = await run_in_threadpool(read)
    last_day = (end - dt.timedelta(days=1)).date()
    return page(
        "admin_insights.html",
        program=program,
        view=view,
        views=[
            (key, label, f"/admin/p/{program}/insights?" + urlencode({"view": key, "to": last_day, "weeks": weeks}))
            for key, label in VIEWS
        ],
        start=start.date(),
        last_day=last_day,
        weeks=weeks,
        found=found,
        shown=SHOWN,
        **page_context(request, None),
    )
