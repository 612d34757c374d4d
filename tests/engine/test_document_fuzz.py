"""Validation never accepts what the engine then fails on (issue 14, part 3).

Hypothesis generates program documents, mostly coherent (keys that refer to what the document declares)
with CEL expressions from a small grammar, and then breaks them at random places (a value of another
type, an unknown key, a reference to nothing); and CEL strings on their own. The properties:

- validation answers every document with a document or :class:`Invalid` whose errors all name a path, and
  nothing else (no other exception), in bounded time;
- an expression compiles or raises :class:`ExpressionError`, and evaluates (over any event data) to a value
  or an ``Exception``, within the run-time budget;
- every accepted document compiles for the engine and scores a generated stream of events (any types, data
  of any JSON shape, reversals right and wrong) through :class:`World` with no exception but the
  documented :class:`Invalid` of a bad reversal or referral: a failing expression is a problem on the event.

Bounded here (a few seconds: 30 documents a property, 150 expressions); ``LEVELUP_LONG_TESTS=1`` runs 4,000
and 20,000 (a quarter of an hour or more on two cores).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import time
from collections.abc import Callable
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from levelup.engine.model import Event, TierStanding
from levelup.engine.world import World
from levelup.errors import Invalid
from levelup.programs.compiled import CompiledProgram
from levelup.programs.document import ProgramDocument
from levelup.programs.validation import load_document, validate_document
from levelup.rules.expressions import (
    EVENT_VARIABLES,
    Activation,
    Expression,
    ExpressionError,
    check_cost,
    condition_holds,
    whole_amount,
)

LONG = bool(os.environ.get("LEVELUP_LONG_TESTS"))
FUZZ = settings(
    max_examples=4000 if LONG else 30, deadline=None, suppress_health_check=list(HealthCheck), database=None
)
FUZZ_CEL = settings(FUZZ, max_examples=20_000 if LONG else 150)
VALIDATION_SECONDS = 2.0  # CPU for one document, however odd: validation is linear in it (1 MB at most)
EVALUATION_SECONDS = 1.0  # CPU for an expression: the budget stops it at 0.1 s of comprehension steps

EVENT_TYPES = ("deal.won", "activity.logged", "purchase.completed", "referral.made", "task.completed")
METRICS = ("deals", "revenue", "calls", "spend", "kinds")
CURRENCIES = ("xp", "coins", "beans")
TEAMS = ("east", "west")
PARTICIPANTS = ("ana", "bo", "cy")
WINDOWS = ("day", "week", "month", "quarter", "year", "all", "last_7_days", "last_365_days")
NOW = dt.datetime(2026, 11, 20, 15, 4, 5, tzinfo=dt.UTC)

# --------------------------------------------------------------------------- JSON values

numbers = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -1, 1, 0.5, 1e15, 1e16, -1e15, 2**53 + 1, 2**63, -(2**63), 10**12, 10**12 + 1]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=12))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(["amount", "kind", "a", "x", "1"]), inner, max_size=4),
    ),
    max_leaves=12,
)

# --------------------------------------------------------------------------- CEL

variables = st.sampled_from(
    [
        "data.amount",
        "data.kind",
        "data.duration_s",
        "data.x",
        "data",
        "participant.attributes.quota",
        "participant.teams",
        "participant.attributes",
        "type",
        "id",
        "occurred_at",
        "nothing",
    ]
)
literals = st.one_of(
    st.integers(-(2**64), 2**64).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(
        ["0", "1", "100", "1u", "0.0", "1e308", "-1", "true", "false", "null", "''", "'call'", "b'\\xff'", "[]", "{}"]
    ),
    st.text(alphabet="abc'\\\"é\n", max_size=5).map(lambda text: json.dumps(text)),
)


def _cel(leaf: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Expressions built from ``leaf`` up: operators, calls, macros, lists and maps (mixed key types too)."""

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        binary = st.sampled_from(["+", "-", "*", "/", "%", "==", "!=", "<", "<=", ">", ">=", "&&", "||", "in"])
        function = st.sampled_from(
            ["size", "int", "double", "uint", "string", "bytes", "bool", "duration", "timestamp", "type", "dyn", "has"]
        )
        method = st.sampled_from(["contains", "startsWith", "endsWith", "matches", "size"])
        macro = st.sampled_from(["map", "filter", "exists", "all", "exists_one"])
        return st.one_of(
            st.builds(lambda a, op, b: f"{a} {op} {b}", inner, binary, inner),
            st.builds(lambda op, a: f"{op}{a}", st.sampled_from(["!", "-"]), inner),
            st.builds(lambda a, b, c: f"{a} ? {b} : {c}", inner, inner, inner),
            st.builds(lambda f, a: f"{f}({a})", function, inner),
            st.builds(lambda a, m, b: f"{a}.{m}({b})", inner, method, inner),
            st.builds(
                lambda a, m, b: f"{a}.{m}(v, {b})", inner, macro, st.one_of(inner, st.just("v"), st.just("v * 2"))
            ),
            st.builds(lambda items: f"[{', '.join(items)}]", st.lists(inner, max_size=3)),
            st.builds(
                lambda pairs: "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}",
                st.lists(st.tuples(inner, inner), max_size=3),
            ),
            st.builds(lambda a, i: f"{a}[{i}]", inner, inner),
            st.builds(lambda a: f"({a})", inner),
        )

    return st.recursive(leaf, extend, max_leaves=8)


