"""Slow clients cannot hold ``levelup serve`` (issue 14, part 5): a connection that trickles its request head
a byte at a time, or sends nothing, is closed once ``LEVELUP_HEADER_TIMEOUT`` has passed; a body trickled
past ``LEVELUP_BODY_TIMEOUT`` gets 408 and the connection closed; other clients are served meanwhile."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from bench.server import Server

from levelup.api.server import uvicorn_settings
from tests.conftest import ADMIN_KEY, fresh_database

HEAD_SECONDS = 1.0
BODY_SECONDS = 1.5


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("slow")
    env = {"LEVELUP_HEADER_TIMEOUT": str(HEAD_SECONDS), "LEVELUP_BODY_TIMEOUT": str(BODY_SECONDS)}
    with contextmanager(fresh_database)("sqlite", folder) as database:
        server = Server(database, 1, ADMIN_KEY, folder / "server.log", env | {"LEVELUP_CLOSE_EVERY": "0"})
        try:
            server.wait_ready(90)
            yield server
        finally:
            server.stop()


def trickle(port: int, data: bytes, every: float, stop: threading.Event) -> tuple[float, bytes]:
    """Send ``data`` a byte every ``every`` seconds (then keep waiting) until the server closes the connection
    or ``stop`` is set; the seconds the connection lived and what the server answered."""
    started = time.monotonic()
    answer = b""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(every)
        sent = 0
        while not stop.is_set():
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                chunk = None
            except OSError:  # reset by the server
                break
            if chunk == b"":
                break
            answer += chunk or b""
            if sent < len(data):
                try:
                    sock.sendall(data[sent : sent + 1])
                except OSError:
                    break
                sent += 1
    return time.monotonic() - started, answer


def in_thread(port: int, data: bytes, every: float, stop: threading.Event) -> list[tuple[float, bytes]]:
    out: list[tuple[float, bytes]] = []
    threading.Thread(target=lambda: out.append(trickle(port, data, every, stop)), daemon=True).start()
    return out


def test_a_trickled_head_or_an_idle_connection_is_dropped_and_others_are_served(served: Server) -> None:
    stop = threading.Event()
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200 + b"\r\n\r\n"
    slow = [in_thread(served.port, head, 0.1, stop) for _ in range(3)]  # would take 24 s to finish
    idle = in_thread(served.port, b"", 0.1, stop)
    try:
        with httpx.Client(base_url=served.base_url, timeout=5) as client:
            started = time.monotonic()
            while time.monotonic() - started < HEAD_SECONDS * 2.5:
                assert client.get("/healthz").status_code == 200  # served all along
                time.sleep(0.1)
        time.sleep(0.5)
        for seen in (*slow, idle):
            assert seen, "still connected: the server let a slow client hold it"
            lived, answer = seen[0]
            assert HEAD_SECONDS * 0.9 <= lived < HEAD_SECONDS * 2.5 + 1, lived
            assert answer == b""  # closed, not answered: nothing whole was asked
    finally:
        stop.set()


def test_a_trickled_body_gets_408_and_the_connection_closed(served: Server) -> None:
    head = (
        b"POST /api/v1/programs/acme-sales/events HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {ADMIN_KEY}\r\nContent-Type: application/json\r\n".encode()
        + b"Content-Length: 1000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", served.port)) as sock:
        sock.sendall(head)
        started = time.monotonic()
        sock.settimeout(0.1)
        answer = b""
        while time.monotonic() - started < BODY_SECONDS + 3:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                sock.sendall(b"{")  # a byte of body every 0.1 s: never the 1,000 promised in time
                continue
            if not chunk:
                break
            answer += chunk
        lived = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"connection: close" in answer.lower() and b'"code":"request_timeout"' in answer
    assert BODY_SECONDS * 0.9 <= lived < BODY_SECONDS + 3
    assert httpx.get(f"{served.base_url}/healthz", timeout=5).status_code == 200


def test_serve_passes_its_connection_settings_to_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    assert uvicorn_settings() == {
        "timeout_keep_alive": 5.0,
        "h11_max_incomplete_event_size": 16 * 1024,
        "limit_concurrency": None,
        "backlog": 2048,
    }
    monkeypatch.setenv("LEVELUP_KEEP_ALIVE", "2.5")
    monkeypatch.setenv("LEVELUP_LIMIT_CONCURRENCY", "500")
    assert uvicorn_settings()["timeout_keep_alive"] == 2.5 and uvicorn_settings()["limit_concurrency"] == 500
    for name, value in (("LEVELUP_KEEP_ALIVE", "0"), ("LEVELUP_BACKLOG", "-1"), ("LEVELUP_MAX_HEADER_BYTES", "x")):
        monkeypatch.setenv(name, value)
        with pytest.raises(ValueError, match=name):
            uvicorn_settings()
        monkeypatch.delenv(name)
