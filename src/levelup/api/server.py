"""The app factory uvicorn loads in each worker process (``levelup serve --workers N``), the HTTP/1.1
protocol it serves with, and the connection settings ``levelup serve`` gives uvicorn (docs/deploy.md,
Slow clients)."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

import h11
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from levelup.api.app import create_app
from levelup.api.deps import seconds_setting
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


def _count(name: str, default: int | None) -> int | None:
    value = os.environ.get(name)
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a positive whole number, not {value!r}")
    return int(value)


def head_timeout() -> float:
    """Seconds a connection has to send a whole request head (``LEVELUP_HEADER_TIMEOUT``, default 10)."""
    return seconds_setting("LEVELUP_HEADER_TIMEOUT", 10)


def uvicorn_settings() -> dict[str, Any]:
    """What ``levelup serve`` gives uvicorn besides host, port and workers, from the environment: the keep-alive
    time-out, the largest request head, the connections served at once (past it: 503) and the listen backlog."""
    return {
        "timeout_keep_alive": seconds_setting("LEVELUP_KEEP_ALIVE", 5),
        "h11_max_incomplete_event_size": _count("LEVELUP_MAX_HEADER_BYTES", 16 * 1024),  # h11's own default
        "limit_concurrency": _count("LEVELUP_LIMIT_CONCURRENCY", None),
        "backlog": _count("LEVELUP_BACKLOG", 2048),
    }


class NoDelayH11Protocol(H11Protocol):
    """HTTP/1.1 with ``TCP_NODELAY`` on every connection, and a deadline for each request head.

    With several workers uvicorn binds its socket with ``proto=0``, so asyncio does not
    set ``TCP_NODELAY`` and small responses wait ~40 ms for delayed ACKs (uvicorn #3149).

    Uvicorn times out idle keep-alive connections only, and every byte received restarts that clock: a
    client sending a header a byte at a time holds its connection forever (slowloris). Here a connection
    that has not sent a whole request head :func:`head_timeout` seconds after it opened (or after its last
    response) is closed, however much it trickled meanwhile. (A slow body is bounded by
    :class:`levelup.api.deps.BoundedRequests`.)
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._await_head()

    def _await_head(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
        self._head_deadline = self.loop.call_later(head_timeout(), self._head_too_slow)

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()  # nothing was asked, so nothing is owed an answer

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head_deadline is not None and self.conn.their_state is not h11.IDLE:  # the head is in
            self._head_deadline.cancel()
            self._head_deadline = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_head()  # the next request on this connection has as long

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None
        super().connection_lost(exc)
