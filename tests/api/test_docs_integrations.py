"""docs/integrations.md runs as written, against a real ``levelup serve`` and a local fake of HubSpot's API.

The rules are the ones the page states in "How this page is tested": its YAML blocks are added to
examples/acme-sales.yaml and applied, then every ``bash`` block runs in order, its answer checked
against the status and the JSON, XML or text block written under it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from bench.server import Server as Serving

from tests.api.test_docs_curl import FENCE, HEADING, STATUS, contains
from tests.conftest import EXAMPLES, ROOT
from tests.fake_hubspot import FakeHubSpot, serving

DOC = ROOT / "docs" / "integrations.md"
SECRETS = {
    "HUBSPOT_CLIENT_SECRET": "hubspot-client-secret-for-docs",
    "HUBSPOT_TOKEN": "pat-na1-docs",
    "PIPEDRIVE_WEBHOOK_AUTH": "levelup:pipedrive-password",
    "SALESFORCE_ORG_ID": "00D5g000000AbCdEAF",
    "SALESFORCE_RELAY_SECRET": "salesforce-relay-secret",
    "ZOHO_NOTIFY_TOKEN": "zoho-channel-token",
    "BILLING_SECRET": "billing-secret",
}

pytestmark = pytest.mark.skipif(
    shutil.which("curl") is None or shutil.which("openssl") is None, reason="curl and openssl are needed"
)


@dataclass(frozen=True)
class Example:
    section: str
    command: str
    status: int | None  # None: not a curl, its output is checked against text
    kind: str  # json | xml | text
    expected: str


def examples(text: str) -> list[Example]:
    blocks = list(FENCE.finditer(text))
    found = []
    for i, block in enumerate(blocks):
        if block.group(1) != "bash":
            continue
        assert i + 1 < len(blocks) and blocks[i + 1].group(1) in ("json", "xml", "text"), block.group(2)
        after = blocks[i + 1]
        statuses = STATUS.findall(text[block.end() : after.start()])
        assert len(statuses) == (0 if after.group(1) == "text" else 1), f"status line after:\n{block.group(2)}"
        section = HEADING.findall(text[: block.start()])[-1]
        status = int(statuses[0][0]) if statuses else None
        found.append(Example(section, block.group(2), status, after.group(1), after.group(2)))
    return found


def sources(text: str) -> list[dict[str, object]]:
    """Every source of the page's YAML blocks."""
    found: list[dict[str, object]] = []
    for block in FENCE.finditer(text):
        if block.group(1) == "yaml":
            found += yaml.safe_load(block.group(2))["sources"]
    return found


@dataclass(frozen=True)
class Server:
    base: str
    admin_key: str
    database: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("integrations")
    admin_key = secrets.token_urlsafe(16)
    database = f"sqlite:///{folder / 'levelup.db'}"
    fake = FakeHubSpot(SECRETS["HUBSPOT_TOKEN"], {"88": {"amount": "12000", "hubspot_owner_id": "17"}})
    with serving(fake) as hubspot_url:
        served = Serving(database, 1, admin_key, folder / "server.log", {**SECRETS, "HUBSPOT_API_URL": hubspot_url})
        try:
            served.wait_ready(30)
            yield Server(served.base_url, admin_key, database)
        finally:
            served.stop()


def test_the_page_covers_every_kind_and_its_refusals() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert {s["kind"] for s in sources(text)} == {"hubspot", "pipedrive", "salesforce", "zoho", "webhook"}
    found = examples(text)
    assert {e.section for e in found} >= {"HubSpot", "Pipedrive", "Salesforce", "Zoho CRM", "Any other system"}
    assert [e.status for e in found].count(401) >= 3
    assert any("levelup events import" in e.command and "--source" in e.command for e in found)


def test_every_example_answers_as_documented(server: Server, tmp_path: Path) -> None:
    text = DOC.read_text(encoding="utf-8")
    document = (EXAMPLES / "acme-sales.yaml").read_text() + yaml.safe_dump({"sources": sources(text)})
    headers = {"Authorization": f"Bearer {server.admin_key}", "Content-Type": "application/yaml"}
    applied = httpx.put(f"{server.base}/api/v1/programs/acme-sales", content=document, headers=headers)
    assert applied.status_code == 201, applied.text
    env = {
        **SECRETS,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # levelup, as installed
        "HOME": os.environ.get("HOME", "/tmp"),
        "LEVELUP": server.base,
        "LEVELUP_ADMIN_KEY": server.admin_key,
        "LEVELUP_DATABASE_URL": server.database,
    }
    for n, example in enumerate(examples(text), 1):
        where = f"example {n} ({example.section}):\n{example.command}"
        done = subprocess.run(
            ["bash", "-c", example.command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
        if example.status is None:
            output = " ".join((done.stdout + done.stderr).split())
            for line in example.expected.splitlines():
                assert " ".join(line.split()) in output, f"{where}\n{line!r} not in:\n{done.stdout}{done.stderr}"
            continue
        assert done.returncode == 0, f"{where}\nexit {done.returncode}: {done.stderr}"
        head, _, body = done.stdout.replace("\r\n", "\n").partition("\n\n")
        status = int(head.split()[1])
        assert status == example.status, f"{where}\nstatus {status}, documented {example.status}: {body}"
        if example.kind == "xml":
            assert re.sub(r"<\?xml[^>]*\?>", "", body).strip() == example.expected.strip(), f"{where}\n{body}"
        else:
            problems = contains(json.loads(body), json.loads(example.expected))
            assert not problems, f"{where}\n" + "\n".join(problems) + f"\nanswer: {body}"
