"""Crash runs (``bench/crash.py``): a real ``levelup serve`` killed with SIGKILL under load from several
clients, restarted, everything unanswered sent again; then nothing acknowledged is lost or doubled,
balances equal their ledger, the reward is not oversold, and replay equals what is stored.

Two kills a database here, one server process; ``LEVELUP_LONG_TESTS=1`` runs twenty (as ``python
bench/crash.py`` does, with two processes on PostgreSQL).
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.crash import crash_run

KILLS = 20 if os.environ.get("LEVELUP_LONG_TESTS") else 2


def test_nothing_acknowledged_is_lost_across_kills(db_url: str, tmp_path: Path) -> None:
    report = crash_run(db_url, kills=KILLS, seed=7, folder=tmp_path, workers=None if KILLS > 2 else 1)
    assert report.failures == [], "\n".join(report.lines())
    assert report.kills == KILLS
    assert report.events_acknowledged > 0 and report.redemptions_acknowledged > 0, report.lines()
    assert report.resent > 0  # some answers were lost to the kills, or retried: the resend path ran
