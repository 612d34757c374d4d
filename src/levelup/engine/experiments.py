"""Holdout experiments: who is held out is a pure function of the salt and the participant's id.

No table of assignments: live scoring, replay, simulation and the insight all hash the same two
strings, so they always agree, and a participant stays in their group for the experiment's life.
A new salt draws new groups.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from functools import lru_cache

from levelup.programs.document import Experiment


def salt_of(experiment: Experiment) -> str:
    return experiment.salt or experiment.key


@lru_cache(maxsize=65_536)
def draw(salt: str, participant: str) -> float:
    """A number in [0, 1) fixed by the salt and the participant's external id (the first 8 bytes of a SHA-256)."""
    digest = hashlib.sha256(f"{salt}\x00{participant}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def held_out(experiment: Experiment, participant: str) -> bool:
    """Whether the participant is in the experiment's holdout group (a share ``holdout`` of everyone)."""
    return draw(salt_of(experiment), participant) < experiment.holdout


def held_out_by(experiments: Iterable[Experiment], participant: str) -> str | None:
    """The key of the first of these experiments holding the participant out, or None."""
    return next((e.key for e in experiments if held_out(e, participant)), None)


def kept_out(program_holdouts: Sequence[Experiment], participant: str) -> bool:
    """Whether the program's whole-program experiments (``CompiledProgram.program_holdouts``) keep the
    participant out: scored silently, shown nothing (no badge, streak or level; no page; no name on a
    public screen). One truth test when a program has none: it is asked on every event scored."""
    return bool(program_holdouts) and held_out_by(program_holdouts, participant) is not None
