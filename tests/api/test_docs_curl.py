"""docs/loyalty.md runs as written: every curl example against a real ``levelup serve``.

The page is a customer's journey, so its examples depend on each other and run in the
page's order, in one test. Each ``bash`` block is run with bash (``$LEVELUP``, ``$KEY`` and
``$LEVELUP_ADMIN_KEY`` in its environment, the repository root as working directory); the
status line curl prints (``-i``) must be the status written under the block, and the body
must contain the JSON block that follows (see :func:`contains`). The rules are the ones the
page states in "How this page is tested".
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from bench.server import Server as Serving

from tests.conftest import ROOT

DOC = ROOT / "docs" / "loyalty.md"
ANY = "…"  # a value that changes from run to run
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
STATUS = re.compile(r"^`(\d{3})( [A-Za-z ]+)?`$", re.MULTILINE)
HEADING = re.compile(r"^#+ (.+)$", re.MULTILINE)

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


@dataclass(frozen=True)
class Example:
    section: str
    command: str
    status: int
    expected: Any


def examples(text: str) -> list[Example]:
    """Every bash block with the status under it and the JSON block after it; a malformed page fails here."""
    blocks = list(FENCE.finditer(text))
    found = []
    for i, block in enumerate(blocks):
        if block.group(1) != "bash":
            continue
        assert i + 1 < len(blocks) and blocks[i + 1].group(1) == "json", f"no json block after:\n{block.group(2)}"
        between = text[block.end() : blocks[i + 1].start()]
        statuses = STATUS.findall(between)
        assert len(statuses) == 1, f"one `NNN Reason` status line expected after:\n{block.group(2)}"
        headings = HEADING.findall(text[: block.start()])
        found.append(
            Example(
                headings[-1] if headings else "",
                block.group(2),
                int(statuses[0][0]),
                json.loads(blocks[i + 1].group(2)),
            )
        )
    return found


def contains(actual: Any, expected: Any, path: str = "$") -> list[str]:
    """Where ``actual`` does not contain ``expected`` (empty: it does).

    Objects: every key shown, with a matching value. Lists: the items shown, in that order,
    among the actual items. ``{}`` and ``[]`` mean empty. ``"…"`` matches any value.
    """
    if expected == ANY:
        return []
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected an object, got {actual!r}"]
        if not expected and actual:
            return [f"{path}: expected {{}}, got {actual!r}"]
        problems = []
        for key, value in expected.items():
            if key not in actual:
                problems.append(f"{path}.{key}: missing")
            else:
                problems += contains(actual[key], value, f"{path}.{key}")
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{path}: expected a list, got {actual!r}"]
        if not expected and actual:
            return [f"{path}: expected [], got {actual!r}"]
        at = 0
        for n, item in enumerate(expected):
            while at < len(actual) and contains(actual[at], item, f"{path}[{at}]"):
                at += 1
            if at == len(actual):
                return [f"{path}: item {n} shown, {item!r}, is not in {actual!r} (in order)"]
            at += 1
        return []
    same = actual == expected and isinstance(actual, bool) == isinstance(expected, bool)  # true is not 1
    return [] if same else [f"{path}: expected {expected!r}, got {actual!r}"]


def parse_response(output: str) -> tuple[int, Any]:
    """Status and JSON body of ``curl -i`` output (informational 1xx responses skipped)."""
    rest = output.replace("\r\n", "\n")
    while True:
        head, _, rest = rest.partition("\n\n")
        status = int(head.split()[1])
        if status >= 200:
            return status, json.loads(rest) if rest.strip() else None


# --------------------------------------------------------------------------- the server


@dataclass(frozen=True)
class Server:
    base: str
    admin_key: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``levelup serve`` on a free loopback port over a fresh SQLite file, stopped (with its group) after."""
    folder = tmp_path_factory.mktemp("docs")
    admin_key = secrets.token_urlsafe(16)
    served = Serving(f"sqlite:///{folder / 'levelup.db'}", 1, admin_key, folder / "server.log")
    try:
        served.wait_ready(30)
        yield Server(served.base_url, admin_key)
    finally:
        served.stop()


# --------------------------------------------------------------------------- the checks


def test_the_page_walks_the_whole_journey() -> None:
    found = examples(DOC.read_text(encoding="utf-8"))
    commands = "\n".join(e.command for e in found)
    statuses = [e.status for e in found]
    assert all(e.command.lstrip().startswith("curl -si") for e in found)
    assert "Content-Type: application/yaml" in commands  # the program applied as YAML
    assert "/participants/alice/expiring" in commands
    assert "/rewards?participant=alice" in commands
    assert "/redemptions/1/cancel" in commands
    assert '"reverses": "order-1001"}' in commands and '"portion": 0.5' in commands
    assert "/reports/liability" in commands
    redeem = [e for e in found if '"reward": "mug"' in e.command]
    assert [e.status for e in redeem] == [201, 200]  # a redemption, then its retry
    assert {e.expected.get("code") for e in found if e.status == 409} == {"insufficient_balance"}
    assert statuses.count(201) >= 3 and len(found) >= 18


def test_every_example_answers_as_documented(server: Server) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LEVELUP": server.base,
        "LEVELUP_ADMIN_KEY": server.admin_key,
        "KEY": "",
    }
    for n, example in enumerate(examples(DOC.read_text(encoding="utf-8")), 1):
        where = f"example {n} ({example.section}):\n{example.command}"
        done = subprocess.run(
            ["bash", "-c", example.command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, f"{where}\nexit {done.returncode}: {done.stderr}"
        status, body = parse_response(done.stdout)
        assert status == example.status, f"{where}\nstatus {status}, documented {example.status}: {body}"
        problems = contains(body, example.expected)
        assert not problems, f"{where}\n" + "\n".join(problems) + f"\nanswer: {json.dumps(body)}"
        if isinstance(body, dict) and "key" in body and "role" in body:
            env["KEY"] = body["key"]  # the page: keep the secret as $KEY
