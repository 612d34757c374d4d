"""Per-key and per-source rate limits: a token bucket each (docs/api.md, Limits).

A client past its rate gets 429 with ``Retry-After`` (whole seconds until a token is back) and nothing
is done. ``LEVELUP_RATE_LIMIT`` (requests a second, default 1,000) and ``LEVELUP_RATE_BURST`` (default
twice the rate) set them; 0 turns them off.

Without Redis the buckets live in the worker process (with N workers a key may reach N times the rate).
With ``LEVELUP_REDIS_URL`` they live in Redis and every worker of every host shares them
(:class:`SharedLimiter`): one Lua script per request, GCRA (a bucket as its "theoretical arrival time",
one key with an expiry), on Redis's clock so the workers' clocks need not agree. A Redis that fails or
does not answer within 0.5 s is left alone for 5 s while each worker limits on its own, as without Redis:
a limit never fails a request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
from collections import OrderedDict

import redis
import redis.asyncio
from redis.commands.core import AsyncScript

from levelup.errors import LevelupError
from levelup.observability.metrics import REDIS_FALLBACKS

MAX_BUCKETS = 100_000  # the least recently used are dropped past this (a full bucket is no bucket)
TIMEOUT_SECONDS = 0.5  # a Redis that does not answer by then is treated as down
RETRY_SECONDS = 5.0  # after a failure, each worker limits alone this long

logger = logging.getLogger("levelup.limits")

# GCRA: KEYS[1] holds the bucket's theoretical arrival time (seconds, Redis's clock); ARGV: seconds a
# request costs (1 / rate), burst. Answers "0" (allowed) or the seconds to wait, as text (Lua numbers
# come back truncated to integers).
GCRA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local after = tat + interval
local wait = after - now - interval * tonumber(ARGV[2])
if wait > 0 then return tostring(wait) end
redis.call('SET', KEYS[1], tostring(after), 'PX', math.ceil((after - now) * 1000) + 1000)
return '0'
"""


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
        """This process's limiter; shared through Redis when ``LEVELUP_REDIS_URL`` is set."""
        rate = float(os.environ.get("LEVELUP_RATE_LIMIT", "1000"))
        burst = float(os.environ.get("LEVELUP_RATE_BURST", str(2 * rate)))
        if not (math.isfinite(rate) and rate >= 0 and math.isfinite(burst) and burst >= 0):
            raise ValueError("LEVELUP_RATE_LIMIT and LEVELUP_RATE_BURST must be finite and not negative")
        url = os.environ.get("LEVELUP_REDIS_URL")
        if url and rate > 0:
            return SharedLimiter(rate, max(burst, 1.0), url)
        return cls(rate, max(burst, 1.0))

    async def check(self, name: str) -> None:
        """:meth:`take`, as the routes call it (the shared limiter asks Redis without blocking the loop)."""
        self.take(name)

    def _refusal(self, wait: float) -> RateLimited:
        seconds = max(1, math.ceil(wait))
        return RateLimited(f"more than {self.rate:g} requests a second; retry in {seconds} s", retry_after=seconds)

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
                raise self._refusal((1 - tokens) / self.rate)
            self._buckets[name] = (tokens - 1, now)
            if len(self._buckets) > MAX_BUCKETS:
                self._buckets.popitem(last=False)


class SharedLimiter(Limiter):
    """The buckets of every worker in one Redis (:data:`GCRA`); this process's own buckets while it fails."""

    def __init__(self, rate: float, burst: float, url: str) -> None:
        super().__init__(rate, burst)
        self.url = url
        self._scripts: dict[asyncio.AbstractEventLoop, AsyncScript] = {}  # one client per event loop
        self._down_until = 0.0

    def _script(self) -> AsyncScript:
        """:data:`GCRA` on this loop's client (an asyncio client belongs to the loop it was made on), sent by
        its hash (EVALSHA) once Redis knows it."""
        loop = asyncio.get_running_loop()
        script = self._scripts.get(loop)
        if script is None:
            client = redis.asyncio.Redis.from_url(
                self.url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS
            )
            script = client.register_script(GCRA)
            self._scripts = {loop: script}  # the client of a loop that ended is dropped with it
        return script

    async def check(self, name: str) -> None:
        if time.monotonic() < self._down_until:
            self.take(name)
            return
        try:
            answer = await self._script()(keys=[f"levelup:rate:{name}"], args=[repr(1 / self.rate), repr(self.burst)])
        except (TimeoutError, redis.RedisError, OSError) as exc:
            self._down_until = time.monotonic() + RETRY_SECONDS
            REDIS_FALLBACKS.labels(use="limit").inc()
            logger.warning("rate limits counted in this process for %.0f s: Redis failed (%s)", RETRY_SECONDS, exc)
            self.take(name)
            return
        wait = float(answer)
        if wait > 0:
            raise self._refusal(wait)
