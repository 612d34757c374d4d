"""Pace (issue 12, item 4): a goal's share done against the share of its period gone, computed by hand.

One computation (``engine.goals.pace``) for the profile, the challenge list and the participant's page.
"""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from levelup.engine.goals import pace, period_span


def test_pace_by_hand() -> None:
    # November has 30 days; on the 15th, 15 of them are gone (half)
    day = dt.date(2026, 11, 15)
    assert pace(5, 10, "2026-11", day, completed=False) == {"share": 0.5, "elapsed": 0.5, "pace": "on", "days_left": 15}
    assert pace(6.1, 10, "2026-11", day, completed=False)["pace"] == "ahead"  # 0.61 > 0.5 + 0.1
    assert pace(3.9, 10, "2026-11", day, completed=False)["pace"] == "behind"  # 0.39 < 0.5 - 0.1
    assert pace(4, 10, "2026-11", day, completed=False)["pace"] == "on"  # within a tenth
    assert pace(10, 10, "2026-11", day, completed=True)["pace"] == "done"
    # an ISO week: on Wednesday 3 of 7 days are gone
    wednesday = pace(1, 7, "2026-W48", dt.date(2026, 11, 25), completed=False)
    assert wednesday == {"share": 0.1429, "elapsed": 0.4286, "pace": "behind", "days_left": 4}
    # a one-off range, and all time (no end: no pace), no target: no pace
    assert pace(50, 100, "20261001-20261031", dt.date(2026, 10, 1), completed=False)["pace"] == "ahead"
    assert pace(1, 10, "all", day, completed=False) == {} and pace(1, None, "2026-11", day, completed=False) == {}
    assert period_span("20261001-20261031") == (dt.date(2026, 10, 1), dt.date(2026, 10, 31))


@given(st.floats(0, 1e6), st.floats(0.5, 1e6), st.integers(-40, 40), st.booleans())
def test_pace_is_bounded_and_consistent(progress: float, target: float, offset: int, completed: bool) -> None:
    day = dt.date(2026, 11, 1) + dt.timedelta(days=offset)
    found = pace(progress, target, "2026-11", day, completed=completed)
    assert 0 <= found["share"] <= 1 and 0 <= found["elapsed"] <= 1 and 0 <= found["days_left"] <= 29 + max(0, -offset)
    if completed:
        assert found["pace"] == "done"
    elif found["pace"] == "ahead":
        assert progress / target > found["elapsed"]
