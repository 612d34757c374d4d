"""The event stream both benchmarks send: what a CRM sends, in time order, the same for the same seed.

60% ``activity.logged`` calls of 30-600 s, 25% ``task.completed`` (about 75% on
time), 15% ``deal.won`` of 500-50,000 (one in ten with cents), over ~90 days up
to the end of October (so the ``october-blitz`` competition is exercised); some
reps are busier than others (log-normal weights).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from typing import Any

SEED = 20261120
START = dt.datetime(2026, 8, 3, tzinfo=dt.UTC)
SPAN = dt.timedelta(days=90)


def rfc3339(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def generate(
    n_events: int, n_participants: int, *, prefix: str = "bench-", seed: int = SEED
) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    reps = [f"rep-{i:05d}" for i in range(n_participants)]
    weights = [rng.lognormvariate(0.0, 0.6) for _ in reps]
    span_s = SPAN.total_seconds()
    chosen = rng.choices(reps, weights=weights, k=n_events)
    for i in range(n_events):
        occurred = START + dt.timedelta(seconds=span_s * (i + rng.random()) / n_events)
        roll = rng.random()
        if roll < 0.60:
            kind = "activity.logged"
            data: dict[str, Any] = {
                "kind": "call",
                "duration_s": rng.randint(30, 600),
                "contact": f"c-{rng.randrange(50_000)}",
            }
        elif roll < 0.85:
            kind = "task.completed"
            on_time = rng.random() < 0.75
            due = occurred + dt.timedelta(hours=rng.uniform(0.5, 72) * (1 if on_time else -1))
            data = {"task_id": f"T-{prefix}{i}", "completed_at": rfc3339(occurred), "due_at": rfc3339(due)}
        else:
            kind = "deal.won"
            amount: float = rng.randint(500, 50_000)
            if rng.random() < 0.1:
                amount += 0.5
            data = {"amount": amount, "deal_id": f"D-{prefix}{i}", "currency": "USD"}
        yield {
            "id": f"{prefix}{i:07d}",
            "type": kind,
            "participant": chosen[i],
            "occurred_at": rfc3339(occurred),
            "data": data,
        }
