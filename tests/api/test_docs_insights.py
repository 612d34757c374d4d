"""docs/insights.md runs as written: every curl example against a real ``levelup serve``, in the page's order,
by the rules of docs/loyalty.md's test (status under each block, the JSON shown contained in the answer)."""

from __future__ import annotations

import json
import os
import subprocess

from tests.api.test_docs_curl import Server, contains, examples, parse_response, server  # noqa: F401
from tests.conftest import ROOT

DOC = ROOT / "docs" / "insights.md"


def test_every_insight_example_answers_as_documented(server: Server) -> None:  # noqa: F811
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LEVELUP": server.base,
        "LEVELUP_ADMIN_KEY": server.admin_key,
    }
    found = examples(DOC.read_text(encoding="utf-8"))
    assert len(found) >= 8 and any("/simulate" in e.command for e in found)
    for shown in ("/insights/possible", "/insights/flags", "/clawback", "/ledger"):  # the anti-gaming round trip
        assert any(shown in e.command for e in found), shown
    for n, example in enumerate(found, 1):
        where = f"example {n} ({example.section}):\n{example.command}"
        done = subprocess.run(
            ["bash", "-c", example.command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"{where}\nexit {done.returncode}: {done.stderr}"
        status, body = parse_response(done.stdout)
        assert status == example.status, f"{where}\nstatus {status}, documented {example.status}: {body}"
        problems = contains(body, example.expected)
        assert not problems, f"{where}\n" + "\n".join(problems) + f"\nanswer: {json.dumps(body)}"
