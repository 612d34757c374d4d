"""The plain subset of CEL evaluated in Python (``levelup.rules.plain``) gives CEL's answer whenever it
gives one: differential tests against the Rust evaluator over generated expressions and values.

1,000 generated expressions in CI (~10 s); ``LEVELUP_LONG_TESTS=1`` runs 30,000."""

from __future__ import annotations

import datetime as dt
import math
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from levelup.rules.expressions import Activation, Expression, condition_holds
from levelup.rules.plain import Unsure

LONG = bool(os.environ.get("LEVELUP_LONG_TESTS"))
FIELDS = ("a", "b", "c", "when", "kind")
TIMES = st.sampled_from(
    [
        "2026-10-01T09:00:00Z",
        "2026-10-01T09:00:00.5Z",
        "2026-10-01T11:00:00+02:00",
        "2026-10-01T03:15:00-05:45",
        "2026-10-01T09:00:00+00:60",  # minutes past 59: Python reads an hour, CEL refuses
        "2026-10-01T09:00:00-12:75",
        "2026-10-01T09:00:00.123456Z",
        "2026-10-01T09:00:00.1234567Z",  # nanoseconds: CEL's
        "2026-10-01 09:00:00Z",
        "2026-13-01T09:00:00Z",
        "2026-10-01",
    ]
)
VALUES = st.one_of(
    st.integers(-(10**6), 10**6),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 0.0, -0.0, 1, 2.5, "call", "email", "", "é", True, False, None]),
    TIMES,
    st.text(max_size=4),
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.sampled_from(FIELDS), st.integers(0, 5), max_size=2),
)
DATA = st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=5)


def _leaf() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(FIELDS).map(lambda f: f"data.{f}"),
        st.sampled_from(["data.c.a", "participant.id", "id", "type", "data", "nothing.x", "data.missing"]),
        st.integers(-3, 1000).map(str),
        st.sampled_from(["0", "0.0", "2.5", "1e3", ".5", "0x10", "3u", "-1"]),
        st.sampled_from(['"call"', "'email'", '""', '"a\\"b"', "r'raw'", "true", "false", "null"]),
        st.sampled_from(FIELDS).map(lambda f: f"timestamp(data.{f})"),
        st.sampled_from(['timestamp("2026-10-01T09:00:00Z")', "timestamp(occurred_at)", "size(data.kind)"]),
        st.sampled_from(["int(data.a)", "double(data.a)", "has(data.a)", "data.a in [1, 2]", "[1, 2]", "{'k': 1}"]),
    )


def _expression() -> st.SearchStrategy[str]:
    binary = st.sampled_from(["+", "-", "*", "/", "%", "==", "!=", "<", "<=", ">", ">=", "&&", "||"])
    return st.recursive(
        _leaf(),
        lambda inner: st.one_of(
            st.tuples(inner, binary, inner).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
            inner.map(lambda x: f"({x})"),
            inner.map(lambda x: f"!{x}"),
            inner.map(lambda x: f"-{x}"),
            st.tuples(inner, inner, inner).map(lambda t: f"{t[0]} ? {t[1]} : {t[2]}"),
        ),
        max_leaves=6,
    )


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if type(a) is float and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def _variables(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "data": data,
        "id": "e-1",
        "type": "deal.won",
        "occurred_at": dt.datetime(2026, 10, 1, 9, tzinfo=dt.UTC),
        "participant": {"id": "rep-1", "name": "Rep", "teams": ["east"], "attributes": {"quota": 10}, "segment": ""},
    }


def _by_cel(expression: Expression, variables: dict[str, Any]) -> tuple[str, Any]:
    """CEL's own answer (the plain path switched off): ("value", v) or ("error", exception type)."""
    try:
        return "value", expression.__class__(
            expression.source, expression._numeric, expression._native, expression._metered, None
        ).evaluate(Activation(dict(variables)))
    except Exception as exc:
        return "error", type(exc)


@settings(max_examples=30_000 if LONG else 1_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=_expression(), data=DATA)
def test_a_plain_answer_is_cels_answer(source: str, data: dict[str, Any]) -> None:
    try:
        expression = Expression.compile(source)
    except Exception:
        return  # CEL refuses it: it never reaches the plain path
    if expression._plain is None:
        return
    variables = _variables(data)
    try:
        plain = expression._plain(variables)
    except Unsure:
        return
    kind, cel = _by_cel(expression, variables)
    assert kind == "value", f"{source!r} over {data!r}: plain {plain!r}, CEL raised {cel}"
    assert _same(plain, cel), f"{source!r} over {data!r}: plain {plain!r}, CEL {cel!r}"


@pytest.mark.parametrize(
    ("source", "data", "expected"),
    [
        ('data.kind == "call" && data.duration_s >= 60', {"kind": "call", "duration_s": 75}, True),
        ('data.kind == "call" && data.duration_s >= 60', {"kind": "email", "duration_s": 75}, False),
        ("100 + data.amount / 100", {"amount": 12000}, 220.0),
        ("100 + data.amount / 100", {"amount": 12000.5}, 220.005),
        (
            "timestamp(data.done) <= timestamp(data.due)",
            {"done": "2026-10-01T09:00:00Z", "due": "2026-10-01T10:00:00+01:00"},
            True,
        ),
        ("data.x > 1 ? 'big' : 'small'", {"x": 3}, "big"),
        ("participant.attributes.quota * 2", {}, 20.0),
    ],
)
def test_the_common_shapes_are_answered_in_python_and_agree(source: str, data: dict[str, Any], expected: Any) -> None:
    expression = Expression.compile(source)
    assert expression._plain is not None
    variables = _variables(data)
    assert _same(expression._plain(variables), expected)
    assert _by_cel(expression, variables) == ("value", expected)


@pytest.mark.parametrize(
    "source",
    [
        "size(data.kind) > 2",
        "data.items.exists(i, i > 1)",
        "int(data.a) / 2",
        "data.a in [1, 2]",
        'data["a"]',
        "0x1F == data.a",
        'data.kind.startsWith("c")',
    ],
)
def test_what_is_outside_the_subset_is_left_to_cel(source: str) -> None:
    assert Expression.compile(source)._plain is None


@pytest.mark.parametrize(
    ("source", "data"),
    [
        ("data.missing == 1", {}),  # a missing field: CEL's error (a condition is then simply false)
        ("data.a / data.b", {"a": 1, "b": 0}),  # CEL's own infinity
        ("data.a == data.b", {"a": 1, "b": "1"}),  # different types
        ("data.a + 1", {"a": [1]}),  # a list where a number is wanted
        ("timestamp(data.a) < timestamp(data.b)", {"a": "2026-10-01T09:00:00.1234567Z", "b": "2026-10-01T09:00:00Z"}),
        ("timestamp(data.a) > timestamp(data.b)", {"a": "2026-10-01T09:00:00+00:60", "b": "2026-10-01T00:00:00Z"}),
    ],
)
def test_off_the_plain_path_cel_decides(source: str, data: dict[str, Any]) -> None:
    expression = Expression.compile(source)
    assert expression._plain is not None
    with pytest.raises(Unsure):
        expression._plain(_variables(data))
    # the public evaluation still answers as CEL does
    assert condition_holds(expression, Activation(_variables(data)))[0] == (
        _by_cel(expression, _variables(data)) == ("value", True)
    )
