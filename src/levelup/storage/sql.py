"""Small SQL helpers that hide the one place SQLite and PostgreSQL differ for us: upserts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table, bindparam, func
from sqlalchemy.dialects import postgresql, sqlite


def insert(connection: Connection, table: Table) -> Any:
    """An INSERT that knows ``ON CONFLICT`` in the connection's dialect."""
    module = sqlite if connection.dialect.name == "sqlite" else postgresql
    return module.insert(table)


def upsert_add(
    connection: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    keys: Sequence[str],
    add: Sequence[str],
    latest: Sequence[str] = (),
) -> None:
    """Insert rows, or add their ``add`` columns to the existing row (``latest`` keeps the larger value).

    Rows must be unique by ``keys``: PostgreSQL refuses to touch one row twice in a statement.
    """
    if not rows:
        return
    statement = insert(connection, table)
    greatest = func.max if connection.dialect.name == "sqlite" else func.greatest
    changes: dict[str, Any] = {c: table.c[c] + statement.excluded[c] for c in add}
    for c in latest:
        changes[c] = greatest(
            func.coalesce(table.c[c], statement.excluded[c]), func.coalesce(statement.excluded[c], table.c[c])
        )
    connection.execute(statement.on_conflict_do_update(index_elements=list(keys), set_=changes), list(rows))


def insert_ignore(connection: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows, skipping those whose key already exists (another worker was first)."""
    if rows:
        connection.execute(insert(connection, table).on_conflict_do_nothing(), list(rows))


def add_checked(
    connection: Connection, table: Table, rows: Sequence[dict[str, Any]], *, keys: Sequence[str], add: Sequence[str]
) -> None:
    """Add deltas to rows guarded by CHECK constraints (a balance never below zero).

    An upsert would test the constraint on the would-be inserted row (a bare
    negative delta), so the row is made with zeros first and then updated: the
    constraint then judges the real result, and a violation aborts the transaction.
    """
    if not rows:
        return
    zeros = [{**row, **dict.fromkeys(add, 0)} for row in rows]
    insert_ignore(connection, table, zeros)
    statement = (
        table.update()
        .where(*(table.c[k] == bindparam(f"k_{k}") for k in keys))
        .values({c: table.c[c] + bindparam(f"d_{c}") for c in add})
    )
    connection.execute(
        statement, [{**{f"k_{k}": row[k] for k in keys}, **{f"d_{c}": row[c] for c in add}} for row in rows]
    )
