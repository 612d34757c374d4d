"""Group commit: concurrent POSTs of events to one program share one ingestion transaction.

CRMs send one event per webhook. A transaction each makes every request pay a durable
commit and, on SQLite, queue on the single writer. Here, while a group is being
ingested, the requests that arrive wait; when it commits, all that waited for the
program go into the next :func:`~levelup.events.ingest.ingest` call. A lone request goes
at once (no timer). Each request is answered with its own outcomes only after its group
committed, so an acknowledgement still means durable. The rules (bounds, backpressure,
failure fallback, shutdown) are described in ``docs/api.md``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from levelup.errors import LevelupError
from levelup.events import ingest as ingestion
from levelup.events.schema import MAX_BATCH
from levelup.observability.logs import REQUEST_ID
from levelup.observability.metrics import GROUP_SIZE
from levelup.runtime import Runtime
from levelup.storage.db import pool_size

logger = logging.getLogger("levelup")

MAX_GROUP = MAX_BATCH  # events in one transaction (a request is never split: a larger one goes alone)
MAX_WAITING = 10 * MAX_BATCH  # events waiting in one process before new requests are turned away (503)
POSTGRES_GROUPS = 4  # groups in flight at once on PostgreSQL (one per program); SQLite has one writer
RETRY_AFTER_SECONDS = 1


class Overloaded(LevelupError):
    """Too many events are waiting for their transaction, or the server is stopping: retry later."""

    status = 503
    title = "Service unavailable"
    code = "overloaded"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, retry_after=RETRY_AFTER_SECONDS)


@dataclass(eq=False)
class _Request:
    events: Sequence[Any]
    answer: asyncio.Future[list[ingestion.Outcome]]
    result: list[ingestion.Outcome] | BaseException | None = None  # set by the worker thread
    request_id: str | None = field(default_factory=REQUEST_ID.get)  # the HTTP request's, for the logs


class GroupCommit:
    """The coalescer of one process (one event loop) over one database.

    At most ``concurrency`` groups are ingested at once (1 on SQLite), never two of the same
    program, so repeats of an event id are judged in arrival order, as if sent one after another.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        concurrency: int | None = None,
        max_group: int | None = None,
        max_waiting: int | None = None,
    ) -> None:
        self.runtime = runtime
        parallel = 1 if runtime.db.is_sqlite else min(POSTGRES_GROUPS, max(1, pool_size() // 2))
        self.concurrency = concurrency or parallel
        self.max_group = max_group or MAX_GROUP
        self.max_waiting = max_waiting or MAX_WAITING
        self.loop: asyncio.AbstractEventLoop | None = None  # bound on first use
        self.waiting = 0  # events queued, not yet in a group
        self._queues: dict[str, deque[_Request]] = {}  # programs with waiting requests, in turn order
        self._busy: set[str] = set()  # programs with a group in flight
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def submit(self, program: str, events: Sequence[Any]) -> list[ingestion.Outcome]:
        """Ingest ``events`` with whatever else is waiting for ``program``; their outcomes, once committed.

        Raises :class:`Overloaded` (nothing was ingested) when stopping or when too much is waiting,
        and whatever ``ingest`` raised had the request been sent alone."""
        if self._closed:
            raise Overloaded("the server is stopping")
        loop = asyncio.get_running_loop()
        if self.loop is None:
            self.loop = loop
        assert self.loop is loop, "one GroupCommit per event loop"
        if self.waiting and self.waiting + len(events) > self.max_waiting:
            raise Overloaded(f"more than {self.max_waiting} events waiting to be ingested")
        request = _Request(events, loop.create_future())
        self._queues.setdefault(program, deque()).append(request)
        self.waiting += len(events)
        self._start_groups()
        return await request.answer

    @property
    def in_flight(self) -> int:
        """Groups being ingested now."""
        return len(self._tasks)

    async def close(self) -> None:
        """Turn new requests away, and return once every waiting request has been answered."""
        self._closed = True
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    def _start_groups(self) -> None:
        for program in list(self._queues):
            if len(self._tasks) >= self.concurrency:
                return
            if program in self._busy:
                continue
            group = self._take(program)
            if group:
                self._busy.add(program)
                assert self.loop is not None
                task = self.loop.create_task(self._commit(program, group))
                self._tasks.add(task)

    def _take(self, program: str) -> list[_Request]:
        """The oldest waiting requests of ``program``, whole, up to ``max_group`` events (at least one)."""
        queue = self._queues.pop(program)
        group: list[_Request] = []
        size = 0
        while queue:
            request = queue[0]
            if group and size + len(request.events) > self.max_group:
                break
            queue.popleft()
            self.waiting -= len(request.events)
            if not request.answer.done():  # else its caller went away before its turn: never ingested
                group.append(request)
                size += len(request.events)
        if queue:
            self._queues[program] = queue  # back of the line: programs take turns
        return group

    async def _commit(self, program: str, group: list[_Request]) -> None:
        assert self.loop is not None
        stopping = False
        # The loop's executor rather than a task-bound thread: cancelling this task (the loop being
        # torn down) must not orphan the transaction, whose requests still get its true outcome.
        work = self.loop.run_in_executor(None, self._ingest, program, group)
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            stopping = True
            await asyncio.wait([work])
            raise
        except BaseException as exc:  # the worker itself failed: nobody of the group may hang
            for request in group:
                if request.result is None:
                    request.result = exc
            if not isinstance(exc, Exception):
                raise
        finally:
            for request in group:
                _answer(request)
            self._busy.discard(program)
            task = asyncio.current_task()
            if task is not None:
                self._tasks.discard(task)
            if stopping:
                self._closed = True
                self._fail_waiting()
            else:
                self._start_groups()

    def _ingest(self, program: str, group: list[_Request]) -> None:
        """In a worker thread, under the request ids of the group (for the logs): one ``ingest`` for the
        group; if it fails, one per request (as alone), each under its own id."""
        token = REQUEST_ID.set(",".join(r.request_id for r in group if r.request_id) or None)
        try:
            self._ingest_group(program, group)
        finally:
            REQUEST_ID.reset(token)

    def _ingest_group(self, program: str, group: list[_Request]) -> None:
        events = [e for request in group for e in request.events]
        GROUP_SIZE.observe(len(events))
        try:
            outcomes = ingestion.ingest(self.runtime, program, events)
            if len(outcomes) != len(events):
                raise RuntimeError(f"ingest returned {len(outcomes)} outcomes for {len(events)} events")
        except Exception as exc:
            if len(group) == 1:
                group[0].result = exc
                return
            if not isinstance(exc, LevelupError):  # an expected refusal of the whole group needs no trace
                logger.warning("a group of %d requests failed; ingesting them one by one", len(group), exc_info=True)
            for request in group:
                REQUEST_ID.set(request.request_id)
                try:
                    request.result = ingestion.ingest(self.runtime, program, request.events)
                except Exception as alone:
                    request.result = alone
            return
        start = 0
        for request in group:
            request.result = outcomes[start : start + len(request.events)]
            start += len(request.events)

    def _fail_waiting(self) -> None:
        for queue in self._queues.values():
            for request in queue:
                if not request.answer.done():
                    request.answer.set_exception(Overloaded("the server is stopping"))
        self._queues.clear()
        self.waiting = 0


def _answer(request: _Request) -> None:
    if request.answer.done():
        return
    if request.result is None:
        request.answer.set_exception(Overloaded("the server is stopping"))
    elif isinstance(request.result, BaseException):
        request.answer.set_exception(request.result)
    else:
        request.answer.set_result(request.result)


def group_commit(state: Any) -> GroupCommit:
    """The coalescer kept on ``state`` (the app's state, holding ``runtime``) for the running loop."""
    current: GroupCommit | None = getattr(state, "group_commit", None)
    if current is None or current.loop not in (None, asyncio.get_running_loop()):
        current = GroupCommit(state.runtime)
        state.group_commit = current
    return current
