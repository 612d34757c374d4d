"""One posting path: only ``levelup.ledger.posting`` writes ledger entries and balances.

Checked on the source, so a new feature cannot slip in a second writer; the
fold of the ledger equals positions after every kind of posting is checked
against the databases by ``test_ledger_invariants`` and ``test_loyalty``.
"""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "levelup"
WRITES = re.compile(
    r"t\.(ledger_entries|positions)\.(insert|update|delete)\(|"
    r"(bulk_insert|upsert_add|upsert_set|insert_ignore|add_checked)\(\s*connection,\s*t\.(ledger_entries|positions)\b"
)
OWNER = SRC / "ledger" / "posting.py"


def test_only_the_posting_module_writes_the_ledger_and_balances() -> None:
    writers = sorted(
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if path != OWNER and "migrations" not in path.parts and WRITES.search(path.read_text())
    )
    assert writers == [], f"ledger entries and positions are written only by ledger/posting.py, not {writers}"


def test_the_pattern_sees_a_writer() -> None:
    assert WRITES.search("bulk_insert(connection, t.ledger_entries, rows)")
    assert WRITES.search("connection.execute(t.positions.update().where(x))")
    assert WRITES.search(OWNER.read_text())