cel_sources = st.one_of(
    _cel(st.one_of(variables, literals)),
    st.text(alphabet="data.amount+-*/()[]{}'\"!?:<=>&|, 0123456789xyz_\\", max_size=40),  # mostly not CEL at all
)


# --------------------------------------------------------------------------- documents

usual = st.sampled_from(
    [
        "data.amount",
        "data.amount / 100",
        "100 + data.amount / 100",
        "data.kind == 'call'",
        "data.kind == 'call' && data.duration_s >= 60",
        "double(data.amount) > 0.0",
        "data.x",
        "size(data)",
        "participant.attributes.quota > 10",
        "'east' in participant.teams",
        "true",
    ]
)
expressions = st.one_of(usual, usual, _cel(st.one_of(variables, literals)))  # mostly what admins write
period = st.sampled_from(["day", "week", "month", "quarter", "year"])
window = st.sampled_from(WINDOWS)
event_type = st.sampled_from(EVENT_TYPES)


def rising(first: float = 0) -> st.SearchStrategy[list[float]]:
    """Steps' thresholds as validation wants them: from 0, rising strictly."""
    return st.lists(st.integers(1, 10_000), max_size=3, unique=True).map(lambda xs: [first, *sorted(xs)])


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A program document that uses every section, mostly valid: references name what it declares."""
    currencies = draw(st.lists(st.sampled_from(CURRENCIES), min_size=1, max_size=3, unique=True))
    spendable = draw(st.lists(st.sampled_from(currencies), max_size=len(currencies), unique=True))
    metrics = {
        key: draw(st.sampled_from(["count", "sum", "max", "distinct"]))
        for key in draw(st.lists(st.sampled_from(METRICS), min_size=1, max_size=4, unique=True))
    }
    metric = st.sampled_from(sorted(metrics))
    currency = st.sampled_from(currencies)
    constant = st.one_of(st.integers(-5, 10**12), st.floats(-5, 1e12))
    award = st.dictionaries(currency, st.one_of(constant, expressions), min_size=1, max_size=2)
    optional = st.fixed_dictionaries  # a field present or not
    doc: dict[str, Any] = {
        "program": "fuzz",
        "name": "Fuzz",
        "timezone": draw(st.sampled_from(["UTC", "America/New_York", "Pacific/Kiritimati", "Asia/Kolkata"])),
        "currencies": [
            {"key": key, "name": key.upper(), "spendable": key in spendable}
            | draw(
                optional(
                    {},
                    optional={
                        "expires_after": st.sampled_from(["P30D", "PT1S"]),
                        "pending": st.just("P1D"),
                        "expires_after_inactivity": st.just("P60D"),
                        "velocity": optional({"max": st.integers(1, 100), "per": period}),
                    },
                )
            )
            for key in currencies
        ],
        "metrics": [
            {"key": key, "event": draw(event_type), "aggregate": aggregate}
            | ({"value": draw(expressions)} if aggregate != "count" else {})
            | draw(optional({}, optional={"if": expressions}))
            for key, aggregate in metrics.items()
        ],
        "rules": [
            {"key": f"r{i}", "event": draw(event_type), "award": draw(award)}
            | draw(
                optional(
                    {},
                    optional={
                        "if": expressions,
                        "cap": optional({"max": st.integers(1, 3), "per": period}),
                        "cooldown": st.sampled_from(["PT1H", "P1D"]),
                    },
                )
            )
            for i in range(draw(st.integers(0, 3)))
        ],
    }
    steps = st.builds(lambda ats: [{"name": f"L{i}", "at": at} for i, at in enumerate(ats)], rising())
    sections: dict[str, st.SearchStrategy[Any]] = {
        "levels": st.one_of(
            st.builds(lambda c, s: {"currency": c, "steps": s}, currency, steps),
            st.builds(lambda m, s: {"metric": m, "steps": s}, metric, steps),
        ),
        "badges": st.lists(
            st.builds(
                lambda grades, repeat: {"name": "B", "grades": grades} | repeat,
                st.lists(
                    st.builds(
                        lambda when: {"name": "G", "when": when},
                        st.lists(
                            optional(
                                {
                                    "metric": metric,
                                    "window": st.sampled_from(WINDOWS[:6]),
                                    "at_least": st.floats(-10, 1e6),
                                }
                            ),
                            min_size=1,
                            max_size=2,
                        ),
                    ),
                    min_size=1,
                    max_size=2,
                ),
                optional({}, optional={"repeatable": period}),
            ),
            max_size=2,
        ),
        "streaks": st.lists(
            optional(
                {"metric": metric, "period": st.sampled_from(["day", "week", "month"])},
                optional={"at_least": st.floats(0, 10), "grace": st.integers(0, 3)},
            ),
            max_size=2,
        ),
        "challenges": st.lists(challenges(metric, award), max_size=3),
        "leaderboards": st.lists(
            st.one_of(
                st.builds(lambda m: {"metric": m}, metric), st.builds(lambda c: {"currency": c}, currency)
            ).flatmap(
                lambda board: optional(
                    {name: st.just(value) for name, value in board.items()},
                    optional={
                        "window": window,
                        "by": st.sampled_from(["participant", "team"]),
                        "normalize": st.just("participant.attributes.quota"),
                    },
                )
            ),
            max_size=2,
        ),
        "tiers": optional(
            {
                "metric": metric,
                "steps": rising().flatmap(
                    lambda ats: st.tuples(
                        *[
                            optional(
                                {"name": st.just(f"T{i}"), "at": st.just(at)},
                                optional={"multiplier": st.dictionaries(currency, st.floats(0, 1000), max_size=2)},
                            )
                            for i, at in enumerate(ats)
                        ]
                    ).map(list)
                ),
            },
            optional={"window": window, "demotion": st.sampled_from(["rerate", "one_step"]), "review": period},
        ),
        "rewards": st.lists(
            st.builds(lambda c, n: {"name": "R", "cost": {c: n}}, st.sampled_from(spendable), st.integers(1, 100)),
            max_size=2,
        )
        if spendable
        else st.just([]),
        "kudos": optional({"currency": currency, "budget": optional({"amount": st.integers(1, 50), "per": period})}),
        "referrals": optional(
            {"award": st.dictionaries(currency, st.integers(1, 100), min_size=1, max_size=1)},
            optional={"qualify": event_type, "event": event_type, "hold": st.just("P1D")},
        ),
    }
    for name, strategy in sections.items():
        if draw(st.booleans()):
            doc[name] = draw(strategy)
            if isinstance(doc[name], list):  # unique keys
                doc[name] = [{"key": f"{name[0]}{i}", **item} for i, item in enumerate(doc[name])]
    return doc


def challenges(metric: st.SearchStrategy[str], award: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A goal, quest or competition of any valid shape: recurring or dated, individual or team, auto targets,
    races and duels."""
    day = st.dates(dt.date(2026, 9, 1), dt.date(2027, 2, 1))
    when = st.one_of(
        st.builds(lambda p: {"every": p}, period),
        st.builds(lambda a, b: {"start": min(a, b).isoformat(), "end": max(a, b).isoformat()}, day, day),
    )
    target = st.floats(0.5, 1e5)
    goal = st.one_of(
        st.builds(
            lambda m, t, w, r: {"metric": m, "target": t} | w | r, metric, target, when, optional_reward(award)
        ).flatmap(
            lambda goal: st.one_of(
                st.just(goal),
                st.builds(lambda e: goal | {"eligible": e}, expressions),
                st.builds(
                    lambda teams: goal | {"mode": "team", "teams": teams},
                    st.lists(st.sampled_from(TEAMS), max_size=2, unique=True),
                ),
            )
        ),
        st.builds(
            lambda m, p, fb, r: {"metric": m, "target": "auto", "every": p, "auto": {"fallback": fb}} | r,
            metric,
            period,
            st.floats(1, 100),
            optional_reward(award),
        ),
    )
    quest = st.builds(
        lambda steps, w, r: {"kind": "quest", "steps": steps} | w | r,
        st.lists(
            st.builds(lambda m, t: {"metric": m, "target": t}, metric, st.floats(0.5, 100)), min_size=1, max_size=3
        ),
        when,
        optional_reward(award),
    )
    prizes = st.lists(
        st.builds(lambda rank, a: {"rank": rank, "award": a}, st.integers(1, 3), award), min_size=1, max_size=2
    )
    competition = st.builds(
        lambda m, p, w: {"kind": "competition", "metric": m, "prizes": p} | w, metric, prizes, when
    ).flatmap(
        lambda c: st.one_of(
            st.just(c),
            st.just(c | {"mode": "team"}),
            st.builds(lambda t: c | {"format": "race", "target": t}, target),
            st.just(c | {"format": "duel", "entrants": list(PARTICIPANTS[:2])}),
            st.just(c | {"format": "duel", "mode": "team", "teams": list(TEAMS)}),
        )
    )
    return st.one_of(goal, quest, competition).flatmap(
        lambda c: st.builds(lambda draft: c | {"draft": draft}, st.booleans())
    )


