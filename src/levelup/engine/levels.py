"""Levels: lifetime progression on what was earned in a currency (or a metric's all-time value)."""

from __future__ import annotations

from typing import Any

from levelup.programs.document import Levels


def level_of(levels: Levels, value: float) -> dict[str, Any]:
    """The level reached at ``value``, the next one, and progress 0..1 between them."""
    reached = [s for s in levels.steps if value >= s.at] or [levels.steps[0]]
    current = reached[-1]
    following = next((s for s in levels.steps if s.at > current.at), None)
    progress = 1.0 if following is None else (value - current.at) / (following.at - current.at)
    return {
        "name": current.name,
        "next": following.name if following else None,
        "progress": round(max(0.0, min(1.0, progress)), 3),
        "value": value,
        "next_at": following.at if following else None,
    }


def level_name(levels: Levels, value: float) -> str:
    """Just the name of the level reached at ``value`` (the engine asks twice an event)."""
    name = levels.steps[0].name
    for step in levels.steps:
        if value >= step.at:
            name = step.name
    return name
