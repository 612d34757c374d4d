"""Participants and teams: creation on first sight, profiles, and the engine state of a batch."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table, bindparam, select

from levelup.audit import service as audit
from levelup.engine.model import ParticipantState
from levelup.engine.positions import Position
from levelup.errors import NotFound
from levelup.feed import service as feed
from levelup.feed.service import FeedItem
from levelup.leaderboards import normalised, windows
from levelup.programs.compiled import CompiledProgram
from levelup.storage import tables as t
from levelup.storage.sql import allocate_ids, fetch_by_keys, insert_ignore


@dataclass
class Loaded:
    """States of a batch's participants, with the internal ids the shell writes with."""

    states: dict[str, ParticipantState]
    ids: dict[str, int]
    team_ids: dict[str, int]


def ensure(connection: Connection, program_id: int, external_ids: Iterable[str]) -> tuple[dict[str, int], set[str]]:
    """Internal ids of these participants, creating the unknown ones; and which were created.

    New participants get ids in the order they are named (first appearance), as if their events had
    come one at a time (ids order ties on boards), while rows are inserted in external-id order, so
    two writers creating the same participants never wait on each other in opposite orders.
    """
    wanted = list(dict.fromkeys(external_ids))
    if not wanted:
        return {}, set()
    keyed = sorted((e,) for e in wanted)

    def lookup() -> dict[str, int]:
        return {
            external: pid
            for external, pid in fetch_by_keys(
                connection,
                t.participants,
                fixed={"program_id": program_id},
                keys=["external_id"],
                values=keyed,
                columns=["external_id", "id"],
            )
        }

    found = lookup()
    missing = [e for e in wanted if e not in found]
    if missing:
        now = dt.datetime.now(dt.UTC)
        numbered = sorted(zip(missing, allocate_ids(connection, t.participants, "id", len(missing)), strict=True))
        insert_ignore(
            connection,
            t.participants,
            [
                {"id": pid, "program_id": program_id, "external_id": e, "attributes": {}, "created_at": now}
                for e, pid in numbered
            ],
        )
        found = lookup()
    return found, set(missing)


def renumber(connection: Connection, moved: Mapping[int, int]) -> None:
    """Give participants created in this transaction (nothing refers to them yet) other ids: old → new,
    through negative ids so no two rows ever share one."""
    p = t.participants.c
    connection.execute(t.participants.update().where(p.id.in_(list(moved))).values(id=-p.id))
    connection.execute(
        t.participants.update().where(p.id == bindparam("old")).values(id=bindparam("new")),
        [{"old": -old, "new": new} for old, new in moved.items()],
    )


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


def lock_known(connection: Connection, program_id: int, external_ids: Iterable[str]) -> None:
    """Lock those of these participants that exist, in id order: a batch scored in parts takes them all
    before its first part, so two such batches cannot wait on each other in opposite orders."""
    if connection.dialect.name != "sqlite":
        p = t.participants.c
        found = select(p.id).where(p.program_id == program_id, p.external_id.in_(sorted(set(external_ids))))
        lock(connection, connection.execute(found).scalars())


def load_states(
    connection: Connection,
    program_id: int,
    ids: Mapping[str, int],
    periods: Mapping[str, set[str]],
    *,
    read_metrics: frozenset[str],
    counters: bool,
    mechanics: frozenset[str],
) -> Loaded:
    """Engine states of these participants, with their metrics and rule counters in ``periods``.

    Only the (participant, period) pairs asked for are read, through the primary
    keys, so a batch reads a few rows per event, not each participant's history.
    """
    by_id = {v: k for k, v in ids.items()}
    states: dict[str, ParticipantState] = {}
    internal = list(by_id)
    keyed = [(i,) for i in internal]
    for pid, name, attributes, status, tier in fetch_by_keys(
        connection,
        t.participants,
        fixed={},
        keys=["id"],
        values=keyed,
        columns=["id", "name", "attributes", "status", "tier"],
    ):
        external = by_id[pid]
        states[external] = ParticipantState(external, name, (), attributes or {}, status, tier)
    team_ids: dict[str, int] = {}
    memberships: dict[str, list[str]] = {}
    if internal:
        m, tm = t.memberships.c, t.teams.c
        for pid, team_id, team in connection.execute(
            select(m.participant_id, m.team_id, tm.external_id)
            .join(t.teams, tm.id == m.team_id)
            .where(m.participant_id.in_(internal))
        ):
            team_ids[team] = team_id
            memberships.setdefault(by_id[pid], []).append(team)
    for external, team_list in memberships.items():
        states[external].teams = tuple(sorted(team_list))
    for pid, currency, available, arrears, earned in fetch_by_keys(
        connection,
        t.positions,
        fixed={},
        keys=["participant_id"],
        values=keyed,
        columns=["participant_id", "currency", "available", "arrears", "earned"],
    ):
        states[by_id[pid]].positions[currency] = Position(available, arrears, earned)
    pairs = [(ids[p], period) for p, wanted in periods.items() for period in wanted]
    for external, state in states.items():
        state.periods = set(periods.get(external, ()))
    metrics = sorted(read_metrics)
    wanted = [(metric, period, pid) for pid, period in pairs for metric in metrics]
    for subject_id, metric, period, value in fetch_by_keys(
        connection,
        t.metric_totals,
        fixed={"program_id": program_id, "subject_kind": "p"},
        keys=["metric", "period", "subject_id"],
        values=wanted,
        columns=["subject_id", "metric", "period", "value"],
    ):
        states[by_id[subject_id]].metrics[(metric, period)] = value
    if counters:
        for participant_id, rule, period, count, last_at in fetch_by_keys(
            connection,
            t.rule_counters,
            fixed={},
            keys=["participant_id", "period"],
            values=pairs,
            columns=["participant_id", "rule", "period", "count", "last_at"],
        ):
            state = states[by_id[participant_id]]
            state.counters[(rule, period)] = count
            if last_at is not None:
                state.last_award[rule] = last_at
    if mechanics:
        _load_mechanics(connection, internal, by_id, states, mechanics)
    return Loaded(states, dict(ids), team_ids)


