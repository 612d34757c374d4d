"""normalised boards kept in rank_rows: the quotients of the normalised boards of stored programs

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 17:40:00

A normalised board on a calendar window is now served from ``rank_rows`` like a plain board: each
participant's metric ÷ handicap under source ``n``, key ``<metric>/<attribute>``, registered in
``rank_boards`` (``leaderboards.normalised`` keeps them from then on). This registers and fills those of
every stored program version, so existing programs use them without a new apply. No schema change.
"""

import json
import re

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

GRAINS = ("day", "week", "month", "quarter", "year", "all")
# The calendar grain of a period key (0004's, frozen).
GRAIN = (
    "(CASE WHEN m.period = 'all' THEN 'all' WHEN length(m.period) = 4 THEN 'year' WHEN length(m.period) = 10 "
    "THEN 'day' WHEN substr(m.period, 6, 1) = 'W' THEN 'week' WHEN substr(m.period, 6, 1) = 'Q' THEN 'quarter' "
    "WHEN length(m.period) = 7 THEN 'month' END)"
)
NAME = re.compile(r"^participant\.attributes\.([A-Za-z_][A-Za-z0-9_]*)$")


def _divisor(dialect: str, name: str) -> str:
    """The attribute as a number when it is a JSON number, else NULL (``leaderboards.normalised.divisor``)."""
    if dialect == "postgresql":
        return (
            f"(CASE WHEN json_typeof(p.attributes -> '{name}') = 'number' "
            f"THEN CAST(p.attributes ->> '{name}' AS FLOAT) END)"
        )
    return (
        f"(CASE WHEN json_type(p.attributes, '$.{name}') IN ('integer', 'real') "
        f"THEN json_extract(p.attributes, '$.{name}') END)"
    )


def upgrade() -> None:
    bind = op.get_bind()
    wanted: set[tuple[int, str, str, str]] = set()
    for program_id, document in bind.execute(sa.text("SELECT program_id, document FROM program_versions")):
        doc = json.loads(document) if isinstance(document, str) else document
        for board in doc.get("leaderboards") or ():
            found = NAME.match(board.get("normalize") or "")
            window = board.get("window", "all")
            if found and board.get("metric") and board.get("by", "participant") == "participant" and window in GRAINS:
                key = f"{board['metric']}/{found.group(1)}"
                if len(key) <= 64:
                    wanted.add((int(program_id), key, found.group(1), window))
    kept = {
        (int(p), k, g)
        for p, k, g in bind.execute(sa.text("SELECT program_id, key, grain FROM rank_boards WHERE source = 'n'"))
    }  # registered already (by an apply under this code): kept since
    for program_id, key, name, grain in sorted(w for w in wanted if (w[0], w[1], w[3]) not in kept):
        divisor = _divisor(bind.dialect.name, name)
        bind.execute(
            sa.text("INSERT INTO rank_boards (program_id, source, key, grain, filled) VALUES (:p, 'n', :k, :g, 1)"),
            {"p": program_id, "k": key, "g": grain},
        )
        bind.execute(
            sa.text(
                "INSERT INTO rank_rows (program_id, source, key, period, subject_id, value) "
                f"SELECT m.program_id, 'n', :k, m.period, m.subject_id, m.value / {divisor} FROM metric_totals m "
                "JOIN participants p ON p.id = m.subject_id WHERE m.program_id = :p AND m.subject_kind = 'p' "
                f"AND m.metric = :metric AND {GRAIN} = :g AND {divisor} > 0"
            ),
            {"p": program_id, "k": key, "g": grain, "metric": key.rsplit("/", 1)[0]},
        )


def downgrade() -> None:
    op.execute("DELETE FROM rank_rows WHERE source = 'n'")  # the triggers take their counts off
    op.execute("DELETE FROM rank_buckets WHERE source = 'n'")
    op.execute("DELETE FROM rank_boards WHERE source = 'n'")
