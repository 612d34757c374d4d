"""The plain subset of CEL, evaluated in Python: field reads, comparisons, arithmetic, logic, ``timestamp()``.

Most conditions and awards are of this kind (``data.kind == "call" && data.duration_s >= 60``, ``100 +
data.amount / 100``). For them, handing the event to the Rust evaluator costs more than evaluating: its
fields are converted to CEL values (~2 µs a value) before the first expression runs. This module compiles
such an expression into Python closures that follow the numbers rule of :mod:`levelup.rules.expressions`
(every number a double) and answer only on the plain path. Anything else — a missing field or variable,
operands of different types, a division by zero, a map or list where a value is expected, a timestamp CEL
could read more precisely than Python — raises :class:`Unsure`, and the caller evaluates with CEL, which
gives the exact value or error. So a value given here is CEL's (differential tests in
``tests/engine/test_plain_expressions.py``); what is outside the subset is never compiled (None).
"""

from __future__ import annotations

import datetime as dt
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

Variables = Mapping[str, Any]
Compiled = Callable[[Variables], Any]
Token = tuple[str, str, int]  # kind (string, ident, number, other), text, offset in the source

#: RFC 3339 as both CEL and ``datetime.fromisoformat`` read it alike: at most microseconds (CEL keeps
#: nanoseconds, which Python would cut), an upper-case T and Z, an offset of at most 23:59 (Python reads
#: ``+00:60`` as an hour, CEL refuses it).
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)")
_PAIRS = frozenset({"&&", "||", "==", "!=", "<=", ">="})
_RELATIONS = frozenset({"==", "!=", "<", "<=", ">", ">="})
_LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None}
_ORDERED = frozenset({float, str, dt.datetime})  # the types < and > are answered for
_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class Unsure(Exception):
    """This evaluation left the plain path: CEL decides."""


class _Outside(Exception):
    """The source uses something outside the subset: it is not compiled here."""


def _scalar(value: Any) -> Any:
    """A value as an operand, numbers as doubles; a map, a list or anything else is CEL's to handle."""
    kind = type(value)
    if kind is int:
        return float(value)
    if kind is float or kind is str or kind is bool or value is None or kind is dt.datetime:
        return value
    raise Unsure


def _merged(tokens: list[Token]) -> list[Token]:
    """Two-character operators joined (the tokenizer yields one character at a time); whitespace dropped."""
    out: list[Token] = []
    for kind, text, at in tokens:
        if text.isspace():
            continue
        if out and kind == "other" and out[-1][0] == "other" and out[-1][2] + 1 == at:
            pair = out[-1][1] + text
            if pair in _PAIRS:
                out[-1] = ("other", pair, out[-1][2])
                continue
        out.append((kind, text, at))
    return out


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = _merged(tokens)
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def take(self, text: str | None = None) -> Token:
        if self.i >= len(self.tokens) or (text is not None and self.tokens[self.i][1] != text):
            raise _Outside
        self.i += 1
        return self.tokens[self.i - 1]

    def whole(self) -> Compiled:
        node = self.conditional()
        if self.i != len(self.tokens):
            raise _Outside
        return node

    def conditional(self) -> Compiled:
        test = self.either()
        if self.peek() != "?":
            return test
        self.take("?")
        yes = self.either()
        self.take(":")
        no = self.conditional()

        def choose(v: Variables) -> Any:
            chosen = test(v)
            if type(chosen) is not bool:
                raise Unsure
            return yes(v) if chosen else no(v)

        return choose

    def either(self) -> Compiled:
        node = self.both()
        while self.peek() == "||":
            self.take()
            node = _logic(node, self.both(), stop=True)
        return node

    def both(self) -> Compiled:
        node = self.relation()
        while self.peek() == "&&":
            self.take()
            node = _logic(node, self.relation(), stop=False)
        return node

    def relation(self) -> Compiled:
        left = self.sum()
        op = self.peek()
        if op not in _RELATIONS:
            return left
        self.take()
        node = _compare(op, left, self.sum())
        if self.peek() in _RELATIONS:
            raise _Outside  # a chain (a < b < c) is a type error CEL reports
        return node

    def sum(self) -> Compiled:
        node = self.product()
        while (op := self.peek()) in ("+", "-"):
            self.take()
            node = _arithmetic(op, node, self.product())
        return node

    def product(self) -> Compiled:
        node = self.unary()
        while (op := self.peek()) in ("*", "/"):
            self.take()
            node = _arithmetic(op, node, self.unary())
        return node

    def unary(self) -> Compiled:
        op = self.peek()
        if op not in ("!", "-"):
            return self.member()
        self.take()
        inner = self.unary()
        wanted = bool if op == "!" else float

        def negate(v: Variables) -> Any:
            value = _scalar(inner(v))
            if type(value) is not wanted:
                raise Unsure
            return not value if op == "!" else -value

        return negate

    def member(self) -> Compiled:
        node = self.primary()
        path: list[str] = []
        while self.peek() == ".":
            self.take()
            kind, name, _ = self.take()
            if kind != "ident" or self.peek() == "(":
                raise _Outside  # a method call
            path.append(name)
        if self.peek() in ("[", "(", "{"):
            raise _Outside
        if not path:
            return node
        if isinstance(node, _Variable):
            return _path(node.name, tuple(path))  # the common data.field: one closure
        for name in path:
            node = _field(node, name)
        return node

    def primary(self) -> Compiled:
        kind, text, _ = self.take()
        if text == "(":
            node = self.conditional()
            self.take(")")
            return node
        if kind == "number":
            if not re.fullmatch(r"\d+(\.\d*)?([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?", text):
                raise _Outside  # hexadecimal or unsigned: integers on purpose
            return _Constant(float(text))
        if kind == "string":
            if text[0] not in "'\"" or text[:3] in ("'''", '"""') or "\\" in text:
                raise _Outside  # raw, bytes, triple-quoted or with escapes
            return _Constant(text[1:-1])
        if kind != "ident":
            raise _Outside
        if text in _LITERALS:
            return _Constant(_LITERALS[text])
        if self.peek() == "(":
            if text != "timestamp":
                raise _Outside
            self.take("(")
            argument = self.conditional()
            self.take(")")
            return _timestamp(argument)
        return _Variable(text)