def optional_reward(award: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(st.just({}), st.builds(lambda a: {"reward": a}, award))


@st.composite
def broken(draw: st.DrawFn, base: st.SearchStrategy[dict[str, Any]]) -> Any:
    """A document with one to three nodes replaced by any JSON value, or an unknown key added."""
    doc: Any = json.loads(json.dumps(draw(base)))
    for _ in range(draw(st.integers(1, 3))):
        path: list[Any] = []
        node = doc
        while isinstance(node, dict | list) and node and draw(st.booleans()):
            step = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
            path.append(step)
            node = node[step]
        replacement = draw(json_values)
        if not path:
            if isinstance(doc, dict) and draw(st.booleans()):
                doc[draw(st.sampled_from(["extra", "rules", "metrics", "tiers"]))] = replacement
                continue
            doc = replacement
            continue
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        parent[path[-1]] = replacement
    return doc


# --------------------------------------------------------------------------- events


@st.composite
def streams(draw: st.DrawFn) -> list[Event]:
    """Events of every type the documents use (and one they do not), any data, some reversals."""
    out: list[Event] = []
    for n in range(draw(st.integers(1, 12))):
        participant = draw(st.sampled_from(PARTICIPANTS))
        data = draw(
            st.one_of(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "amount": numbers,
                        "kind": st.sampled_from(["call", "email", 1]),
                        "duration_s": numbers,
                        "referrer": st.sampled_from([*PARTICIPANTS, "zed"]),
                        "x": json_values,
                    },
                ),
                st.dictionaries(st.sampled_from(["amount", "x", "kind"]), json_values, max_size=3),
            )
        )
        earlier = [e for e in out if e.participant == participant and e.reverses is None]
        reverses = draw(st.sampled_from([None, *[e.id for e in earlier], "e-unknown"]))
        when = NOW + dt.timedelta(hours=draw(st.integers(-24 * 90, 24 * 90)))
        share = draw(st.sampled_from([1_000_000, 500_000, 250_000])) if reverses else 1_000_000
        out.append(
            Event(
                f"e{n}",
                draw(st.sampled_from([*EVENT_TYPES, "other.thing"])),
                participant,
                when,
                data,
                reverses,
                share=share,
            )
        )
    return out


