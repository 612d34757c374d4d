"""Bulk writes and key lookups for the hot path, with the same results on SQLite and PostgreSQL.

Ingestion writes thousands of rows a batch. Compiling a multi-row statement per
batch costs more than the database's work, so these helpers build one plain
``INSERT … ON CONFLICT`` per table, converting values with SQLAlchemy's own bind
processors so what is stored is exactly what the ORM-free Core paths store. SQLite
gets the rows through the driver's executemany (a loop in C, no round trips).
PostgreSQL gets one statement whose rows come as one array a column
(``INSERT … SELECT * FROM unnest(…)``): executemany there is one statement
execution a row, and each pays the executor's and the row triggers' set-up
(~30 µs of server time a row, more than the insert itself).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any

from sqlalchemy import JSON, Connection, Dialect, Float, String, Table, TypeDecorator, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from levelup.storage.db import json_dumps


def _placeholder(dialect: Dialect) -> str:
    return "?" if dialect.paramstyle == "qmark" else "%s"


@cache
def _processors(table: Table, columns: tuple[str, ...], dialect: Dialect) -> tuple[Callable[[Any], Any] | None, ...]:
    """Per column, the value conversion the driver needs (JSON is cast by the driver on PostgreSQL,
    which a raw statement must do itself: it is sent as text and the column's type parses it)."""
    out = []
    for name in columns:
        column_type = table.c[name].type
        # the dialect's own type's processor, as a compiled statement uses: the generic one of a TypeDecorator
        # leaves SQLite's datetimes to the driver, which writes a whole second without its ".000000", a text
        # that then sorts before the same instant bound by a query (an entry at a period's first instant fell
        # in the period before)
        processor = column_type.dialect_impl(dialect).bind_processor(dialect)
        if processor is None and isinstance(column_type, JSON):
            processor = json_dumps
        out.append(processor)
    return tuple(out)


def _rows(connection: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> tuple[tuple[str, ...], list[Any]]:
    """Column names and driver-ready value lists; converted values are memoized per call when hashable
    (a batch's timestamps repeat), which matters at thousands of rows a batch."""
    columns = tuple(rows[0])
    converted: list[tuple[int, Callable[[Any], Any], dict[Any, Any]]] = [
        (i, p, {}) for i, p in enumerate(_processors(table, columns, connection.dialect)) if p is not None
    ]
    values = []
    for row in rows:
        items = list(row.values())
        for i, processor, memo in converted:
            value = items[i]
            if value is None:
                continue
            if type(value) in _HASHABLE:
                found = memo.get(value, _MISSING)
                if found is _MISSING:
                    found = memo[value] = processor(value)
                items[i] = found
            else:
                items[i] = processor(value)
        values.append(tuple(items))
    return columns, values


_MISSING = object()
_HASHABLE = frozenset({dt.datetime, float, int, str})


def _insert_sql(connection: Connection, table: Table, columns: Sequence[str], tail: str = "") -> str:
    marks = ", ".join([_placeholder(connection.dialect)] * len(columns))
    return f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks}){tail}"


@cache
def _array_types(table: Table, columns: tuple[str, ...], dialect: Dialect) -> tuple[str, ...]:
    """Per column, the PostgreSQL array type its values are sent in. Strings go as ``text[]``: a cast to
    ``varchar(n)`` would cut a longer value, where storing it in the column refuses it."""
    return tuple(
        "text[]" if isinstance(table.c[c].type, String) else f"{table.c[c].type.compile(dialect=dialect)}[]"
        for c in columns
    )


def _arrays(table: Table, columns: tuple[str, ...], values: list[Any]) -> tuple[list[Any], ...]:
    """The rows' values as one list a column (psycopg sends a list as an array of one element type:
    whole numbers in a float column are made floats)."""
    arrays = tuple(list(column) for column in zip(*values, strict=True))
    for i, name in enumerate(columns):
        if isinstance(table.c[name].type, Float):
            arrays[i][:] = [v if v is None else float(v) for v in arrays[i]]
    return arrays


