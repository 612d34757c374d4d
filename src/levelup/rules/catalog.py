"""The rules of a program in plain language: what a participant reads to know how to earn."""

from __future__ import annotations

from typing import Any

from levelup.programs.compiled import CompiledProgram


def how_to_play(program: CompiledProgram) -> dict[str, Any]:
    doc = program.doc
    return {
        "program": doc.program,
        "name": doc.name,
        "version": program.version,
        "timezone": doc.timezone,
        "currencies": [c.model_dump(exclude_none=True) for c in doc.currencies],
        "ways_to_earn": [
            {
                "rule": rule.key,
                "event": rule.event,
                "awards": {a.currency: a.source for a in rule.awards},
                "cap": rule.cap.model_dump() if rule.cap else None,
                "cooldown_seconds": rule.cooldown_s,
                "explain": rule.explain,
            }
            for rule in program.rules
        ],
        "levels": doc.levels.model_dump(exclude_none=True) if doc.levels else None,
    }