def _within(seconds: float, run: Callable[[], Any]) -> Any:
    """``run()``, failing if it spent ``seconds`` of this thread's CPU (a hang; a loaded machine's stalls,
    which wall-clock time would count, are not one)."""
    started = time.thread_time()
    try:
        return run()
    finally:
        took = time.thread_time() - started
        assert took < seconds, f"took {took:.2f} s of CPU"


def _accepted(data: Any) -> ProgramDocument | None:
    """The validated document, or None after checking the refusal is a clean one (every error with a path)."""
    try:
        accepted: ProgramDocument = _within(VALIDATION_SECONDS, lambda: validate_document(data))
        return accepted
    except Invalid as refused:
        assert refused.errors, refused.detail
        for error in refused.errors:
            assert isinstance(error.path, str) and error.path and isinstance(error.message, str), error
        return None


def _score(doc: ProgramDocument, events: list[Event]) -> None:
    """Every event through a World; only a bad reversal or referral may be refused, and it changes nothing."""
    program = CompiledProgram(doc, 1)
    for kept in (None, program.kept):
        world = World(lambda _version: program, today=NOW.date(), kept=kept)
        for participant in PARTICIPANTS:
            state = world.state(participant)
            state.teams = TEAMS[: PARTICIPANTS.index(participant)]
            state.attributes = {"quota": [0, 50_000.5, "x"][PARTICIPANTS.index(participant)]}
            if doc.tiers is not None:
                state.tier_value, state.tier_standing = 0.0, TierStanding(None, None, None)
        for event in events:
            try:
                effects = world.process(event, program)
            except Invalid as refused:
                assert refused.errors or refused.detail
                continue
            for problem in effects.problems:  # a variable the document may read is always given to it
                assert not any(f"function: '{name}'" in problem.message for name in EVENT_VARIABLES), problem