def _load_mechanics(
    connection: Connection,
    internal: list[int],
    by_id: dict[int, str],
    states: dict[str, ParticipantState],
    kinds: frozenset[str],
) -> None:
    """Badges held, goals completed, streak runs and quest progress of these participants: only the
    ``kinds`` the program has (``badges``, ``completions``, ``streaks``, ``quests``), a query each."""

    def rows(table: Table, columns: list[str]) -> list[tuple[Any, ...]]:
        keyed = [(i,) for i in internal]
        return fetch_by_keys(
            connection, table, fixed={}, keys=["participant_id"], values=keyed, columns=["participant_id", *columns]
        )

    if "badges" in kinds:
        for pid, badge, grade, period, revoked_by in rows(t.badge_grants, ["badge", "grade", "period", "revoked_by"]):
            if revoked_by is None:
                states[by_id[pid]].badges.add((badge, grade, period))
    if "completions" in kinds:
        for pid, challenge, period, reward in rows(t.challenge_completions, ["challenge", "period", "reward"]):
            states[by_id[pid]].completions[(challenge, period)] = tuple((cur, int(n)) for cur, n in reward)
    if "streaks" in kinds:
        for pid, streak, qualifying, best in rows(t.streak_runs, ["streak", "periods", "best"]):
            states[by_id[pid]].streaks[streak] = (qualifying, best)
    if "quests" in kinds:
        for pid, challenge, period, baselines in rows(t.quest_progress, ["challenge", "period", "baselines"]):
            states[by_id[pid]].quests[(challenge, period)] = tuple((float(b), int(at)) for b, at in baselines)


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
    if attributes is not None:  # a new handicap moves the participant on the normalised boards
        normalised.refresh(connection, program_id, [participant_id])
        windows.handicaps_changed(connection, program_id, [participant_id])
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


def find_id(connection: Connection, program_id: int, external_id: str) -> int:
    found = connection.execute(
        select(t.participants.c.id).where(
            t.participants.c.program_id == program_id, t.participants.c.external_id == external_id
        )
    ).scalar_one_or_none()
    if found is None:
        raise NotFound(f"no participant {external_id!r}")
    return int(found)


def set_status(
    connection: Connection,
    program_id: int,
    external_id: str,
    status: str,
    *,
    note: str,
    actor: str,
    now: dt.datetime | None = None,
) -> None:
    """Suspend or reactivate: a suspended participant earns nothing (events are still recorded, with a note)
    and redeems nothing. Audited, and told on the feed."""
    participant_id = find_id(connection, program_id, external_id)
    lock(connection, [participant_id])
    now = now or dt.datetime.now(dt.UTC)
    connection.execute(t.participants.update().where(t.participants.c.id == participant_id).values(status=status))
    detail = {"participant": external_id, "status": status, "note": note}
    audit.record(connection, program_id, actor, "participant.status", detail, now)
    feed.publish(connection, program_id, [FeedItem(external_id, "status", {"status": status}, now)])


def assignments(
    connection: Connection, program_id: int, externals: list[str] | None
) -> dict[str, tuple[tuple[dt.datetime, str], ...]]:
    """Segment assignments, oldest first, of these participants (None: everyone in the program)."""
    s, p = t.segment_assignments.c, t.participants.c
    query = (
        select(p.external_id, s.effective_at, s.segment)
        .join(t.participants, p.id == s.participant_id)
        .where(s.program_id == program_id)
        .order_by(s.participant_id, s.effective_at)
    )
    if externals is not None:
        query = query.where(p.external_id.in_(externals))
    found: dict[str, list[tuple[dt.datetime, str]]] = {}
    for external, at, segment in connection.execute(query):
        found.setdefault(external, []).append((at, segment))
    return {external: tuple(rows) for external, rows in found.items()}


def load_inputs(
    connection: Connection, program_id: int, compiled: CompiledProgram, states: Mapping[str, ParticipantState]
) -> None:
    """What the shell hands the engine beyond the stored state, only where the document needs it: each
    participant's segment assignments (when a condition reads ``participant.segment``). Replay loads the
    same rows (:func:`preload_inputs`), so both read the segment in force at each event's time."""
    if not compiled.reads_segment or not states:
        return
    for external, rows in assignments(connection, program_id, list(states)).items():
        states[external].segments = rows


def stored_inputs(
    connection: Connection, program_id: int
) -> tuple[dict[str, tuple[tuple[dt.datetime, str], ...]], dict[str, dict[tuple[str, str], float]]]:
    """Every participant's segment assignments and frozen ``target: auto`` targets (by external id), as live
    scoring was handed them: for replay and simulation."""
    f, p = t.personal_targets.c, t.participants.c
    targets: dict[str, dict[tuple[str, str], float]] = {}
    for external, challenge, period, target in connection.execute(
        select(p.external_id, f.challenge, f.period, f.target)
        .join(t.participants, p.id == f.participant_id)
        .where(f.program_id == program_id)
    ):
        targets.setdefault(external, {})[(challenge, period)] = float(target)
    return assignments(connection, program_id, None), targets


def preload_inputs(connection: Connection, program_id: int, state: Callable[[str], ParticipantState]) -> None:
    """Hand a world's states (``state``) the stored inputs, before replay scores the log."""
    segments, targets = stored_inputs(connection, program_id)
    for external, rows in segments.items():
        state(external).segments = rows
    for external, frozen in targets.items():
        state(external).targets.update(frozen)
