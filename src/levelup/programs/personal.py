"""Event data fields a document marks personal (``personal:``), and the check that keeps the engine off them.

Erasure (:mod:`levelup.participants.erasure`) deletes these fields from a person's stored events. Replay
must still equal the stored state afterwards, so no expression that scores an event of that type may read
such a field (nor a field inside it, nor the object holding it): a document that does is refused, each
conflict at its own path. The check is conservative: any mention counts, even one a branch never evaluates.
Pure: the engine's layering allows it next to :mod:`levelup.programs.document`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from levelup.errors import FieldError
from levelup.programs.document import ProgramDocument

FIELD_PATTERN = r"^data(\.[A-Za-z_][A-Za-z0-9_]*){1,8}$"
# "data" as a name (not "x.data", not "metadata"), then its accessors: .name or ["name"] / ['name'] (a method
# call such as .endsWith( is not a field: it reads the value before it)
_FIELD = r"\.\s*([A-Za-z_]\w*)\b(?!\s*\()"
_DATA_READ = re.compile(r"(?<![\w.])data((?:\s*" + _FIELD + r"|\s*\[\s*(?:'[^']*'|\"[^\"]*\")\s*\])*)")
_ACCESSOR = re.compile(_FIELD + r"|\[\s*(?:'([^']*)'|\"([^\"]*)\")\s*\]")


def path_of(field: str) -> tuple[str, ...]:
    """``data.contact.email`` → ``("contact", "email")``."""
    return tuple(field.split(".")[1:])


def reads(source: str) -> Iterator[tuple[str, ...]]:
    """Every ``data`` path an expression mentions; ``()`` for ``data`` itself (it reads every field)."""
    for found in _DATA_READ.finditer(source):
        yield tuple(a or b or c for a, b, c in _ACCESSOR.findall(found.group(1)))


def _overlap(read: tuple[str, ...], field: tuple[str, ...]) -> bool:
    """Reading ``data.a`` reads ``data.a.b``, and reading ``data.a.b`` needs ``data.a``: either is a prefix."""
    shorter = min(len(read), len(field))
    return read[:shorter] == field[:shorter]


def _expressions_on(doc: ProgramDocument, event_type: str) -> Iterator[tuple[str, str]]:
    """The expressions that score an event of ``event_type``, with their paths."""
    for i, metric in enumerate(doc.metrics):
        if metric.event == event_type:
            for name, source in (("if", metric.if_), ("value", metric.value)):
                if source is not None:
                    yield f"metrics[{i}].{name}", source
    for i, rule in enumerate(doc.rules):
        if rule.event != event_type:
            continue
        if rule.if_ is not None:
            yield f"rules[{i}].if", rule.if_
        for currency, amount in rule.award.items():
            if isinstance(amount, str):
                yield f"rules[{i}].award.{currency}", amount


def errors(doc: ProgramDocument) -> Iterator[FieldError]:
    """A personal field read by scoring, or named twice, or the referrer field referrals need."""
    for event_type, fields in (doc.personal or {}).items():
        seen: set[str] = set()
        for i, field in enumerate(fields):
            where = f"personal.{event_type}[{i}]"
            if field in seen:
                yield FieldError(where, f'"{field}" is listed twice')
            seen.add(field)
            wanted = path_of(field)
            for path, source in _expressions_on(doc, event_type):
                if any(_overlap(read, wanted) for read in reads(source)):
                    yield FieldError(where, f"{path} reads it: erasure deletes a personal field, so scoring may not")
            if doc.referrals and doc.referrals.event == event_type and wanted[:1] == (doc.referrals.referrer,):
                yield FieldError(where, "referrals.referrer names it: referrals need it to pay the referrer")


def fields_by_type(documents: Iterator[Mapping[str, Any]]) -> dict[str, set[tuple[str, ...]]]:
    """The personal fields of each event type over stored documents (raw JSON): a field marked in any version."""
    found: dict[str, set[tuple[str, ...]]] = {}
    for document in documents:
        for event_type, fields in (document.get("personal") or {}).items():
            found.setdefault(event_type, set()).update(path_of(f) for f in fields)
    return found