# --------------------------------------------------------------------------- the properties


@FUZZ
@given(documents(), streams())
def test_every_accepted_document_scores_any_stream(data: dict[str, Any], events: list[Event]) -> None:
    doc = _accepted(data)
    if doc is not None:
        _score(doc, events)


@FUZZ
@given(broken(documents()))
def test_validation_refuses_broken_documents_cleanly(data: Any) -> None:
    doc = _accepted(data)
    if doc is not None:  # the break happened to be harmless (a number for a number): it must still score
        _score(doc, [Event("e", t, "ana", NOW, {"amount": 1}) for t in EVENT_TYPES])


YAML_ODDITIES = (
    "!!binary ZGF0YS5hbW91bnQgKw==",
    "!!set {? a, ? b}",
    "!!omap [a: 1, b: 2]",
    "!!python/object/apply:os.getcwd []",
    "!!timestamp 2026-01-01T00:00:00Z",
    "&x [*x]",
    "*nowhere",
    "{? [a, b]: 1}",
    ".inf",
    ".nan",
    "0x1F",
    "1_000",
    "0o17",
    "2026-01-01",
    "'\\x00'",
    '"\\0"',
    "~",
    "!!str 5",
    "!!int '7'",
    "|\n  data.amount",
)


@FUZZ
@given(documents(), st.data())
def test_yaml_text_with_any_construct_is_refused_cleanly_or_scores(data: dict[str, Any], draw: st.DataObject) -> None:
    """The document as YAML text, one value replaced by a construct JSON does not have (tags, aliases, complex
    keys, special numbers): a clean refusal, or a document the engine compiles and scores."""
    lines = yaml.safe_dump(data, sort_keys=False).splitlines()
    values = [i for i, line in enumerate(lines) if re.match(r"^\s*(- )?[a-z_]+: \S", line)]
    if values:
        at = draw.draw(st.sampled_from(values))
        key = lines[at].split(":", 1)[0]
        lines[at] = f"{key}: {draw.draw(st.sampled_from(YAML_ODDITIES))}"
    try:
        doc = _within(VALIDATION_SECONDS, lambda: load_document("\n".join(lines)))
    except Invalid as refused:
        assert refused.detail and all(e.path for e in refused.errors)
        return
    _score(doc, [Event("e", t, "ana", NOW, {"amount": 1}) for t in EVENT_TYPES])


