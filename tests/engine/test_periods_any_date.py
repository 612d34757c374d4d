"""Calendar periods hold for every date a ``datetime`` can hold, years 1 to 9999: keys are padded
(they sort and parse), every key names its dates back, and an end never overflows."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from levelup.metrics.periods import GRAINS, grain_of, period_dates, period_end, period_keys

ZONES = st.sampled_from(["UTC", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Europe/London", "America/New_York"])
EDGES = st.sampled_from([dt.date.min, dt.date.max, dt.date(999, 12, 31), dt.date(9999, 10, 1), dt.date(1000, 1, 1)])


@settings(max_examples=300, deadline=None)
@given(day=st.one_of(st.dates(), EDGES), zone=ZONES)
def test_every_period_of_any_date_parses_back_and_ends(day: dt.date, zone: str) -> None:
    keys = period_keys(day)
    for grain, key in zip(GRAINS, keys, strict=True):
        assert grain_of(key) == grain, key
        dates = period_dates(key)
        if grain == "all":
            assert dates is None
            continue
        assert dates is not None and dates[0] <= day <= dates[1], (key, dates)
        end = period_end(key, zone)
        assert end is not None and end.tzinfo is not None
    assert keys[4] == f"{day.year:04d}" and len(keys[0]) == 10
