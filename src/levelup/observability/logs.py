"""Log lines as JSON or text (``LEVELUP_LOG_FORMAT=json|text``), each with the id of the work it is part of.

The id lives in a context variable: set per HTTP request by :mod:`levelup.observability.http`, per
run of the periodic jobs by the server's loop. Work handed to threads with ``run_in_threadpool``
(or :func:`contextvars.copy_context`) keeps it, so a job's or a request's lines can be told apart.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import os
import secrets
import sys
from typing import Any, TextIO

import orjson

FORMAT_ENV = "LEVELUP_LOG_FORMAT"
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("levelup_request_id", default=None)
# attributes every LogRecord has: anything else was passed with ``extra=`` and goes into the JSON line
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}


def new_id() -> str:
    return secrets.token_hex(8)


class _WithRequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request id, the ``extra=`` fields, the trace."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            line["request_id"] = request_id
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


TEXT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def configure(log_format: str | None = None, stream: TextIO | None = None) -> None:
    """Send the ``levelup`` loggers' INFO and above to ``stream`` (default stderr), as JSON or text (default:
    the environment's ``LEVELUP_LOG_FORMAT``, else text). A second call replaces the first one's handler."""
    chosen = log_format or os.environ.get(FORMAT_ENV, "text")
    if chosen not in ("json", "text"):
        raise ValueError(f"{FORMAT_ENV} must be json or text, not {chosen!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if chosen == "json" else logging.Formatter(TEXT))
    handler.addFilter(_WithRequestId())
    handler.set_name("levelup-observability")
    logger = logging.getLogger("levelup")
    for old in [h for h in logger.handlers if h.get_name() == "levelup-observability"]:
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