@FUZZ_CEL
@given(cel_sources, json_values, json_values)
def test_an_expression_compiles_or_is_refused_and_evaluates_within_its_budget(
    source: str, data: Any, quota: Any
) -> None:
    try:
        expression = _within(EVALUATION_SECONDS, lambda: Expression.compile(source))
        _within(EVALUATION_SECONDS, lambda: check_cost(source))
    except ExpressionError:
        return
    activation = Activation(
        {
            "data": data if isinstance(data, dict) else {"x": data},
            "participant": {"attributes": {"quota": quota}, "teams": list(TEAMS)},
            "type": "deal.won",
            "id": "e",
            "occurred_at": NOW,
        }
    )
    holds, _problem = _within(EVALUATION_SECONDS, lambda: condition_holds(expression, activation))
    assert isinstance(holds, bool)
    try:
        value = _within(EVALUATION_SECONDS, lambda: expression.evaluate(activation))
    except Exception:  # what scoring catches and reports as a problem on the event
        return
    with contextlib.suppress(ValueError):  # not a number, or beyond the bound: a problem on the event
        whole_amount(value)


# --------------------------------------------------------------------------- what the fuzzing found


def _document(**sections: Any) -> dict[str, Any]:
    base = {"program": "fuzz", "name": "Fuzz", "currencies": [{"key": "xp", "name": "XP"}]}
    base["metrics"] = [{"key": "deals", "event": "deal.won", "aggregate": "count"}]
    return base | sections


def _refusals(data: Any) -> dict[str, str]:
    try:
        validate_document(data)
    except Invalid as refused:
        return {e.path: e.message for e in refused.errors}
    return {}


def test_a_distinct_value_whose_keys_mix_types_is_a_problem_not_a_crash() -> None:
    """Found: a distinct metric's value {1: 'a', 'b': 2} (a CEL map may mix key types) raised TypeError in
    scoring (sorting its keys to write the value's key)."""
    doc = validate_document(
        _document(metrics=[{"key": "kinds", "event": "deal.won", "aggregate": "distinct", "value": "{1: 'a', 'b': 2}"}])
    )
    program = CompiledProgram(doc, 1)
    effects = World(lambda _version: program).process(Event("e", "deal.won", "ana", NOW, {}), program)
    assert [p.source for p in effects.problems] == ["metric:kinds"] and "mixed types" in effects.problems[0].message
    assert effects.samples == []


def test_a_challenge_reward_expression_is_checked_and_sees_the_event() -> None:
    """Found: a goal's reward expression was not checked by validation (an invalid int literal was accepted,
    then compiling the version failed), and when valid it never saw the event's variables (``data``), so it
    failed on every completion."""
    goal = {"key": "g", "metric": "deals", "target": 1, "every": "week"}
    assert _refusals(_document(challenges=[goal | {"reward": {"xp": "9223372036854775808"}}])) == {
        "challenges[0].reward.xp": "CEL syntax error at column 1: invalid int literal"
    }
    doc = validate_document(_document(challenges=[goal | {"reward": {"xp": "data.amount / 2"}}]))
    program = CompiledProgram(doc, 1)
    effects = World(lambda _version: program).process(Event("e", "deal.won", "ana", NOW, {"amount": 50}), program)
    assert effects.problems == []
    assert [(e.currency, e.amount) for e in effects.ledger] == [("xp", 25)]


