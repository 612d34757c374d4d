"""One writer per record of truth: only ``ledger/posting.py`` writes ledger entries and balances, only
``feed/service.py`` the live feed, only ``audit/service.py`` the audit log.

Checked on the source, so a new feature cannot slip in a second writer; that the fold of the
ledger equals positions after every kind of posting is checked against the databases by
``test_ledger_invariants``, ``test_loyalty`` and ``test_batch_equivalence``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "levelup"
OWNERS = {
    ("ledger_entries", "positions"): SRC / "ledger" / "posting.py",
    ("feed",): SRC / "feed" / "service.py",
    ("audit_log",): SRC / "audit" / "service.py",
}


def _writes(tables: tuple[str, ...]) -> re.Pattern[str]:
    names = "|".join(tables)
    return re.compile(
        rf"t\.({names})\.(insert|update|delete)\(|"
        rf"(bulk_insert|upsert_add|upsert_set|insert_ignore|add_checked)\(\s*connection,\s*t\.({names})\b"
    )


@pytest.mark.parametrize("tables", list(OWNERS), ids=lambda t: "+".join(t))
def test_only_the_owner_writes(tables: tuple[str, ...]) -> None:
    owner, pattern = OWNERS[tables], _writes(tables)
    writers = sorted(
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if path != owner and "migrations" not in path.parts and pattern.search(path.read_text())
    )
    assert writers == [], f"{', '.join(tables)} are written only by {owner.relative_to(SRC)}, not by {writers}"
    assert pattern.search(owner.read_text()), "the owner itself writes (the pattern sees writes)"


def test_the_pattern_sees_a_writer() -> None:
    pattern = _writes(("ledger_entries", "positions"))
    assert pattern.search("bulk_insert(connection, t.ledger_entries, rows)")
    assert pattern.search("connection.execute(t.positions.update().where(x))")
    assert not pattern.search("select(t.positions)")
