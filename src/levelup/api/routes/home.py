"""The first page a new user opens: what this server is, where its API is described, and how to start.

Swagger UI is served from the ``swagger-ui-bundle`` package (no CDN: the server may have no internet).
"""

from __future__ import annotations

import html

import swagger_ui_bundle
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from levelup import __version__

router = APIRouter(include_in_schema=False)
ASSETS = "/docs/assets"

LANDING = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Levelup</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:3rem auto;padding:0 1rem}}
code,pre{{background:#f4f4f4;padding:.1rem .3rem}}pre{{padding:.6rem;overflow-x:auto}}</style></head>
<body>
<h1>Levelup {version}</h1>
<p>A gamification engine for CRM: points, levels, badges, streaks, challenges, leaderboards and
loyalty rewards, driven by the events your CRM sends.</p>
<ul>
<li><a href="/docs">/docs</a>: the API, to read and to try (Swagger UI)</li>
<li><a href="/openapi.json">/openapi.json</a>: the same as an OpenAPI document</li>
<li><a href="/api/v1/schema/program">/api/v1/schema/program</a>: the JSON Schema of a program document</li>
<li><a href="/healthz">/healthz</a>: liveness</li>
</ul>
<h2>Start</h2>
<p>Every call under <code>/api/v1</code> needs <code>Authorization: Bearer &lt;key&gt;</code>. Start the server
with <code>LEVELUP_ADMIN_KEY</code> set, or make a key with <code>levelup keys create --role admin</code>; then:</p>
<pre>curl -H "Authorization: Bearer $KEY" {base}api/v1/programs</pre>
</body></html>
"""


@router.get("/", response_class=HTMLResponse)
def landing(request: Request) -> HTMLResponse:
    return HTMLResponse(LANDING.format(version=html.escape(__version__), base=html.escape(str(request.base_url))))


@router.get("/docs", response_class=HTMLResponse)
def docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Levelup API",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
    )


def mount(app: FastAPI) -> None:
    """The landing page, /docs and the Swagger UI assets it loads."""
    app.include_router(router)
    app.mount(ASSETS, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger-ui")
