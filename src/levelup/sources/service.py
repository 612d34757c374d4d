"""A delivery from receipt to answer: check it, split it into items, fetch, map, and ingest the events
exactly as a batch POST is ingested (the process's group commit), answering per event like a batch."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from anyio import to_thread
from sqlalchemy import Connection

from levelup.errors import FieldError, TooLarge
from levelup.events.group_commit import group_commit
from levelup.events.schema import MAX_BATCH
from levelup.programs import service as programs
from levelup.runtime import Runtime
from levelup.sources import hubspot, vendors
from levelup.sources.mapping import CompiledSource, Mapped, compiled_source, map_item
from levelup.storage import tables as t
from levelup.storage.db import Database
from levelup.storage.sql import fetch_by_keys

logger = logging.getLogger("levelup")

HIDDEN_HEADERS = frozenset({"authorization"})  # the credentials of a pipedrive source: not for mappings


@dataclass(frozen=True)
class Answer:
    results: list[dict[str, Any]]
    soap: bool


async def deliver(
    runtime: Runtime,
    app_state: Any,
    source_key: str,
    delivery: vendors.Delivery,
    http: httpx.AsyncClient,
    admit: Callable[[], Awaitable[None]] | None = None,
) -> Answer:
    """Check, map and ingest one delivery; raises Unauthorized (nothing stored) when its check fails.
    ``admit`` runs once the check has passed (the source's rate limit), before anything is fetched or stored."""
    program_id, source, received = await to_thread.run_sync(_receive, runtime, source_key, delivery)
    if admit is not None:
        await admit()
    objects = await _fetch(source, received.items, http, delivery)
    headers = {k: v for k, v in delivery.headers.items() if k not in HIDDEN_HEADERS}
    mapped, events = await to_thread.run_sync(_map, runtime, program_id, source, received.items, objects, headers)
    outcomes = iter(await group_commit(app_state).submit(delivery.program, events) if events else [])
    results = [
        m.rejected.as_dict() if m.rejected is not None else m.answer(next(outcomes)).as_dict()
        for m in mapped
        if m.rejected is not None or m.event is not None
    ]
    for result in results:
        if result["status"] == "rejected":
            logger.warning("source %s of program %s rejected %s", source_key, delivery.program, result)
    return Answer(results, received.soap)


def _receive(
    runtime: Runtime, source_key: str, delivery: vendors.Delivery
) -> tuple[int, CompiledSource, vendors.Received]:
    with runtime.db.read() as connection:
        record = programs.find(connection, delivery.program)
        source = compiled_source(runtime.programs.compiled(connection, record), source_key)
    return record.id, source, vendors.receive(source.source, delivery)


async def _fetch(
    source: CompiledSource, items: list[Any], http: httpx.AsyncClient, delivery: vendors.Delivery
) -> list[Any]:
    """The fetched object of each item (None where the item names none or HubSpot has none)."""
    fetch = source.source.fetch
    if fetch is None:
        return [None] * len(items)
    ids = [_object_id(item) for item in items]
    token = vendors.setting(delivery, source.source, fetch.token, "fetch token")
    base_url = (os.environ.get(fetch.base_url.env) if fetch.base_url else None) or hubspot.DEFAULT_BASE_URL
    found = await hubspot.fetch_objects(http, fetch, token, base_url, sorted({i for i in ids if i is not None}))
    return [found.get(i) if i is not None else None for i in ids]


def _object_id(item: Any) -> str | None:
    value = item.get("objectId") if isinstance(item, dict) else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) and value else None


def _map(
    runtime: Runtime,
    program_id: int,
    source: CompiledSource,
    items: Sequence[Any],
    objects: Sequence[Any],
    headers: Mapping[str, str],
) -> tuple[list[Mapped], list[dict[str, Any]]]:
    """Every mapping's result for every item, in order, and the events to ingest (reversals with nothing
    to reverse left out)."""
    mapped = [m for i, item in enumerate(items) for m in map_item(source, item, objects[i], headers, f"items[{i}]")]
    mapped = kept_reversals(runtime.db, program_id, mapped)
    events = [m.event for m in mapped if m.event is not None]
    if len(events) > MAX_BATCH:
        raise TooLarge(f"a delivery makes at most {MAX_BATCH} events", errors=[FieldError("(body)", f"{len(events)}")])
    return mapped, events


def kept_reversals(db: Database, program_id: int, mapped: list[Mapped]) -> list[Mapped]:
    """``mapped`` with the reversals that have nothing to reverse turned into nothing: the event they
    name was never received (nor earlier in ``mapped``), or is already reversed. A CRM sends every stage
    change, so a deal moved on after leaving "won" must not be an error. A reversal already stored
    stays, to be answered as the duplicate it is."""
    reversals = [m.event for m in mapped if m.event is not None and "reverses" in m.event]
    if not reversals:
        return mapped
    targets = {e["reverses"] for e in reversals}
    wanted = [(i,) for i in targets | {e["id"] for e in reversals}]
    with db.read() as connection:
        stored = {r[0] for r in _lookup(connection, t.events, "event_id", program_id, wanted)}
        done = {r[0] for r in _lookup(connection, t.reversals, "reversed_event", program_id, [(i,) for i in targets])}
    seen: set[str] = set()
    kept: list[Mapped] = []
    for m in mapped:
        event = m.event
        if event is not None and "reverses" in event and event["id"] not in stored:
            target = event["reverses"]
            if target in done or (target not in stored and target not in seen):
                kept.append(Mapped())
                continue
            done.add(target)
        if event is not None:
            seen.add(event["id"])
        kept.append(m)
    return kept


def _lookup(
    connection: Connection, table: Any, column: str, program_id: int, values: list[tuple[str]]
) -> list[tuple[Any, ...]]:
    return fetch_by_keys(
        connection, table, fixed={"program_id": program_id}, keys=[column], values=values, columns=[column]
    )
