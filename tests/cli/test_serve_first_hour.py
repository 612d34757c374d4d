"""``levelup serve`` in a new user's first hour: it says when no admin key exists and how to make one,
and a busy port is an error before any URL is printed."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import uvicorn
from typer.testing import CliRunner

from levelup.cli.main import app as cli


@pytest.fixture
def no_uvicorn(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    started: list[dict[str, object]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: started.append(kwargs))
    monkeypatch.delenv("LEVELUP_ADMIN_KEY", raising=False)
    return started


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_serve_warns_without_an_admin_key_until_one_is_made(tmp_path: Path, no_uvicorn: list[object]) -> None:
    database = f"sqlite:///{tmp_path / 'levelup.db'}"
    port = str(free_port())
    runner = CliRunner()
    result = runner.invoke(cli, ["serve", "--port", port, "--database", database])
    assert result.exit_code == 0, result.output
    assert "no admin key" in result.output and "levelup keys create --role admin --program '*'" in result.output
    made = runner.invoke(cli, ["keys", "create", "--role", "admin", "--program", "*", "--database", database])
    assert made.exit_code == 0, made.output
    result = runner.invoke(cli, ["serve", "--port", port, "--database", database])
    assert result.exit_code == 0 and "no admin key" not in result.output
    assert len(no_uvicorn) == 2


def test_serve_on_a_busy_port_fails_before_printing_a_url(tmp_path: Path, no_uvicorn: list[object]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        result = CliRunner().invoke(cli, ["serve", "--port", port, "--database", f"sqlite:///{tmp_path / 'l.db'}"])
    assert result.exit_code == 1
    assert "cannot listen" in result.output and "http://" not in result.output
    assert no_uvicorn == []