def _unique(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> bool:
    return len({tuple(row[k] for k in keys) for row in rows}) == len(rows)


def _write(
    connection: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    tail: str = "",
    *,
    unique_by: Sequence[str] | None = None,
) -> None:
    """``INSERT`` the rows (then ``tail``). On PostgreSQL in one statement, unless ``unique_by`` is given
    and two rows share a key (an ``ON CONFLICT DO UPDATE`` may not reach a row twice in one statement:
    those go one by one, as before)."""
    columns, values = _rows(connection, table, rows)
    if connection.dialect.name == "postgresql" and (unique_by is None or _unique(rows, unique_by)):
        casts = ", ".join(f"%s::{a}" for a in _array_types(table, columns, connection.dialect))
        sql = f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({casts}){tail}"
        connection.exec_driver_sql(sql, _arrays(table, columns, values))
    else:
        connection.exec_driver_sql(_insert_sql(connection, table, columns, tail), values)


@contextmanager
def _unprepared(connection: Connection) -> Iterator[None]:
    """Statements sent here are planned at each execution (psycopg prepares a statement on its 5th use,
    and PostgreSQL may then keep one generic plan for good: made while a table was small, a join
    plan would scan the table however big it grows)."""
    driver: Any = connection.connection.driver_connection
    threshold = driver.prepare_threshold
    driver.prepare_threshold = None
    try:
        yield
    finally:
        driver.prepare_threshold = threshold


class exact_sum(FunctionElement[float]):
    """SUM of a float column whatever order the rows come in. Doubles do not add associatively and a
    database adds them in plan order (0.1 + 0.2 + 0.3 is 0.6 or 0.6000000000000001), so two plans of one
    sum — a board row kept by an index seek, the same ranked afresh by a scan — could differ in the last bit
    and rank apart. PostgreSQL adds them as NUMERIC, exactly; SQLite through ``fsum``, Python's correctly
    rounded sum, which :mod:`levelup.storage.db` registers on each connection."""

    type = Float()
    name = "exact_sum"
    inherit_cache = True


@compiles(exact_sum)
def _numeric_sum(element: exact_sum, compiler: Any, **kw: Any) -> str:
    return f"CAST(sum(CAST({compiler.process(element.clauses, **kw)} AS NUMERIC)) AS DOUBLE PRECISION)"


@compiles(exact_sum, "sqlite")
def _fsum(element: exact_sum, compiler: Any, **kw: Any) -> str:
    return f"fsum({compiler.process(element.clauses, **kw)})"


def bulk_insert(connection: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows (all with the same keys, in the same order)."""
    if rows:
        _write(connection, table, rows)


def upsert_add(
    connection: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    keys: Sequence[str],
    add: Sequence[str],
    latest: Sequence[str] = (),
) -> None:
    """Insert rows, or add their ``add`` columns to the existing row (``latest`` keeps the later value).

    Rows must be unique by ``keys`` (merge them first).
    """
    if not rows:
        return
    greatest = "max" if connection.dialect.name == "sqlite" else "greatest"
    changes = [f"{c} = {table.name}.{c} + excluded.{c}" for c in add] + [
        f"{c} = {greatest}(coalesce({table.name}.{c}, excluded.{c}), coalesce(excluded.{c}, {table.name}.{c}))"
        for c in latest
    ]
    tail = f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {', '.join(changes)}"
    _write(connection, table, rows, tail, unique_by=keys)


def upsert_set(
    connection: Connection, table: Table, rows: Sequence[dict[str, Any]], *, keys: Sequence[str], update: Sequence[str]
) -> None:
    """Insert rows, or overwrite the ``update`` columns of the existing row (rows unique by ``keys``)."""
    if not rows:
        return
    changes = ", ".join(f"{c} = excluded.{c}" for c in update)
    tail = f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {changes}"
    _write(connection, table, rows, tail, unique_by=keys)


def insert_ignore(connection: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows, skipping those whose key already exists (another worker was first)."""
    if rows:
        _write(connection, table, rows, " ON CONFLICT DO NOTHING")


SET_UPDATE_ROWS = 16  # from this many rows, add_checked updates in one statement on PostgreSQL


def add_checked(
    connection: Connection, table: Table, rows: Sequence[dict[str, Any]], *, keys: Sequence[str], add: Sequence[str]
) -> None:
    """Add deltas to rows guarded by CHECK constraints (a balance never below zero).

    An upsert would test the constraint on the would-be inserted row (a bare
    negative delta), so the row is made with zeros first and then updated: the
    constraint then judges the real result, and a violation aborts the transaction.
    On PostgreSQL many rows (unique by ``keys``) are updated in one ``UPDATE … FROM unnest(…)``,
    planned at each execution (:func:`_unprepared`); a few go one by one (planning costs more).
    """
    if not rows:
        return
    insert_ignore(connection, table, [{**row, **dict.fromkeys(add, 0)} for row in rows])
    if connection.dialect.name == "postgresql" and len(rows) >= SET_UPDATE_ROWS and _unique(rows, keys):
        columns = (*keys, *add)
        types = _array_types(table, columns, connection.dialect)
        sets = ", ".join(f"{c} = t.{c} + v.{c}" for c in add)
        where = " AND ".join(f"t.{k} = v.{k}" for k in keys)
        arrays = ", ".join(f"%s::{a}" for a in types)
        sql = f"UPDATE {table.name} t SET {sets} FROM unnest({arrays}) AS v ({', '.join(columns)}) WHERE {where}"
        values = [tuple(row[c] for c in columns) for row in rows]
        with _unprepared(connection):
            connection.exec_driver_sql(sql, _arrays(table, columns, values))
        return
    mark = _placeholder(connection.dialect)
    sets = ", ".join(f"{c} = {c} + {mark}" for c in add)
    where = " AND ".join(f"{k} = {mark}" for k in keys)
    connection.exec_driver_sql(
        f"UPDATE {table.name} SET {sets} WHERE {where}",
        [tuple(row[c] for c in add) + tuple(row[k] for k in keys) for row in rows],
    )


def allocate_ids(connection: Connection, table: Table, column: str, count: int) -> list[int]:
    """Reserve ``count`` new values of an autoincrement key, so rows can be bulk-inserted with them.

    SQLite has one writer at a time (the write transaction holds the lock), so the
    next values follow the current maximum; PostgreSQL draws them from the sequence.
    """
    if connection.dialect.name == "sqlite":
        start = connection.execute(text(f"SELECT coalesce(max({column}), 0) FROM {table.name}")).scalar_one()
        return list(range(int(start) + 1, int(start) + 1 + count))
    query = text(f"SELECT nextval(pg_get_serial_sequence('{table.name}', '{column}')) FROM generate_series(1, :n)")
    return [int(v) for v in connection.execute(query, {"n": count}).scalars()]


def claim(connection: Connection, table: Table, row: dict[str, Any]) -> bool:
    """Insert one row unless its key exists; True if this transaction inserted it (and so owns the work)."""
    module: Any = sqlite if connection.dialect.name == "sqlite" else postgresql
    statement = module.insert(table).values(**row).on_conflict_do_nothing()
    first_key = next(iter(table.primary_key.columns))
    return connection.execute(statement.returning(first_key)).first() is not None


def fetch_by_keys(
    connection: Connection,
    table: Table,
    *,
    fixed: dict[str, Any],
    keys: Sequence[str],
    values: Sequence[tuple[Any, ...]],
    columns: Sequence[str],
    chunk: int = 1500,
) -> list[tuple[Any, ...]]:
    """Rows whose ``keys`` equal one of ``values`` (and ``fixed`` columns their value), by index lookups.

    The wanted keys are joined as a list (SQLite: a VALUES list; PostgreSQL: ``unnest`` of one
    array a key column, one statement text whatever the count), so the database looks each one
    up (an ``IN`` per column would let it scan the cross product) and nothing is compiled per
    call. Values come back converted as SQLAlchemy would (JSON, aware datetimes).

    On PostgreSQL the lookup is a LATERAL subquery with ``OFFSET 0``, which the planner may
    not flatten into a join: it must run the subquery once a key, with every key column
    known, so its only sensible plan is a seek on the key's index. Flattened, the plan
    depended on statistics: without them (autovacuum off, no ANALYZE yet) the planner
    guessed that the ``fixed`` columns alone match a couple of rows and read the whole
    program's rows through the index once, for 8 keys or more (0.1 ms became 200 ms at
    200,000 events; ``tests/storage/test_plans_without_statistics.py``).
    """
    if not values:
        return []
    mark = _placeholder(connection.dialect)
    dialect = connection.dialect
    converters = [
        table.c[c].type.dialect_impl(dialect).result_processor(dialect, None)
        if isinstance(table.c[c].type, JSON | TypeDecorator)  # drivers already give numbers and strings
        else None
        for c in columns
    ]
    convert = [(i, f) for i, f in enumerate(converters) if f is not None]
    names = ", ".join(f"k{i}" for i in range(len(keys)))
    on = " AND ".join([f"t.{k} = w.k{i}" for i, k in enumerate(keys)] + [f"t.{c} = {mark}" for c in fixed])
    wanted = ", ".join(f"t.{c}" for c in columns)
    outer = ", ".join(f"x.{c}" for c in columns)
    found: list[tuple[Any, ...]] = []
    for start in range(0, len(values), chunk):
        part = values[start : start + chunk]
        params: tuple[Any, ...]
        if dialect.name == "sqlite":  # SQLite loops over the VALUES and looks each up
            rows = ", ".join(["(" + ", ".join([mark] * len(keys)) + ")"] * len(part))
            sql = f"WITH w ({names}) AS (VALUES {rows}) SELECT {wanted} FROM w JOIN {table.name} t ON {on}"
            params = tuple(v for row in part for v in row)
        else:  # PostgreSQL: one index lookup a key, see the docstring
            arrays = ", ".join(f"{mark}::{a}" for a in _array_types(table, tuple(keys), dialect))
            sql = (
                f"SELECT {outer} FROM unnest({arrays}) AS w ({names}) CROSS JOIN LATERAL "
                f"(SELECT {wanted} FROM {table.name} t WHERE {on} OFFSET 0) x"
            )
            params = tuple(list(column) for column in zip(*part, strict=True))
        for raw in _fetch(connection, sql, params + tuple(fixed.values())):
            row = list(raw)
            for i, f in convert:
                if row[i] is not None:
                    row[i] = f(row[i])
            found.append(tuple(row))
    return found


def _fetch(connection: Connection, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """Rows of a plain statement on the transaction's own DB-API connection: a hot-path read skips building
    a SQLAlchemy result (a third of a small lookup's time); values are the driver's, as with exec_driver_sql."""
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql, params)
        return list(cursor.fetchall())
    finally:
        cursor.close()
