"""Participants and teams: creation on first sight, profiles, and the engine state of a batch."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, tuple_

from levelup.engine.model import ParticipantState
from levelup.ledger.positions import Position
from levelup.storage import tables as t
from levelup.storage.sql import insert_ignore


@dataclass
class Loaded:
    """States of a batch's participants, with the internal ids the shell writes with."""

    states: dict[str, ParticipantState]
    ids: dict[str, int]
    team_ids: dict[str, int]


def ensure(connection: Connection, program_id: int, external_ids: Iterable[str]) -> tuple[dict[str, int], set[str]]:
    """Internal ids of these participants, creating the unknown ones; and which were created."""
    wanted = sorted(set(external_ids))
    if not wanted:
        return {}, set()
    query = select(t.participants.c.external_id, t.participants.c.id).where(
        t.participants.c.program_id == program_id, t.participants.c.external_id.in_(wanted)
    )
    found = dict(connection.execute(query).all())
    missing = [e for e in wanted if e not in found]
    if missing:
        now = dt.datetime.now(dt.UTC)
        insert_ignore(
            connection,
            t.participants,
            [{"program_id": program_id, "external_id": e, "attributes": {}, "created_at": now} for e in missing],
        )
        found = dict(connection.execute(query).all())
    return found, set(missing)


def forget(connection: Connection, ids: list[int]) -> None:
    """Remove participants created in this transaction that turned out to have nothing to them."""
    connection.execute(t.participants.delete().where(t.participants.c.id.in_(ids)))


def ensure_teams(connection: Connection, program_id: int, external_ids: Iterable[str]) -> dict[str, int]:
    wanted = sorted(set(external_ids))
    if not wanted:
        return {}
    query = select(t.teams.c.external_id, t.teams.c.id).where(
        t.teams.c.program_id == program_id, t.teams.c.external_id.in_(wanted)
    )
    found = dict(connection.execute(query).all())
    missing = [e for e in wanted if e not in found]
    if missing:
        insert_ignore(connection, t.teams, [{"program_id": program_id, "external_id": e} for e in missing])
        found = dict(connection.execute(query).all())
    return found


def lock(connection: Connection, ids: Iterable[int]) -> None:
    """Serialize writers per participant (in id order, so two batches cannot deadlock).

    SQLite has one writer at a time already (``BEGIN IMMEDIATE``).
    """
    if connection.dialect.name != "sqlite":
        connection.execute(
            select(t.participants.c.id)
            .where(t.participants.c.id.in_(sorted(set(ids))))
            .order_by(t.participants.c.id)
            .with_for_update()
        ).all()


