"""The functional core stays pure: the engine imports only the program model, expressions, periods and errors.

Checked on the source (every import statement, also inside functions), so a
shortcut that reaches into storage, HTTP or a service fails here, not in review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "levelup"

# what the core may import from Levelup itself: the engine, and the pure modules it is built on
PURE = (
    "levelup.engine",
    "levelup.programs.compiled",
    "levelup.programs.document",
    "levelup.rules.expressions",
    "levelup.rules.plain",
    "levelup.metrics.periods",
    "levelup.errors",
)
# the pure modules outside engine/ (checked by the same rule, so purity is transitive)
PURE_FILES = [SRC / "programs" / "compiled.py", SRC / "programs" / "document.py", SRC / "rules" / "expressions.py"]
PURE_FILES += [SRC / "rules" / "plain.py"]
PURE_FILES += [SRC / "metrics" / "periods.py", SRC / "errors.py"]
EFFECTFUL = ("sqlalchemy", "fastapi", "starlette", "httpx", "redis", "psycopg", "uvicorn", "typer", "rich", "alembic")


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names if node.module == "levelup"]
    return found


def _core_files() -> list[Path]:
    return sorted((SRC / "engine").glob("*.py")) + PURE_FILES


@pytest.mark.parametrize("path", _core_files(), ids=lambda p: str(p.relative_to(SRC)))
def test_core_imports_only_pure_modules(path: Path) -> None:
    bad = [
        f"{path.relative_to(SRC)}:{line} imports {name}"
        for line, name in _imports(path)
        if (name.startswith("levelup") and name != "levelup" and not name.startswith(PURE))
        or name.split(".")[0] in EFFECTFUL
    ]
    assert not bad, "the functional core must stay pure:\n" + "\n".join(bad)


def test_nothing_pure_is_left_outside_the_engine() -> None:
    """The mechanics' old homes are gone, so nobody adds a second copy of a rule there."""
    for old in ("achievements/badges.py", "achievements/levels.py", "achievements/streaks.py", "challenges/goals.py"):
        assert not (SRC / old).exists(), f"{old} belongs under engine/"
    for old in ("challenges/quests.py", "ledger/positions.py", "tiers/policy.py"):
        assert not (SRC / old).exists(), f"{old} belongs under engine/"


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    """The rule catches an import of storage (so a passing run means something)."""
    sample = tmp_path / "x.py"
    sample.write_text("def f():\n    from levelup.storage import tables\n    import sqlalchemy\n")
    names = [name for _, name in _imports(sample)]
    assert "levelup.storage" in names and "sqlalchemy" in names
