"""``levelup events import``: a file of any size, streamed, in batches through :func:`levelup.events.ingest.ingest`.

Records are read one at a time (JSON Lines, a JSON array through ``ijson``, or CSV), so memory stays
flat whatever the file's size. Each becomes an event as written, through a CSV mapping, or through a
source's ``events:`` mappings (``--source``: each record is the ``item``, and ``object`` is
``{"properties": item}``, so the mapping of live HubSpot deliveries with ``fetch`` serves a CSV export
whose columns carry the property names). A re-run sends everything again: ids already in are
duplicates, found by one key lookup a batch and not scored again.

A CSV mapping is YAML; ``{column}`` placeholders are filled from each row::

    id: "{opportunity_id}-won"
    type: deal.won
    participant: "{sales_agent}"
    occurred_at: "{close_date}T16:00:00-05:00"
    data: {amount: "{close_value}", deal_id: "{opportunity_id}"}
    numbers: [amount]            # data fields to read as numbers
    when: {deal_stage: Won}      # only rows whose columns have these values
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import ijson
import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from levelup.errors import FieldError, Invalid, path_of
from levelup.events.ingest import Outcome, ingest
from levelup.programs import service as programs
from levelup.runtime import Runtime
from levelup.sources.mapping import CompiledSource, Mapped, compiled_source, map_item
from levelup.sources.service import kept_reversals
from levelup.storage.db import analyze

PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
FIRST_ERRORS = 10


class Mapping(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    type: str
    participant: str
    occurred_at: str | None = None
    reverses: str | None = None
    data: dict[str, str] = Field(default_factory=dict)
    numbers: list[str] = Field(default_factory=list)
    when: dict[str, str] = Field(default_factory=dict)


@dataclass(frozen=True)
class Record:
    """One record of the file and where it is: a line (JSON Lines, CSV), or an item of a JSON array."""

    unit: str  # line | item
    number: int
    value: Any
    error: str | None = None  # the record could not be read (not JSON)

    @property
    def where(self) -> str:
        return f"{self.unit} {self.number}"


@dataclass
class Summary:
    counts: dict[str, int] = field(default_factory=lambda: {"accepted": 0, "duplicate": 0, "rejected": 0})
    skipped: int = 0  # records that made no event (no mapping applied), reversals with nothing to reverse
    first_errors: list[tuple[str, Outcome]] = field(default_factory=list)

    def add(self, where: str, outcome: Outcome) -> None:
        self.counts[outcome.status] += 1
        if outcome.status == "rejected" and len(self.first_errors) < FIRST_ERRORS:
            self.first_errors.append((where, outcome))


def _fill(template: str, row: dict[str, str], line: int) -> str:
    def value(match: re.Match[str]) -> str:
        column = match.group(1)
        if column not in row:
            raise Invalid(f"line {line}: no column {column!r}", errors=[FieldError(column, "not in the CSV header")])
        return row[column]

    return PLACEHOLDER.sub(value, template)


def _number(text: str) -> int | float | None:
    if text.strip() == "":
        return None
    number = float(text)
    return int(number) if number.is_integer() else number


def read_mapping(path: Path) -> Mapping:
    try:
        return Mapping.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except ValidationError as exc:
        raise Invalid(
            "invalid mapping", errors=[FieldError(path_of(e["loc"]), e["msg"]) for e in exc.errors()]
        ) from None


def count_records(path: Path) -> int | None:
    """Lines of a JSON Lines or CSV file (CSV: less its header), counted in constant memory for the
    progress bar; None for a JSON array."""
    if path.suffix.lower() == ".json":
        return None
    lines = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            lines += chunk.count(b"\n")
    return max(0, lines - 1) if path.suffix.lower() == ".csv" else lines


def read_records(f: IO[bytes], suffix: str) -> Iterator[Record]:
    """The file's records as they come: CSV rows as dicts of their columns, JSON values as parsed."""
    if suffix == ".csv":
        text = io.TextIOWrapper(f, encoding="utf-8-sig", newline="")
        for line, row in enumerate(csv.DictReader(text), start=2):
            yield Record("line", line, row)
    elif suffix == ".json":
        for n, value in enumerate(ijson.items(f, "item", use_float=True)):
            yield Record("item", n, value)
    else:
        for line, raw in enumerate(f, start=1):
            if raw.strip():
                try:
                    yield Record("line", line, orjson.loads(raw))
                except orjson.JSONDecodeError as exc:
                    yield Record("line", line, None, f"not JSON: {exc}")


