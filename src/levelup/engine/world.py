"""Runs events through the engine in order, over states held in memory.

The one loop every path shares: live ingestion fills a world with the states
of a batch's participants and the earlier events its reversals name, replay
and simulation start from an empty world and feed it the whole event log.
Everything is handed in before the first event (program versions, states,
earlier events): nothing here reads a database, so a batch cannot see
anything a lone event would not.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Container, Mapping
from dataclasses import replace

from levelup.engine.model import WHOLE, BookedEntry, Effects, Event, ParticipantState, ReversedEvent, apply_effects
from levelup.engine.scoring import score
from levelup.errors import FieldError, Invalid
from levelup.programs.compiled import CompiledProgram, Kept

FindReversed = Callable[[str], "ReversedEvent | None"]


class World:
    def __init__(
        self,
        version_of: Callable[[int], CompiledProgram],
        *,
        states: dict[str, ParticipantState] | None = None,
        find_earlier: FindReversed | None = None,
        reversed_earlier: Callable[[str], str | None] | None = None,
        today: dt.date | None = None,
        kept: Mapping[str, Kept] | None = None,
        remember: Container[str] | None = None,
    ) -> None:
        self.version_of = version_of  # a lookup in versions loaded beforehand, never a query
        self.today = today  # the local day tiers are reviewed on (live ingestion); None: tiers are not reviewed
        self.kept = kept  # the metric periods stored, as the version in force says (None: every period)
        self.states = states if states is not None else {}
        self._find_earlier = find_earlier or (lambda _id: None)
        self._reversed_earlier = reversed_earlier or (lambda _id: None)
        # the events whose effects a later reversal in this world may ask for (None: all of them); a simulation
        # keeps those itself across its worlds and remembers none here (holding each effects costs ~7 %)
        self._remember = remember
        self._booked: dict[str, Effects] = {}
        self.reversed_by: dict[str, str] = {}  # fully reversed event → the reversal that completed it
        self.refunded: dict[str, int] = {}  # event → share refunded so far (millionths), partial refunds included
        self._last_seq = 0

    def state(self, participant: str) -> ParticipantState:
        found = self.states.get(participant)
        if found is None:
            found = self.states[participant] = ParticipantState(participant)
        return found

    def _reversal_target(self, event: Event) -> ReversedEvent:
        assert event.reverses is not None
        target = self._booked_here(event.reverses) or self._find_earlier(event.reverses)
        if target is None:
            raise Invalid(
                f"event {event.reverses!r} to reverse is unknown",
                errors=[FieldError("reverses", f"no event {event.reverses!r} in this program")],
            )
        by = self.reversed_by.get(event.reverses) or self._reversed_earlier(event.reverses)
        if by is not None:
            raise Invalid(
                f"event {event.reverses!r} was already reversed by {by!r}",
                errors=[FieldError("reverses", f"already reversed by {by!r}")],
            )
        if target.event.reverses is not None:
            raise Invalid(
                "a reversal cannot itself be reversed",
                errors=[FieldError("reverses", f"{event.reverses!r} is a reversal")],
            )
        if target.event.participant != event.participant:
            raise Invalid(
                "a reversal belongs to the participant of the event it reverses",
                errors=[FieldError("participant", f"must be {target.event.participant!r}")],
            )
        refunded = self.refunded.get(event.reverses, target.refunded)
        if refunded + event.share > WHOLE:
            left = (WHOLE - refunded) / WHOLE
            raise Invalid(
                f"only {left:g} of event {event.reverses!r} is left to refund",
                errors=[FieldError("portion", f"at most {left:g}: earlier refunds took back {1 - left:g}")],
            )
        return replace(target, refunded=refunded)

    def _booked_here(self, event_id: str) -> ReversedEvent | None:
        """An event processed by this world, as a reversal sees it (built only when asked)."""
        effects = self._booked.get(event_id)
        if effects is None:
            return None
        return ReversedEvent(
            effects.event,
            effects.program_version,
            effects.teams,
            tuple(
                BookedEntry(e.key, e.currency, e.amount, e.kind, e.rule, e.rule_version, e.explain)
                for e in effects.ledger
            ),
        )

    def process(self, event: Event, program: CompiledProgram) -> Effects:
        """Score one event and fold its effects in; Invalid (changing nothing) for a bad reversal."""
        if event.seq == 0:
            event = replace(event, seq=self._last_seq + 1)
        self._last_seq = max(self._last_seq, event.seq)
        target = self._reversal_target(event) if event.reverses else None
        state = self.state(event.participant)
        original = self.version_of(target.program_version) if target is not None else None
        effects = score(program, state, event, target, original, self.today, self.kept)
        apply_effects(state, effects, track_metrics=bool(program.metric_grains or program.ranges))
        if target is not None:
            self.refunded[target.event.id] = target.refunded + event.share
            if target.refunded + event.share == WHOLE:
                self.reversed_by[target.event.id] = event.id
        if self._remember is None or event.id in self._remember:
            self._booked[event.id] = effects
        return effects
