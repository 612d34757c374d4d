"""CEL expressions with the numeric behaviour a program admin expects.

CEL does not mix ``int`` and ``double`` in arithmetic, so ``data.amount / 100``
fails when ``amount`` arrives as ``12000.5`` and truncates when it arrives as
``999``. JSON has one number type, so we give CEL one too: every number in the
activation becomes a double and every integer literal in the source a double
literal. Expressions that need integers on purpose (``int(x) / 2``, list indexes)
fall back to the source as written over the values as they came.

Compiled once per program version (the Rust-backed ``cel`` evaluates in a few µs).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import cel

MACROS = re.compile(r"\.(map|filter|exists|exists_one|all)\s*\(")
MAX_MACROS = 3
_TOKEN = re.compile(
    r"""(?P<string>[rRbB]{0,2}('''[\s\S]*?'''|\"\"\"[\s\S]*?\"\"\"|'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"))"""
    r"""|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)"""
    r"""|(?P<number>0[xX][0-9a-fA-F]+[uU]?|\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+[uU]?)"""
    r"""|(?P<other>[\s\S])"""
)


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


def _doubles(value: Any) -> Any:
    kind = type(value)
    if kind is int:
        return float(value)
    if kind is dict:
        return {k: _doubles(v) if type(v) in _CONTAINERS else v for k, v in value.items()}
    if kind is list:
        return [_doubles(v) if type(v) in _CONTAINERS else v for v in value]
    return value


_CONTAINERS = frozenset({int, dict, list})


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

    @classmethod
    def compile(cls, source: str) -> Expression:
        if len(MACROS.findall(source)) > MAX_MACROS:
            raise ExpressionError(f"at most {MAX_MACROS} comprehension macros (map, filter, exists, all)")
        native = _compile(source)
        numeric_source = _as_doubles(source)
        numeric = native if numeric_source == source else _compile(numeric_source)
        return cls(source, numeric, native)

    @property
    def variables(self) -> frozenset[str]:
        """Top-level names the expression reads (``data``, ``participant``…)."""
        return frozenset(self._native.variables())

    def evaluate(self, activation: Activation) -> Any:
        """The value, or an exception from CEL (KeyError for a missing field)."""
        try:
            return self._numeric.execute(activation.numeric)
        except TypeError:
            if self._native is self._numeric:
                raise
            return self._native.execute(activation.native)


class Activation:
    """The variables expressions see, converted to CEL once per event and shared by all its expressions."""

    __slots__ = ("_native", "_numeric", "variables")

    def __init__(self, variables: dict[str, Any]) -> None:
        self.variables = variables
        self._numeric: Any = None
        self._native: Any = None

    @property
    def numeric(self) -> Any:
        if self._numeric is None:
            self._numeric = cel.Context(_doubles(self.variables))
        return self._numeric

    @property
    def native(self) -> Any:
        if self._native is None:
            self._native = cel.Context(dict(self.variables))
        return self._native


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
