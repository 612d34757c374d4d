"""erasure and board opt-out: participants.erased_at and .hidden; a ledger entry's text may be redacted

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 16:30:00

``erased_at`` marks a participant pseudonymised by ``participants.erasure.erase``; ``hidden`` one who opted
out of public boards (still scored, shown without a name). The ledger stays append-only in every figure: the
one change it now accepts is a redaction of ``explain`` (the new text starts with ``[redacted] ``, nothing
else changes), because a kudos message or an adjustment note there can hold personal data.
"""

import sqlalchemy as sa
from alembic import op

import levelup.storage.tables

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

Timestamp = levelup.storage.tables.UTCDateTime(timezone=True)
APPEND_ONLY = "ledger entries are append-only: correct with a new entry"
FIXED = (
    "id",
    "program_id",
    "participant_id",
    "currency",
    "amount",
    "kind",
    "rule",
    "rule_version",
    "event_seq",
    "idempotency_key",
    "at",
    "created_at",
)
MARK = "[redacted] "


def upgrade() -> None:
    with op.batch_alter_table("participants") as batch:
        batch.add_column(sa.Column("erased_at", Timestamp, nullable=True))
        batch.add_column(sa.Column("hidden", sa.Boolean(), server_default=sa.false(), nullable=False))
    if op.get_bind().dialect.name == "sqlite":
        unchanged = " AND ".join(f"NEW.{c} IS OLD.{c}" for c in FIXED)
        op.execute("DROP TRIGGER ledger_entries_no_update")
        op.execute(
            "CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries "
            f"WHEN NOT ({unchanged} AND substr(NEW.explain, 1, {len(MARK)}) = '{MARK}') "
            f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
        )
        return
    op.execute("DROP TRIGGER ledger_entries_append_only ON ledger_entries")
    op.execute(
        "CREATE TRIGGER ledger_entries_append_only BEFORE DELETE OR TRUNCATE ON ledger_entries "
        "FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_append_only()"
    )
    op.execute(
        "CREATE FUNCTION ledger_entries_redact_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF (to_jsonb(NEW) - 'explain') IS DISTINCT FROM (to_jsonb(OLD) - 'explain') "
        f"OR left(NEW.explain, {len(MARK)}) <> '{MARK}' THEN RAISE EXCEPTION '{APPEND_ONLY}'; END IF; "
        "RETURN NEW; END $$"
    )
    op.execute(
        "CREATE TRIGGER ledger_entries_redact_only BEFORE UPDATE ON ledger_entries "
        "FOR EACH ROW EXECUTE FUNCTION ledger_entries_redact_only()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER ledger_entries_no_update")
        op.execute(
            "CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries "
            f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
        )
    else:
        op.execute("DROP TRIGGER ledger_entries_redact_only ON ledger_entries")
        op.execute("DROP FUNCTION ledger_entries_redact_only()")
        op.execute("DROP TRIGGER ledger_entries_append_only ON ledger_entries")
        op.execute(
            "CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON ledger_entries "
            "FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_append_only()"
        )
    with op.batch_alter_table("participants") as batch:
        batch.drop_column("hidden")
        batch.drop_column("erased_at")