class _Constant:
    """A literal (its value known when compiling, so an operator beside it is specialised)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __call__(self, _v: Variables) -> Any:
        return self.value


class _Variable:
    """A top-level variable (``data``, ``participant``…); missing: CEL's error to give."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, v: Variables) -> Any:
        try:
            return v[self.name]
        except KeyError:
            raise Unsure from None


def _path(root: str, names: tuple[str, ...]) -> Compiled:
    """``root.a.b``: each step a map holding the field, else CEL's error to give."""
    if len(names) == 1:
        name = names[0]

        def read_one(v: Variables) -> Any:
            found = v.get(root)
            if type(found) is not dict or name not in found:
                raise Unsure
            return found[name]

        return read_one

    def read(v: Variables) -> Any:
        found = v.get(root)
        for step in names:
            if type(found) is not dict or step not in found:
                raise Unsure
            found = found[step]
        return found

    return read


def _field(parent: Compiled, name: str) -> Compiled:
    def read(v: Variables) -> Any:
        found = parent(v)
        if type(found) is not dict or name not in found:
            raise Unsure
        return found[name]

    return read


def _timestamp(argument: Compiled) -> Compiled:
    def parse(v: Variables) -> dt.datetime:
        text = argument(v)
        if type(text) is not str or not _RFC3339.fullmatch(text):
            raise Unsure
        try:
            return dt.datetime.fromisoformat(text)
        except ValueError:
            raise Unsure from None

    return parse


def _logic(left: Compiled, right: Compiled, *, stop: bool) -> Compiled:
    """``&&`` (stop on false) or ``||`` (stop on true); CEL's absorbing of an error on the left is its own."""

    def both(v: Variables) -> bool:
        first = _scalar(left(v))
        if type(first) is not bool:
            raise Unsure
        if first is stop:
            return stop
        second = _scalar(right(v))
        if type(second) is not bool:
            raise Unsure
        return second

    return both


def _compare(op: str, left: Compiled, right: Compiled) -> Compiled:
    test = _OPERATORS[op]
    ordered = op not in ("==", "!=")
    if isinstance(right, _Constant) and not isinstance(left, _Constant):
        b = _scalar_or_none(right.value)
        kind = type(b)
        if b is _NOT_SCALAR or (ordered and kind not in _ORDERED):
            return _unsure
        # the usual shape (data.duration_s >= 60): the literal's type and value known beforehand

        def against(v: Variables) -> bool:
            a = left(v)
            if type(a) is int:
                a = float(a)
            if type(a) is not kind:
                raise Unsure
            return bool(test(a, b))

        return against

    def compare(v: Variables) -> bool:
        a, b = _scalar(left(v)), _scalar(right(v))
        if type(a) is not type(b) or (ordered and type(a) not in _ORDERED):
            raise Unsure
        return bool(test(a, b))

    return compare


_NOT_SCALAR = object()


def _scalar_or_none(value: Any) -> Any:
    try:
        return _scalar(value)
    except Unsure:
        return _NOT_SCALAR


def _unsure(_v: Variables) -> Any:
    raise Unsure


def _arithmetic(op: str, left: Compiled, right: Compiled) -> Compiled:
    def compute(v: Variables) -> Any:
        a, b = _scalar(left(v)), _scalar(right(v))
        kind = type(a)
        if kind is not type(b) or not (kind is float or (kind is str and op == "+")):
            raise Unsure
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if b == 0.0:
            raise Unsure  # CEL's answer (an infinity, NaN) is its own
        return a / b

    return compute


def compile_plain(tokens: list[Token]) -> Compiled | None:
    """The expression as Python closures, or None when it is outside the plain subset. Its value is a
    double, a string, a bool or null; anything else (a timestamp, a map, a list) is left to CEL."""
    try:
        node = _Parser(tokens).whole()
    except _Outside:
        return None

    def evaluate(v: Variables) -> Any:
        value = node(v)
        kind = type(value)
        if kind is bool or kind is float or kind is str or value is None:
            return value
        if kind is int:
            return float(value)
        raise Unsure  # a timestamp, a map, a list: CEL gives it as it converts it

    return evaluate
