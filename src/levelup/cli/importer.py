"""Reading events from files: JSON Lines as they are, CSV through a mapping.

A mapping is YAML; ``{column}`` placeholders are filled from each row::

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
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from levelup.errors import FieldError, Invalid, path_of

PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


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


def read_events(path: Path, mapping_path: Path | None) -> Iterator[dict[str, Any]]:
    if path.suffix.lower() == ".csv":
        if mapping_path is None:
            raise Invalid("a CSV needs --mapping (see levelup events import --help)")
        mapping = read_mapping(mapping_path)
        with path.open(newline="", encoding="utf-8-sig") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                if any(row.get(k) != v for k, v in mapping.when.items()):
                    continue
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
                        raise Invalid(
                            f"line {line}: {key} is not a number", errors=[FieldError(f"data.{key}", repr(text))]
                        ) from None
                yield event
        return
    with path.open(encoding="utf-8") as f:
        for line, text in enumerate(f, start=1):
            if text.strip():
                try:
                    yield json.loads(text)
                except ValueError as exc:
                    raise Invalid(f"line {line} is not JSON: {exc}") from None
