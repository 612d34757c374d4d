"""Source deliveries per second: HubSpot arrays of 100 items, with and without ``fetch``, next to their floor.

Starts a fake of HubSpot's CRM objects API (``tests/fake_hubspot.py``: every deal exists) and
``levelup serve`` on 127.0.0.1 (a temporary SQLite file unless ``--database`` says otherwise), applies
``examples/acme-sales.yaml`` with two HubSpot sources (untimed), then measures, one keep-alive
``httpx.Client`` sending one request at a time:

(a) the floor: the events the deliveries make, POSTed as plain batches of 100 to ``/events``;
(b) ``hubspot``: signed deliveries of 100 ``deal.propertyChange`` items, the owner and amount in
    the mapping (no ``fetch``);
(c) ``hubspot-fetch``: the same deliveries, the owner and amount read by one batch read of the fake
    API a delivery.

Each phase sends ``--deliveries`` requests (new deals each time: every event is accepted), bounded by
``--max-seconds``, and prints deliveries/s, events/s, latency p50/p99 and its ratio to the floor.
Figures are printed, never asserted; the clients and the fake share the machine with the server.

    python bench/sources.py
    python bench/sources.py --deliveries 100 --database postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import os
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

from server import Server

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = "acme-sales"
ITEMS = 100
CLIENT_SECRET = "bench-client-secret"
TOKEN = "pat-bench"
WON_AT_MS = 1_763_651_045_000
SOURCES = [
    {
        "key": "hubspot",
        "kind": "hubspot",
        "secret": {"env": "HUBSPOT_CLIENT_SECRET"},
        "events": [
            {
                "when": 'item.propertyName == "dealstage" && item.propertyValue == "closedwon"',
                "type": "deal.won",
                "id": '"hubspot-deal-" + string(item.objectId) + "-won"',
                "participant": '"rep-" + string(int(item.objectId) % 50)',
                "occurred_at": "item.occurredAt",
                "data": {"amount": "5000.0", "deal_id": "string(item.objectId)"},
            }
        ],
    },
    {
        "key": "hubspot-fetch",
        "kind": "hubspot",
        "secret": {"env": "HUBSPOT_CLIENT_SECRET"},
        "fetch": {
            "object": "deal",
            "properties": ["amount", "hubspot_owner_id"],
            "token": {"env": "HUBSPOT_TOKEN"},
            "base_url": {"env": "HUBSPOT_API_URL"},
        },
        "events": [
            {
                "when": 'item.propertyName == "dealstage" && item.propertyValue == "closedwon"',
                "type": "deal.won",
                "id": '"hubspot-deal-" + string(item.objectId) + "-won"',
                "participant": '"rep-" + object.properties.hubspot_owner_id',
                "occurred_at": "item.occurredAt",
                "data": {"amount": "double(object.properties.amount)", "deal_id": "string(item.objectId)"},
            }
        ],
    },
]


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min) {five:.2f} (5 min)"


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


@dataclass
class Phase:
    name: str
    requests: int = 0
    events: int = 0
    wall_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def line(self, floor: Phase | None) -> str:
        rate = self.requests / self.wall_s if self.wall_s else 0.0
        ratio = f", {rate / (floor.requests / floor.wall_s):.2f} x the floor" if floor and floor.wall_s else ""
        return (
            f"  {self.name:<50} {rate:7.1f} requests/s {self.events / self.wall_s if self.wall_s else 0:8,.0f} events/s"
            f"  p50 {percentile(self.latencies_ms, 50):6.1f} ms  p99 {percentile(self.latencies_ms, 99):6.1f} ms{ratio}"
        )


def items(first_deal: int) -> list[dict[str, Any]]:
    return [
        {
            "eventId": deal,
            "subscriptionId": 92894,
            "portalId": 5799819,
            "appId": 186886,
            "occurredAt": WON_AT_MS,
            "subscriptionType": "deal.propertyChange",
            "attemptNumber": 0,
            "objectId": deal,
            "changeSource": "CRM_UI",
            "propertyName": "dealstage",
            "propertyValue": "closedwon",
        }
        for deal in range(first_deal, first_deal + ITEMS)
    ]


def as_events(delivery: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events the sources make of ``delivery`` (both give the same), for the floor."""
    return [
        {
            "id": f"hubspot-deal-{i['objectId']}-won",
            "type": "deal.won",
            "participant": f"rep-{i['objectId'] % 50}",
            "occurred_at": "2025-11-20T15:04:05+00:00",
            "data": {"amount": 5000.0, "deal_id": str(i["objectId"])},
        }
        for i in delivery
    ]


