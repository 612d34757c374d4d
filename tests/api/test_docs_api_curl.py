"""docs/api.md runs as written: every ``bash`` block, in the page's order, against a real ``levelup serve``.

The first block is the page's set-up (start a server, define ``L``, ``H`` and ``J``); the test
starts its own server instead and gives the other blocks the same variables for it. Every curl
of the page must answer 2xx (curl reports each status on stderr), and every block must succeed
under ``set -euo pipefail``: an undefined variable, a missing header or a wrong path fails here.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
from bench.server import Server

from tests.conftest import ROOT

DOC = ROOT / "docs" / "api.md"
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
# every curl's status to stderr, one a line, the body untouched on stdout (pipes in the page read it)
CURL = "curl() { command curl -w '%{stderr}curl-status %{http_code}\\n' \"$@\"; }\n"

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def bash_blocks() -> list[str]:
    return [m.group(2) for m in FENCE.finditer(DOC.read_text()) if m.group(1) == "bash"]


def test_the_set_up_block_defines_every_variable_the_page_uses() -> None:
    first, *rest = bash_blocks()
    defined = set(re.findall(r"\b([A-Z_]+)=", first))
    assert {"LEVELUP_ADMIN_KEY", "L", "H", "J"} <= defined, defined
    used = {name for block in rest for name in re.findall(r"\$\{?([A-Z_]+)", block)}
    assigned = {name for block in rest for name in re.findall(r"^\s*([A-Z_]+)=", block, re.MULTILINE)}
    assert used <= defined | assigned, f"used but never defined: {sorted(used - defined - assigned)}"


def test_every_curl_of_the_page_answers_2xx(tmp_path: Path) -> None:
    admin_key = secrets.token_urlsafe(16)
    database = f"sqlite:///{tmp_path / 'levelup.db'}"
    server = Server(database, 1, admin_key, tmp_path / "server.log", env={"LEVELUP_DELIVER": "0"})
    try:
        server.wait_ready(30)
        env = {
            **os.environ,
            "LEVELUP_ADMIN_KEY": admin_key,
            "LEVELUP_DATABASE_URL": database,
            "L": f"{server.base_url}/api/v1",
            "H": f"Authorization: Bearer {admin_key}",
            "J": "Content-Type: application/json",
        }
        for block in bash_blocks()[1:]:
            script = "set -euo pipefail\n" + CURL + block
            run = subprocess.run(
                ["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
            )
            statuses = [int(s) for s in re.findall(r"^curl-status (\d+)$", run.stderr, re.MULTILINE)]
            assert run.returncode == 0, f"{block}\nexit {run.returncode}\n{run.stderr}\n{run.stdout[-2000:]}"
            calls = len(re.findall(r"\bcurl -s", block))
            assert len(statuses) == calls > 0, f"{block}\n{calls} curls, statuses {statuses}"
            assert all(200 <= s < 300 for s in statuses), f"{block}\nstatuses {statuses}\n{run.stdout[-3000:]}"
    finally:
        server.stop()
