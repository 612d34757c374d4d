"""``insights.common.Bucket`` (the local period of an instant, remembered per slot of UTC) answers exactly
what converting each instant gives, in every kind of zone: whole hours, half hours, 45 minutes off the hour
(Kathmandu, Eucla, Chatham), daylight saving, and old local mean times of seconds."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from levelup.insights.common import Bucket, local_period

ZONES = ("UTC", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Eucla", "Pacific/Chatham")
GRAINS = ("day", "week", "month")


def test_a_day_that_starts_inside_a_slot() -> None:
    bucket = Bucket("Asia/Kathmandu", "day")  # +05:45: local midnight is 18:15 UTC
    before, after = (dt.datetime(2026, 10, 1, 18, m, tzinfo=dt.UTC) for m in (10, 20))
    assert [bucket(before), bucket(after)] == ["2026-10-01", "2026-10-02"]
    assert [bucket(after), bucket(before)] == ["2026-10-02", "2026-10-01"]  # whichever is seen first


@settings(max_examples=60, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    grain=st.sampled_from(GRAINS),
    instants=st.lists(
        st.datetimes(min_value=dt.datetime(1890, 1, 1), max_value=dt.datetime(2040, 1, 1), timezones=st.just(dt.UTC)),
        min_size=1,
        max_size=40,
    ),
    near=st.lists(st.integers(-3 * 3600, 3 * 3600), max_size=40),
)
def test_the_bucket_is_the_conversion(zone: str, grain: str, instants: list[dt.datetime], near: list[int]) -> None:
    """One bucket over many instants, some seconds apart around the first (the slots a boundary falls in)."""
    bucket = Bucket(zone, grain)
    for instant in [*instants, *(instants[0] + dt.timedelta(seconds=s) for s in near)]:
        assert bucket(instant) == local_period(instant, zone, grain), (zone, grain, instant)