def run_phase(phase: Phase, count: int, max_seconds: float, send: Callable[[int], httpx.Response]) -> None:
    started = time.perf_counter()
    for n in range(count):
        sent = time.perf_counter()
        response = send(n)
        phase.latencies_ms.append((time.perf_counter() - sent) * 1000)
        phase.requests += 1
        if response.status_code != 200:
            phase.statuses[f"http {response.status_code}"] += 1
            if len(phase.failures) < 3:
                phase.failures.append(response.text[:300])
        else:
            for result in response.json()["results"]:
                phase.statuses[result["status"]] += 1
                phase.events += 1
        if time.perf_counter() - started > max_seconds:
            break
    phase.wall_s = time.perf_counter() - started


def wait_for_fake(fake: Server) -> None:
    """The fake has no health check: a batch read answering is its readiness."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            read = {"properties": ["amount"], "inputs": [{"id": "1"}]}
            auth = {"Authorization": f"Bearer {TOKEN}"}
            if (
                httpx.post(f"{fake.base_url}/crm/v3/objects/deals/batch/read", json=read, headers=auth).status_code
                == 200
            ):
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"the fake HubSpot API did not start:\n{fake.log_tail()}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=40, help="requests a phase (default 40)")
    parser.add_argument("--database", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="bound on each phase")
    args = parser.parse_args(argv)
    print(f"$ python bench/sources.py {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
    with tempfile.TemporaryDirectory(prefix="levelup-sources-bench-") as directory, ExitStack() as stack:
        folder = Path(directory)
        database = args.database or f"sqlite:///{folder / 'levelup.db'}"
        print(
            f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs (clients and fake on the same machine), {load()}"
        )
        fake = Server(
            database,
            1,
            "unused",
            folder / "fake.log",
            {"FAKE_HUBSPOT_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)},
            command=[
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "tests.fake_hubspot:bench_app",
                "--log-level",
                "warning",
            ],
        )
        stack.callback(fake.stop)
        wait_for_fake(fake)
        admin_key = secrets.token_urlsafe(24)
        env = {"HUBSPOT_CLIENT_SECRET": CLIENT_SECRET, "HUBSPOT_TOKEN": TOKEN, "HUBSPOT_API_URL": fake.base_url}
        server = Server(database, 1, admin_key, folder / "server.log", env)
        stack.callback(server.stop)
        server.wait_ready(60)
        headers = {"Authorization": f"Bearer {admin_key}"}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=60.0) as client:
            document = (ROOT / "examples" / "acme-sales.yaml").read_text() + yaml.safe_dump({"sources": SOURCES})
            applied = client.put(
                f"/api/v1/programs/{PROGRAM}", content=document, headers={"Content-Type": "application/yaml"}
            )
            assert applied.status_code in (200, 201), applied.text
            run_id = int(time.time()) % 100_000 * 10_000_000  # new deals each run, for a reused database

            def events(n: int, offset: int) -> httpx.Response:
                batch = as_events(items(run_id + offset + n * ITEMS))
                return client.post(f"/api/v1/programs/{PROGRAM}/events", content=orjson.dumps({"events": batch}))

            def delivery(source: str, offset: int) -> Callable[[int], httpx.Response]:
                url = f"{server.base_url}/api/v1/programs/{PROGRAM}/sources/{source}"

                def send(n: int) -> httpx.Response:
                    body = orjson.dumps(items(run_id + offset + n * ITEMS))
                    at = str(int(time.time() * 1000))
                    digest = hmac.new(
                        CLIENT_SECRET.encode(), b"POST" + url.encode() + body + at.encode(), hashlib.sha256
                    )
                    signature = base64.b64encode(digest.digest()).decode()
                    return client.post(
                        url,
                        content=body,
                        headers={"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": at},
                    )

                return send

            run_phase(Phase("warm-up"), 3, 30, lambda n: events(n, 9_000_000))
            phases = [
                (Phase("(a) floor: the same events POSTed to /events"), lambda n: events(n, 0)),
                (Phase("(b) hubspot deliveries, no fetch"), delivery("hubspot", 3_000_000)),
                (Phase("(c) hubspot deliveries, fetch from the fake API"), delivery("hubspot-fetch", 6_000_000)),
            ]
            for phase, send in phases:
                run_phase(phase, args.deliveries, args.max_seconds, send)
        print(f"{ITEMS} items a request, {args.deliveries} requests a phase, on {database.split('://')[0]}, {load()}")
        floor = phases[0][0]
        for phase, _ in phases:
            print(phase.line(None if phase is floor else floor))
            print(f"  {'':<50} {dict(phase.statuses)}" + (f" failures: {phase.failures}" if phase.failures else ""))


if __name__ == "__main__":
    main()
