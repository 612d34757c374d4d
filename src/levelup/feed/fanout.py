"""Wake the live-feed streams when feed items are committed, in this process and, through Redis pub/sub,
in every other one (docs/deploy.md says why pub/sub rather than streams or LISTEN/NOTIFY).

The feed table stays the only record: a message carries nothing but the program's id, and a woken
stream reads what is new from the database by id, as it did when it polled. So a lost message costs
latency, never an item: streams still look every :data:`SAFETY_SECONDS`, and every
:data:`POLL_SECONDS` while the subscription to Redis is down or Redis is not configured (another
process, a CLI import say, may write); this process's own commits wake its streams at once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import redis
from sqlalchemy import Connection, Engine

from levelup.observability.metrics import REDIS_FALLBACKS
from levelup.storage.db import Database, after_commit

logger = logging.getLogger("levelup.redis")

CHANNEL = "levelup:feed"
POLL_SECONDS = 0.5  # how often a stream looks when no message can wake it
SAFETY_SECONDS = 5.0  # how often it looks anyway, when messages can
RECONNECT_SECONDS = 1.0
TIMEOUT_SECONDS = 0.5  # a Redis that does not answer by then is treated as down: a commit never waits longer

_ATTACHED: weakref.WeakKeyDictionary[Engine, FanOut] = weakref.WeakKeyDictionary()


class Waiter:
    """One stream's wake-up: set by any commit of its program's feed items from now on."""

    def __init__(self, fanout: FanOut) -> None:
        self._fanout = fanout
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def wake(self) -> None:  # from any thread
        self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self) -> None:
        """Until woken or the time to look anyway has come, whichever is first."""
        with suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), self._fanout.look_every())
        self._event.clear()


class FanOut:
    """The wake-ups of one database's feed, across processes when ``client`` (Redis) is given."""

    def __init__(self, client: redis.Redis | None) -> None:
        self.client = client
        self._down_until = 0.0  # after a failed publish, none is tried until then (a commit waits on none)
        self._lock = threading.Lock()
        self._waiters: dict[int, set[Waiter]] = defaultdict(set)
        self._subscribed = threading.Event()  # the Redis subscription is live
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def attach(cls, db: Database, url: str | None) -> FanOut:
        """Wake ``db``'s streams on its commits (and, with Redis at ``url``, other processes' commits)."""
        client = (
            redis.Redis.from_url(
                url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS, health_check_interval=10
            )
            if url
            else None
        )
        fanout = cls(client)
        _ATTACHED[db.engine] = fanout
        return fanout

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.client is not None:
            self.client.close()

    def look_every(self) -> float:
        return SAFETY_SECONDS if self._subscribed.is_set() else POLL_SECONDS

    # ------------------------------------------------------------------ publishing

    def published(self, connection: Connection, program_id: int) -> None:
        """Feed items of ``program_id`` were written in ``connection``'s transaction: tell once it commits."""
        after_commit(connection, f"feed:{program_id}", lambda: self.notify(program_id))

    def notify(self, program_id: int) -> None:
        """Wake this process's streams of the program, and every other process's through Redis."""
        self._wake(program_id)
        if self.client is None:
            return
        if time.monotonic() < self._down_until:
            REDIS_FALLBACKS.labels("feed").inc()
            return
        try:
            self.client.publish(CHANNEL, str(program_id))
        except redis.RedisError as exc:  # the others look every SAFETY_SECONDS (POLL_SECONDS if they lost Redis too)
            self._down_until = time.monotonic() + RECONNECT_SECONDS * 5
            REDIS_FALLBACKS.labels("feed").inc()
            logger.warning("Redis failed (feed): %s: %s; streams elsewhere poll", type(exc).__name__, exc)

    def _wake(self, program_id: int) -> None:
        with self._lock:
            waiters = list(self._waiters.get(program_id, ()))
        for waiter in waiters:
            waiter.wake()

    # ------------------------------------------------------------------ streams

    @asynccontextmanager
    async def waiter(self, program_id: int) -> AsyncIterator[Waiter]:
        """A wake-up for a stream of ``program_id``, registered until the block ends."""
        self._subscribe()
        waiter = Waiter(self)
        with self._lock:
            self._waiters[program_id].add(waiter)
        try:
            yield waiter
        finally:
            with self._lock:
                self._waiters[program_id].discard(waiter)
                if not self._waiters[program_id]:
                    del self._waiters[program_id]

    def _subscribe(self) -> None:
        """Start listening to Redis (once, in a thread of its own) when the first stream opens."""
        with self._lock:
            if self.client is None or self._thread is not None:
                return
            self._thread = threading.Thread(target=self._listen, name="levelup-feed-fanout", daemon=True)
            self._thread.start()

    def _listen(self) -> None:
        assert self.client is not None
        while not self._stop.is_set():
            try:
                with self.client.pubsub(ignore_subscribe_messages=True) as pubsub:  # type: ignore[no-untyped-call]
                    pubsub.subscribe(CHANNEL)
                    self._subscribed.set()
                    self._wake_all()  # whatever was sent while not subscribed
                    while not self._stop.is_set():
                        message = pubsub.get_message(timeout=1.0)
                        if message is not None and message["type"] == "message":
                            self._wake(int(message["data"]))
            except (redis.RedisError, OSError, ValueError) as exc:
                if self._subscribed.is_set():
                    REDIS_FALLBACKS.labels("feed").inc()
                    logger.warning("Redis subscription lost: %s: %s; streams poll", type(exc).__name__, exc)
                self._subscribed.clear()
                time.sleep(RECONNECT_SECONDS)
        self._subscribed.clear()

    def _wake_all(self) -> None:
        with self._lock:
            programs = list(self._waiters)
        for program_id in programs:
            self._wake(program_id)


def of(connection_or_engine: Connection | Engine) -> FanOut | None:
    engine = connection_or_engine.engine if isinstance(connection_or_engine, Connection) else connection_or_engine
    return _ATTACHED.get(engine)