def load_states(
    connection: Connection,
    program_id: int,
    ids: Mapping[str, int],
    periods: Mapping[str, set[str]],
    *,
    read_metrics: frozenset[str],
    counters: bool,
    mechanics: bool,
) -> Loaded:
    """Engine states of these participants, with their metrics and rule counters in ``periods``.

    Only the (participant, period) pairs asked for are read, through the primary
    keys, so a batch reads a few rows per event, not each participant's history.
    """
    by_id = {v: k for k, v in ids.items()}
    states: dict[str, ParticipantState] = {}
    internal = list(by_id)
    for row in connection.execute(
        select(
            t.participants.c.id,
            t.participants.c.name,
            t.participants.c.attributes,
            t.participants.c.status,
            t.participants.c.tier,
        ).where(t.participants.c.id.in_(internal))
    ):
        external = by_id[row.id]
        states[external] = ParticipantState(external, row.name, (), row.attributes or {}, row.status, row.tier)
    team_ids: dict[str, int] = {}
    memberships: dict[str, list[str]] = {}
    for member in connection.execute(
        select(t.memberships.c.participant_id, t.teams.c.external_id, t.teams.c.id)
        .join(t.teams, t.teams.c.id == t.memberships.c.team_id)
        .where(t.memberships.c.participant_id.in_(internal))
    ):
        memberships.setdefault(by_id[member.participant_id], []).append(member.external_id)
        team_ids[member.external_id] = member.id
    for external, team_list in memberships.items():
        states[external].teams = tuple(sorted(team_list))
    for held in connection.execute(select(t.positions).where(t.positions.c.participant_id.in_(internal))):
        states[by_id[held.participant_id]].positions[held.currency] = Position(
            held.available, held.arrears, held.earned
        )
    pairs = [(ids[p], period) for p, wanted in periods.items() for period in wanted]
    for external, state in states.items():
        state.periods = set(periods.get(external, ()))
    m = t.metric_totals.c
    wanted_metrics = sorted(read_metrics)
    for chunk in _chunks([(metric, period, "p", pid) for pid, period in pairs for metric in wanted_metrics], 2000):
        for subject_id, metric, period, value in connection.execute(
            select(m.subject_id, m.metric, m.period, m.value).where(
                m.program_id == program_id, tuple_(m.metric, m.period, m.subject_kind, m.subject_id).in_(chunk)
            )
        ):
            states[by_id[subject_id]].metrics[(metric, period)] = value
    for chunk in _chunks(pairs, 4000) if counters else ():
        c = t.rule_counters.c
        for participant_id, rule, period, count, last_at in connection.execute(
            select(c.participant_id, c.rule, c.period, c.count, c.last_at).where(
                tuple_(c.participant_id, c.period).in_(chunk)
            )
        ):
            state = states[by_id[participant_id]]
            state.counters[(rule, period)] = count
            if last_at is not None:
                state.last_award[rule] = last_at
    if mechanics:
        _load_mechanics(connection, internal, by_id, states)
    return Loaded(states, dict(ids), team_ids)


def _load_mechanics(
    connection: Connection, internal: list[int], by_id: dict[int, str], states: dict[str, ParticipantState]
) -> None:
    """Badges held, goals completed and streak runs of these participants."""
    b = t.badge_grants.c
    for pid, badge, grade, period in connection.execute(
        select(b.participant_id, b.badge, b.grade, b.period).where(
            b.participant_id.in_(internal), b.revoked_by.is_(None)
        )
    ):
        states[by_id[pid]].badges.add((badge, grade, period))
    c = t.challenge_completions.c
    for pid, challenge, period, reward in connection.execute(
        select(c.participant_id, c.challenge, c.period, c.reward).where(c.participant_id.in_(internal))
    ):
        states[by_id[pid]].completions[(challenge, period)] = tuple((cur, int(n)) for cur, n in reward)
    s = t.streak_runs.c
    for pid, streak, runs, best in connection.execute(
        select(s.participant_id, s.streak, s.runs, s.best).where(s.participant_id.in_(internal))
    ):
        states[by_id[pid]].streaks[streak] = (runs, best)


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def set_profile(
    connection: Connection,
    program_id: int,
    external_id: str,
    *,
    name: str | None,
    teams: list[str] | None,
    attributes: dict[str, Any] | None,
) -> bool:
    """Create or update a participant; returns whether it was created."""
    row = connection.execute(
        select(t.participants.c.id).where(
            t.participants.c.program_id == program_id, t.participants.c.external_id == external_id
        )
    ).first()
    participant_id = row.id if row else ensure(connection, program_id, [external_id])[0][external_id]
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = name
    if attributes is not None:
        changes["attributes"] = attributes
    if changes:
        connection.execute(t.participants.update().where(t.participants.c.id == participant_id).values(**changes))
    if teams is not None:
        team_ids = ensure_teams(connection, program_id, teams)
        connection.execute(t.memberships.delete().where(t.memberships.c.participant_id == participant_id))
        if team_ids:
            connection.execute(
                t.memberships.insert(),
                [{"participant_id": participant_id, "team_id": i} for i in team_ids.values()],
            )
    return row is None


def set_team(connection: Connection, program_id: int, external_id: str, *, name: str) -> None:
    team_id = ensure_teams(connection, program_id, [external_id])[external_id]
    connection.execute(t.teams.update().where(t.teams.c.id == team_id).values(name=name))
