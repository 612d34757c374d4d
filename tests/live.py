"""Real sockets on the loopback for webhook and client tests: a webhook receiver that checks
signatures as docs/api.md tells receivers to, and the app served by uvicorn in a thread."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import uvicorn
from fastapi import FastAPI

TOLERANCE_SECONDS = 300


def verify(secret: str, header: str, body: bytes, now: float | None = None) -> bool:
    """What a receiver does with ``Levelup-Signature: t=…,v1=…``: recompute the HMAC of ``"<t>.<body>"``,
    compare in constant time, and refuse a timestamp out of the tolerance (a replay)."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    if "t" not in fields or "v1" not in fields or not fields["t"].isdigit():
        return False
    expected = hmac.new(secret.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256).hexdigest()
    fresh = abs((now or time.time()) - int(fields["t"])) <= TOLERANCE_SECONDS
    return fresh and hmac.compare_digest(expected, fields["v1"])


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default (5) refuses connections when many senders connect at once
    daemon_threads = True


@dataclass(frozen=True)
class Received:
    body: dict[str, Any]
    raw: bytes
    signature: str  # the Levelup-Signature header
    signed: bool  # the signature verified with the receiver's secret
    at: float


class Receiver:
    """A loopback HTTP server recording every POST; ``answer(body)`` gives each one's status code (it may
    block, to hold a delivery in flight). ``overlaps`` lists ids that arrived while a delivery of the same
    id was still in flight."""

    def __init__(self, secret: str, answer: Callable[[dict[str, Any]], int] = lambda _body: 200) -> None:
        self.secret = secret
        self.answer = answer
        self.received: list[Received] = []
        self.overlaps: list[str] = []
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                body = json.loads(raw)
                key = str(body.get("id", body.get("text", "")))
                signature = self.headers.get("Levelup-Signature", "")
                signed = verify(receiver.secret, signature, raw)
                with receiver._lock:
                    receiver.received.append(Received(body, raw, signature, signed, time.time()))
                    if key in receiver._in_flight:
                        receiver.overlaps.append(key)
                    receiver._in_flight.add(key)
                try:
                    status = receiver.answer(body)
                finally:
                    with receiver._lock:
                        receiver._in_flight.discard(key)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the sender is gone (a worker killed mid-delivery)
                    pass

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def ids(self) -> list[str]:
        with self._lock:
            return [r.body["id"] for r in self.received]

    def __enter__(self) -> Receiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """``app`` on a loopback port (uvicorn in a thread, lifespan included); yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
