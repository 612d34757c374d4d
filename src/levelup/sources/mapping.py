"""A source's ``events:`` mappings: CEL over ``item``, ``object`` and ``headers`` → events as a batch takes them.

Pure: the HTTP route and ``levelup events import --source`` both map through here, so one mapping
serves live deliveries and backfills alike.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from levelup.errors import FieldError, NotFound
from levelup.events.ingest import Outcome
from levelup.programs.compiled import CompiledProgram
from levelup.programs.document import Source
from levelup.rules.expressions import Activation, Expression

FIELDS = ("id", "participant", "occurred_at", "reverses")


@dataclass(frozen=True)
class CompiledMapping:
    type: str
    when: Expression
    fields: tuple[tuple[str, Expression], ...]  # those of FIELDS the mapping sets
    data: tuple[tuple[str, Expression], ...]


@dataclass(frozen=True)
class CompiledSource:
    source: Source
    mappings: tuple[CompiledMapping, ...]


@dataclass(frozen=True)
class Mapped:
    """What one mapping made of one item: an event to ingest, or its rejection (with the paths at fault)."""

    event: dict[str, Any] | None = None
    rejected: Outcome | None = None
    prefix: str = ""  # the item's path, ``items[3]``

    def answer(self, outcome: Outcome) -> Outcome:
        """Ingestion's outcome of :attr:`event`, its error paths under the item's (``items[3].occurred_at``):
        the event is checked once, where every event is."""
        if outcome.status != "rejected" or not self.prefix:
            return outcome
        errors = [
            FieldError(_at(self.prefix, e.path) if e.path != "(event)" else self.prefix, e.message)
            for e in outcome.errors
        ]
        return Outcome(outcome.id, outcome.status, errors=errors)


@lru_cache(maxsize=256)
def compiled_source(program: CompiledProgram, key: str) -> CompiledSource:
    """The source ``key`` of a program version with its expressions compiled (once: versions never change)."""
    source = next((s for s in program.doc.sources if s.key == key), None)
    if source is None:
        raise NotFound(f"program {program.key!r} has no source {key!r}")
    mappings = tuple(
        CompiledMapping(
            type=m.type,
            when=Expression.compile(m.when),
            fields=tuple((name, Expression.compile(text)) for name in FIELDS if (text := getattr(m, name)) is not None),
            data=tuple((name, Expression.compile(text)) for name, text in m.data.items()),
        )
        for m in source.events
    )
    return CompiledSource(source, mappings)


def map_item(source: CompiledSource, item: Any, obj: Any, headers: Mapping[str, str], prefix: str) -> list[Mapped]:
    """One result per mapping whose ``when`` holds (a ``when`` reading a missing field does not hold);
    error paths start with ``prefix`` (``items[3]``)."""
    activation = Activation({"item": item, "object": obj, "headers": dict(headers)})
    found: list[Mapped] = []
    for mapping in source.mappings:
        try:
            holds = mapping.when.evaluate(activation)
        except KeyError:
            continue
        except Exception as exc:
            found.append(_rejected("", [FieldError(_at(prefix, "when"), _message(exc, mapping.when, activation))]))
            continue
        if holds is not True:
            if holds is not False:
                found.append(_rejected("", [FieldError(_at(prefix, "when"), f"gave {_kind(holds)}, not a bool")]))
            continue
        found.append(_event(mapping, activation, prefix))
    return found


def _event(mapping: CompiledMapping, activation: Activation, prefix: str) -> Mapped:
    event: dict[str, Any] = {"type": mapping.type}
    errors: list[FieldError] = []
    for name, expression in mapping.fields:
        try:
            value = _FIELD_VALUE[name](expression.evaluate(activation))
        except Exception as exc:
            errors.append(FieldError(_at(prefix, name), _message(exc, expression, activation)))
            continue
        if value is not None:
            event[name] = value
    data: dict[str, Any] = {}
    for key, expression in mapping.data:
        try:
            data[key] = _json_value(expression.evaluate(activation))
        except Exception as exc:
            errors.append(FieldError(_at(prefix, f"data.{key}"), _message(exc, expression, activation)))
    event["data"] = data
    if errors:
        return _rejected(str(event.get("id", "")), errors)
    return Mapped(event=event, prefix=prefix)


def _rejected(event_id: str, errors: list[FieldError]) -> Mapped:
    return Mapped(rejected=Outcome(event_id, "rejected", errors=errors))


def _at(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _message(exc: Exception, expression: Expression, activation: Activation) -> str:
    if "object" in expression.variables and activation.variables["object"] is None:
        return "reads object, but fetch found no object for this item"
    if isinstance(exc, KeyError):
        return f"no field {exc.args[0]!r}" if exc.args else "a field is missing"
    return str(exc)


def _text(value: Any) -> str | None:
    """An id as text: a string, or a whole number (CEL hands numbers over as doubles)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer():
        return str(int(value))
    raise ValueError(f"gave {_kind(value)}, expected a string")


def _required_text(value: Any) -> str:
    text = _text(value)
    if text is None:
        raise ValueError("gave null, expected a string")
    return text


def _occurred_at(value: Any) -> str | None:
    """Epoch milliseconds (a number, or digits as CSV and SOAP send them), a CEL timestamp, or RFC 3339."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool):
        raise ValueError("gave bool, expected epoch milliseconds or an RFC 3339 date-time")
    if isinstance(value, int | float):
        try:
            return dt.datetime.fromtimestamp(value / 1000, dt.UTC).isoformat()
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"{value} is not a time in epoch milliseconds") from None
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"gave {_kind(value)}, expected epoch milliseconds or an RFC 3339 date-time")


_FIELD_VALUE = {"id": _required_text, "participant": _required_text, "occurred_at": _occurred_at, "reverses": _text}


def _json_value(value: Any) -> Any:
    """A CEL value as JSON: timestamps as RFC 3339, durations in seconds."""
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        raise ValueError("gave bytes, which JSON cannot hold")
    return value
