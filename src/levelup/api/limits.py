"""Per-key and per-source rate limits: a token bucket each, in this process (docs/api.md, Limits).

A client past its rate gets 429 with ``Retry-After`` (whole seconds until a token is back) and nothing
is done. The buckets live in the worker process: with N workers a key may reach N times the rate, which
the deployment guide says; a limit shared by every worker needs Redis. ``LEVELUP_RATE_LIMIT`` (requests a
second, default 1,000) and ``LEVELUP_RATE_BURST`` (default twice the rate) set them; 0 turns them off.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import OrderedDict

from levelup.errors import LevelupError

MAX_BUCKETS = 100_000  # the least recently used are dropped past this (a full bucket is no bucket)


class RateLimited(LevelupError):
    status = 429
    title = "Too many requests"
    code = "rate_limited"


class Limiter:
    """Token buckets by name: ``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # name → (tokens, at)
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls) -> Limiter:
        rate = float(os.environ.get("LEVELUP_RATE_LIMIT", "1000"))
        burst = float(os.environ.get("LEVELUP_RATE_BURST", str(2 * rate)))
        if not (math.isfinite(rate) and rate >= 0 and math.isfinite(burst) and burst >= 0):
            raise ValueError("LEVELUP_RATE_LIMIT and LEVELUP_RATE_BURST must be finite and not negative")
        return cls(rate, max(burst, 1.0))

    def take(self, name: str) -> None:
        """Spend one token of ``name``'s bucket, or raise :class:`RateLimited` saying when to come back."""
        if self.rate == 0:
            return
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.pop(name, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens < 1:
                self._buckets[name] = (tokens, now)
                wait = math.ceil((1 - tokens) / self.rate)
                raise RateLimited(f"more than {self.rate:g} requests a second; retry in {wait} s", retry_after=wait)
            self._buckets[name] = (tokens - 1, now)
            if len(self._buckets) > MAX_BUCKETS:
                self._buckets.popitem(last=False)