def _csv_event(mapping: Mapping, row: dict[str, str], line: int) -> Mapped | None:
    if any(row.get(k) != v for k, v in mapping.when.items()):
        return None
    event: dict[str, Any] = {
        "id": _fill(mapping.id, row, line),
        "type": mapping.type,
        "participant": _fill(mapping.participant, row, line),
        "data": {},
    }
    if mapping.occurred_at:
        event["occurred_at"] = _fill(mapping.occurred_at, row, line)
    if mapping.reverses:
        event["reverses"] = _fill(mapping.reverses, row, line)
    for key, template in mapping.data.items():
        text = _fill(template, row, line)
        try:
            event["data"][key] = _number(text) if key in mapping.numbers else text
        except ValueError:
            error = FieldError(f"data.{key}", f"{text!r} is not a number")
            return Mapped(rejected=Outcome(event["id"], "rejected", errors=[error]))
    return Mapped(event=event)


def _mapped(record: Record, mapping: Mapping | None, source: CompiledSource | None) -> list[Mapped]:
    """What one record gives: events, or rejections (a record that is no event, or a mapping that failed)."""
    if record.error is not None:
        return [Mapped(rejected=Outcome("", "rejected", errors=[FieldError("(line)", record.error)]))]
    if source is not None:
        return map_item(source, record.value, {"properties": record.value}, {}, "")
    if mapping is not None:
        found = _csv_event(mapping, record.value, record.number)
        return [] if found is None else [found]
    return [Mapped(event=record.value)]


def import_file(
    runtime: Runtime,
    program: str,
    path: Path,
    *,
    mapping_path: Path | None = None,
    source_key: str | None = None,
    batch: int,
    progress: Callable[[int], None],
) -> Summary:
    """Import ``path`` in transactions of ``batch`` events; ``progress(n)`` after each with the records
    read. Then refresh the planner's statistics (a bulk load changes the tables' sizes)."""
    suffix = path.suffix.lower()
    if suffix == ".csv" and mapping_path is None and source_key is None:
        raise Invalid("a CSV needs --mapping or --source (see levelup events import --help)")
    mapping = read_mapping(mapping_path) if mapping_path is not None else None
    with runtime.db.read() as connection:
        record = programs.find(connection, program)
        source = compiled_source(runtime.programs.compiled(connection, record), source_key) if source_key else None
    summary = Summary()
    pending: list[tuple[str, Mapped]] = []
    read = 0

    def flush() -> None:
        nonlocal pending, read
        if source is not None:
            kept = kept_reversals(runtime.db, record.id, [m for _, m in pending])
            pending = [(where, m) for (where, _), m in zip(pending, kept, strict=True)]
        events = [m.event for _, m in pending if m.event is not None]
        outcomes = iter(ingest(runtime, program, events) if events else [])
        for where, m in pending:
            if m.rejected is not None:
                summary.add(where, m.rejected)
            elif m.event is not None:
                summary.add(where, next(outcomes))
            else:
                summary.skipped += 1
        pending = []
        progress(read)
        read = 0

    with path.open("rb") as f:
        for found in read_records(f, suffix):
            read += 1
            made = _mapped(found, mapping, source)
            summary.skipped += not made
            pending += [(found.where, m) for m in made]
            if len(pending) >= batch:  # events and rejections: both held until the batch goes in
                flush()
        flush()
    with runtime.db.write() as connection:
        analyze(connection)
    return summary
