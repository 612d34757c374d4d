"""``levelup serve`` as a child process, for the benchmarks and the tests that need a real server.

Imported as ``server`` by the bench scripts (run from ``bench/``) and as ``bench.server`` by tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def levelup_command() -> list[str]:
    """The ``levelup`` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("levelup")
    if script.exists():
        return [str(script)]
    found = shutil.which("levelup")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from levelup.cli.main import app; sys.argv[0] = 'levelup'; app()"]


class Server:
    """A ``levelup serve`` child process in a session of its own (its workers included)."""

    def __init__(
        self,
        database: str,
        workers: int,
        admin_key: str,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        *,
        command: Sequence[str] | None = None,
    ) -> None:
        """``command``: another server to start instead (``--host 127.0.0.1 --port <free>`` are appended)."""
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        if command is None:
            command = [*levelup_command(), "serve", "--workers", str(workers), "--database", database]
        command = [*command, "--host", "127.0.0.1", "--port", str(self.port)]
        environment = {**os.environ, **(env or {}), "LEVELUP_ADMIN_KEY": admin_key, "LEVELUP_DATABASE_URL": database}
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=environment, start_new_session=True
        )

    def wait_ready(self, timeout: float) -> float:
        """Poll /healthz until it answers 200; the seconds it took."""
        started = time.perf_counter()
        deadline = started + timeout
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while time.perf_counter() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"levelup serve exited with {self.process.returncode}:\n{self.log_tail()}")
                try:
                    if client.get("/healthz").status_code == 200:
                        return time.perf_counter() - started
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise RuntimeError(f"levelup serve not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        """SIGTERM to the server's process group, SIGKILL if it lingers."""
        if self.process.poll() is None:
            for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self.process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.process.wait(grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self._log.close()
