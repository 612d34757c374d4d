"""The app factory uvicorn loads in each worker process (``levelup serve --workers N``)."""

from __future__ import annotations

import asyncio
import os
import socket

from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from levelup.api.app import create_app
from levelup.observability import logs
from levelup.runtime import Runtime
from levelup.webhooks import delivery


def app() -> FastAPI:
    """One app per worker, on the database in ``LEVELUP_DATABASE_URL`` (schema already migrated).

    Every worker runs the period-closing job (``LEVELUP_CLOSE_EVERY`` seconds, default 60; 0 turns it
    off): closing is idempotent across workers. Every worker also delivers webhooks (``LEVELUP_DELIVER=0``
    turns it off, e.g. when ``levelup deliver`` runs apart): each notification is claimed by one at a time.
    """
    logs.configure()
    every = float(os.environ.get("LEVELUP_CLOSE_EVERY", "60"))
    deliver = delivery.Settings.from_env() if os.environ.get("LEVELUP_DELIVER", "1") != "0" else None
    return create_app(Runtime.from_url(migrate=False), close_every=every or None, deliver=deliver)


class NoDelayH11Protocol(H11Protocol):
    """HTTP/1.1 with ``TCP_NODELAY`` on every connection.

    With several workers uvicorn binds its socket with ``proto=0``, so asyncio does not
    set ``TCP_NODELAY`` and small responses wait ~40 ms for delayed ACKs (uvicorn #3149).
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
