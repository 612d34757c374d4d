"""A rolling board's sums are the same whatever order the database adds its day totals in: a row kept by an
index seek and the same ranked afresh by a scan must not differ in the last bit (PostgreSQL adds doubles in
plan order; ``storage.sql.exact_sum`` adds them as NUMERIC)."""

from __future__ import annotations

from sqlalchemy import Float, func, literal, select, union_all

from levelup.runtime import Runtime
from levelup.storage.sql import exact_sum


def test_the_sum_does_not_depend_on_the_order(runtime: Runtime) -> None:
    def summed(numbers: list[float], how: object) -> float:
        rows = union_all(*(select(literal(n, Float).label("v")) for n in numbers)).subquery()
        with runtime.db.read() as connection:
            return float(connection.execute(select(how(rows.c.v))).scalar_one())  # type: ignore[operator]

    forth, back = [0.1, 0.2, 0.3], [0.3, 0.2, 0.1]
    assert summed(forth, exact_sum) == summed(back, exact_sum) == 0.6
    if not runtime.db.is_sqlite:  # what a plain SUM does there: the reason for exact_sum
        assert summed(forth, func.sum) != summed(back, func.sum)