def test_what_is_paid_without_an_event_is_a_constant() -> None:
    """Found: prizes and team goals' rewards took expressions, which the closing job (no event to read)
    silently skipped: nothing was paid."""
    prize = {
        "key": "c",
        "kind": "competition",
        "metric": "deals",
        "every": "week",
        "prizes": [{"rank": 1, "award": {"xp": "10"}}],
    }
    team = {
        "key": "t",
        "metric": "deals",
        "target": 5,
        "every": "week",
        "mode": "team",
        "reward": {"xp": "data.amount"},
    }
    refused = _refusals(_document(challenges=[prize, team]))
    assert refused == {
        "challenges[0].prizes[0].award.xp": "a constant amount (there is no event to compute from)",
        "challenges[1].reward.xp": "a constant amount (there is no event to compute from)",
    }


def test_an_expression_reading_an_unknown_variable_is_refused() -> None:
    """Found: ``dta.amount`` (a typo) was accepted and failed on every event; comprehension variables are
    not unknown, and ``eligible`` sees the participant only."""
    rules = [
        {"key": "typo", "event": "deal.won", "award": {"xp": "dta.amount"}},
        {"key": "fine", "event": "deal.won", "if": "data.items.exists(i, i.sku == 'x')", "award": {"xp": 1}},
    ]
    eligible = {"key": "g", "metric": "deals", "target": 1, "every": "week", "eligible": "data.amount > 1"}
    assert _refusals(_document(rules=rules, challenges=[eligible])) == {
        "rules[0].award.xp": "unknown variable(s) dta; known: data, id, occurred_at, participant, type",
        "challenges[0].eligible": "unknown variable(s) data; known: participant",
    }


def test_a_source_mapping_may_use_a_comprehension() -> None:
    """Found on the way: a CRM source's mapping with ``item.lines.exists(l, …)`` was refused (``l`` taken for an
    unknown variable); a real unknown one still is."""
    mapping = {"type": "deal.won", "id": "item.id", "participant": "item.owner"}
    source = {"key": "crm", "kind": "webhook", "secret": {"env": "S"}}
    fine = source | {"events": [mapping | {"when": "item.lines.exists(l, l.sku == 'x')"}]}
    typo = source | {"events": [mapping | {"when": "itme.paid"}]}
    assert _refusals(_document(sources=[fine])) == {}
    assert _refusals(_document(sources=[typo])) == {"sources[0].events[0].when": "unknown variable(s): itme"}


def test_a_key_of_another_type_is_a_clean_refusal() -> None:
    """Found: a currency whose key was a list or a map raised TypeError (unhashable) in validation: a 500."""
    odd_keys: tuple[Any, ...] = ([], {"a": 1})
    for key in odd_keys:
        data = _document(
            currencies=[{"key": key, "name": "XP"}], rules=[{"key": "r", "event": "deal.won", "award": {"xp": 1}}]
        )
        refused = _refusals(data)
        assert "currencies[0].key" in refused and refused["rules[0].award.xp"] == 'unknown currency "xp"'


def test_binary_yaml_is_refused() -> None:
    """Found: a YAML ``!!binary`` expression passed the CEL check (it looks at text) and pydantic decoded it
    to text, so an invalid expression reached the engine, which could not compile the version."""
    text = "program: fuzz\nname: F\ncurrencies: [{key: xp, name: XP}]\n"
    text += "rules: [{key: r, event: deal.won, award: {xp: !!binary ZGF0YS5hbW91bnQgKw==}}]\n"
    try:
        load_document(text)
    except Invalid as refused:
        assert "binary (!!binary) is not JSON" in refused.detail and "line 4" in refused.detail
    else:
        raise AssertionError("accepted")
