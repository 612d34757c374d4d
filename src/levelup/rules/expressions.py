"""CEL expressions with the numeric behaviour a program admin expects.

CEL does not mix ``int`` and ``double`` in arithmetic, so ``data.amount / 100``
fails when ``amount`` arrives as ``12000.5`` and truncates when it arrives as
``999``. JSON has one number type, so we give CEL one too: every number in the
activation becomes a double and every integer literal in the source a double
literal. Expressions that need integers on purpose (``int(x) / 2``, list indexes)
fall back to the source as written over the values as they came.

Compiled once per program version (the Rust-backed ``cel`` evaluates in a few µs).

Cost: ``cel`` holds the GIL and cannot be interrupted, so every argument of a
comprehension macro after its variable is wrapped in a metering call
(:data:`METER`). The meter counts the steps of an event's expressions, the size of
what each step built and the time spent, and stops the evaluation past
:data:`BUDGET` (a problem on the event); each step runs Python, so other threads
(``/healthz``) get the GIL meanwhile.
Nested comprehensions (whose cost multiplies) are refused when a document is
applied (:func:`check_cost`).
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cel

from levelup.rules.plain import Compiled, Unsure, compile_plain

MACROS = re.compile(r"\.(map|filter|exists|exists_one|all)\s*\(")
BOUND = re.compile(r"\.(?:map|filter|exists|exists_one|all)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,")  # x of .map(x, …)
#: What an event's expressions see (``engine.scoring.activation_for``); a challenge's ``eligible`` sees participant.
EVENT_VARIABLES = frozenset({"id", "type", "data", "occurred_at", "participant"})
MACRO_NAMES = frozenset({"map", "filter", "exists", "exists_one", "all"})
MAX_MACROS = 3
MAX_PLUSES = 16
METER = "__levelup_meter"

# cel logs every failed Python function call; a stopped evaluation is reported as a problem instead
logging.getLogger("cel").addFilter(lambda record: METER not in record.getMessage())
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOKEN = re.compile(
    r"""(?P<string>[rRbB]{0,2}('''[\s\S]*?'''|\"\"\"[\s\S]*?\"\"\"|'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"))"""
    r"""|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)"""
    r"""|(?P<number>0[xX][0-9a-fA-F]+[uU]?|\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+[uU]?)"""
    r"""|(?P<other>[\s\S])"""
)


@dataclass(frozen=True)
class Budget:
    """What the expressions of one event may spend together: comprehension steps, bytes those steps
    built, and seconds."""

    steps: int = 50_000
    bytes: int = 4_000_000
    seconds: float = 0.1


BUDGET = Budget()
YIELD_EVERY = 0.001  # seconds of evaluation between two chances for other threads (/healthz) to run


class OverBudget(Exception):
    """An evaluation stopped because it ran past :data:`BUDGET`."""


class ExpressionError(ValueError):
    """A CEL expression that does not compile; ``column`` is 1-based where known."""

    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(message)
        self.column = column


def _as_doubles(source: str) -> str:
    """Rewrite integer literals as doubles, leaving strings, identifiers and indexes alone."""
    out: list[str] = []
    previous = ""
    for match in _TOKEN.finditer(source):
        text = match.group(0)
        if match.lastgroup == "number" and text.isdigit() and previous != "[":
            text += ".0"
        out.append(text)
        if not text.isspace():
            previous = text
    return "".join(out)


def _macro_arguments(source: str) -> list[tuple[list[int], int]]:
    """Every comprehension macro call: the offsets of its top-level commas and of its closing parenthesis."""
    code = [(m.group(0), m.start()) for m in _TOKEN.finditer(source) if not m.group(0).isspace()]
    found: list[tuple[list[int], int]] = []
    stack: list[list[int] | None] = []  # one entry per open bracket: its commas if it is a macro's
    for i, (text, at) in enumerate(code):
        if text in ("(", "[", "{"):
            is_macro = text == "(" and i >= 2 and code[i - 1][0] in MACRO_NAMES and code[i - 2][0] == "."
            stack.append([] if is_macro else None)
        elif text in (")", "]", "}") and stack:
            commas = stack.pop()
            if commas is not None:
                found.append((commas, at))
        elif text == "," and stack and stack[-1] is not None:
            stack[-1].append(at)
    return found


def _metered(source: str) -> str:
    """``source`` with each macro argument after the variable wrapped in ``METER(...)``."""
    inserts: list[tuple[int, str]] = []
    for commas, close in _macro_arguments(source):
        for n, comma in enumerate(commas):
            if n:
                inserts.append((comma, ")"))
            inserts.append((comma + 1, f"{METER}("))
        if commas:
            inserts.append((close, ")"))
    out = source
    for at, text in sorted(inserts, key=lambda x: x[0], reverse=True):
        out = out[:at] + text + out[at:]
    return out


def check_cost(source: str) -> None:
    """Refuse, when a document is applied, what the run-time budget cannot stop in time: comprehensions
    nested in one another (their steps multiply) and long chains of ``+``, whose concatenations copy a
    quadratic amount of text inside one uninterruptible call. (Stored versions still compile, metered.)"""
    pluses = sum(1 for m in _TOKEN.finditer(source) if m.group(0) == "+")
    if pluses > MAX_PLUSES:
        raise ExpressionError(f"at most {MAX_PLUSES} + operators (each copies what it joins)")
    spans = [(commas[0], close) for commas, close in _macro_arguments(source) if commas]
    for start, end in spans:
        if any(start < other_start and other_end < end for other_start, other_end in spans):
            raise ExpressionError(
                "a comprehension macro inside another one's body is not allowed (its cost multiplies)"
            )


class _Meter:
    """Counts the comprehension steps of one event's expressions, what they built and how long they
    ran; raises :class:`OverBudget` past :data:`BUDGET`."""

    __slots__ = ("bytes", "seconds", "started", "steps", "yielded")

    def __init__(self) -> None:
        self.steps = 0
        self.bytes = 0
        self.seconds = 0.0  # spent by the evaluations that ended
        self.started = 0.0  # when the running evaluation began
        self.yielded = 0.0  # when it last let other threads run

    def __enter__(self) -> None:
        self.started = self.yielded = time.perf_counter()

    def __exit__(self, *_: object) -> None:
        self.seconds += time.perf_counter() - self.started

    def __call__(self, value: Any) -> Any:
        self.steps += 1
        if isinstance(value, str | bytes | list | dict):
            self.bytes += len(value)
        if self.steps > BUDGET.steps:
            raise OverBudget(f"more than {BUDGET.steps} comprehension steps")
        if self.bytes > BUDGET.bytes:
            raise OverBudget(f"comprehension steps built more than {BUDGET.bytes} bytes")
        now = time.perf_counter()
        if self.seconds + now - self.started > BUDGET.seconds:
            raise OverBudget(f"ran longer than {BUDGET.seconds * 1000:g} ms")
        if now - self.yielded > YIELD_EVERY:
            time.sleep(0)  # hands the GIL over now, not at the interpreter's next switch (5 ms)
            self.yielded = now
        return value


def _doubles(value: Any) -> Any:
    """``value`` with every int in it (not bools) a float; other values as they are, not copied."""
    kind = type(value)
    if kind is int:
        return float(value)
    if kind is dict:
        return {k: float(v) if type(v) is int else _doubles(v) if type(v) in _NESTED else v for k, v in value.items()}
    if kind is list:
        return [float(v) if type(v) is int else _doubles(v) if type(v) in _NESTED else v for v in value]
    return value


_NESTED = frozenset({dict, list})


def _tokens(source: str) -> list[tuple[str, str, int]]:
    return [(m.lastgroup or "other", m.group(0), m.start()) for m in _TOKEN.finditer(source)]


def _compile(source: str) -> Any:
    try:
        return cel.compile(source)
    except ValueError as exc:
        text = str(exc)
        found = re.search(r"<input>:\d+:(\d+): (.*?)(?:\n|$)", text)
        if found:
            raise ExpressionError(found.group(2), int(found.group(1))) from None
        raise ExpressionError(text.splitlines()[0] if text else "invalid expression") from None


@dataclass(frozen=True)
class Expression:
    """A compiled expression; evaluate it with :meth:`evaluate` over an :class:`Activation`."""

    source: str
    _numeric: Any = field(repr=False, compare=False)
    _native: Any = field(repr=False, compare=False)
    _metered: bool = field(default=True, repr=False, compare=False)  # has comprehensions: steps counted, timed
    _plain: Compiled | None = field(default=None, repr=False, compare=False)  # the plain subset, in Python

    @classmethod
    def compile(cls, source: str) -> Expression:
        """Compile ``source`` (errors name columns of it as written), metered where it has macros."""
        if len(MACROS.findall(source)) > MAX_MACROS:
            raise ExpressionError(f"at most {MAX_MACROS} comprehension macros (map, filter, exists, exists_one, all)")
        native = _compile(source)
        metered = _metered(source)
        if metered != source:
            native = _compile(metered)
        numeric_source = _as_doubles(metered)
        numeric = native if numeric_source == metered else _compile(numeric_source)
        plain = None if metered != source else compile_plain(_tokens(source))
        return cls(source, numeric, native, metered != source, plain)

    @property
    def variables(self) -> frozenset[str]:
        """Top-level names the expression reads (``data``, ``participant``…)."""
        return frozenset(self._native.variables())

    def fields_read(self, root: str) -> frozenset[str] | None:
        """The fields of variable ``root`` the expression reads, when it reads it only as ``root.field``;
        None when it may read it whole (``size(data)``, ``data["k"]``, ``data.?k``, a macro variable of that
        name, a comment): the activation then gets it whole. Only the fields read are converted for CEL."""
        if "//" in self.source:  # a comment could pair quotes across lines and hide a read from the tokens
            return None
        code = [m.group(0) for m in _TOKEN.finditer(self.source) if not m.group(0).isspace()]
        fields: set[str] = set()
        for i, text in enumerate(code):
            if text != root or (i and code[i - 1] == "."):
                continue
            name = code[i + 2] if i + 2 < len(code) and code[i + 1] == "." else ""
            if not _IDENT.fullmatch(name):
                return None
            fields.add(name)
        return frozenset(fields)

    @property
    def free_variables(self) -> frozenset[str]:
        """:attr:`variables` less those comprehension macros bind: what the activation must provide."""
        return self.variables - frozenset(BOUND.findall(self.source))

    def evaluate(self, activation: Activation) -> Any:
        """The value, or an exception from CEL (KeyError for a missing field, :class:`OverBudget`).

        Only an expression with comprehensions is timed: one without has no loop to stop (the meter is never
        called in it), runs in a few µs, and the two clock reads would cost as much. One in the plain subset
        is answered in Python when it can be (:mod:`levelup.rules.plain`), without converting the event."""
        if self._plain is not None:
            try:
                return self._plain(activation.variables)
            except Unsure:
                pass
        if not self._metered:
            return self._execute(activation)
        try:
            with activation.meter:
                return self._execute(activation)
        except RuntimeError as exc:
            if METER in str(exc) and "OverBudget" in str(exc):
                raise OverBudget(f"expression stopped: {str(exc).split('OverBudget: ')[-1].split('. ')[0]}") from None
            raise

    def _execute(self, activation: Activation) -> Any:
        """Over doubles; over the values as they came when the source needs integers (a TypeError)."""
        try:
            return self._numeric.execute(activation.numeric)
        except TypeError:
            if self._native is self._numeric:
                raise
            return self._native.execute(activation.native)


class Activation:
    """The variables expressions see, converted to CEL once per event and shared by all its expressions."""

    __slots__ = ("_fields", "_meter", "_native", "_numeric", "variables")

    def __init__(self, variables: dict[str, Any], fields: Mapping[str, frozenset[str] | None] | None = None) -> None:
        self.variables = variables
        self._fields = fields  # per variable, the fields CEL is given (the others are never read); None: all
        self._meter: _Meter | None = None
        self._numeric: Any = None
        self._native: Any = None

    @property
    def meter(self) -> _Meter:
        """The event's comprehension budget, made when CEL first needs it (most events never do)."""
        if self._meter is None:
            self._meter = _Meter()
        return self._meter

    @property
    def numeric(self) -> Any:
        if self._numeric is None:
            self._numeric = self._context(_doubles(self._given()))
        return self._numeric

    @property
    def native(self) -> Any:
        if self._native is None:
            self._native = self._context(self._given())
        return self._native

    def _given(self) -> dict[str, Any]:
        """The variables as CEL gets them: each cut to the fields expressions read (a missing one stays
        missing), since converting a value for CEL is what costs."""
        fields = self._fields
        if not fields:
            return dict(self.variables)
        out = {}
        for name, value in self.variables.items():
            wanted = fields.get(name)
            out[name] = (
                value if wanted is None or type(value) is not dict else {k: value[k] for k in wanted if k in value}
            )
        return out

    def _context(self, variables: dict[str, Any]) -> Any:
        context = cel.Context(variables)
        context.add_function(METER, self.meter)
        return context


MAX_AMOUNT = 10**12


def condition_holds(expression: Expression | None, activation: Activation) -> tuple[bool, str | None]:
    """Whether a condition holds, and the error if it could not be evaluated.

    A condition that reads a missing field is simply false (no error); any other
    failure is false too, but reported so the admin can see the broken rule.
    """
    if expression is None:
        return True, None
    try:
        result = expression.evaluate(activation)
    except KeyError:
        return False, None
    except Exception as exc:
        return False, f"condition failed: {exc}"
    if not isinstance(result, bool):
        return False, f"condition gave {type(result).__name__}, not a bool"
    return result, None


def whole_amount(value: Any) -> int:
    """A computed award as a whole number: rounded down, bounded; raises ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"amount is {type(value).__name__}, not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"amount is {value}")
    amount = math.floor(value)
    if abs(amount) > MAX_AMOUNT:
        raise ValueError(f"amount {amount} is beyond ±{MAX_AMOUNT}")
    return amount
