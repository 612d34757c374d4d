"""The schema: the event log and the ledger are the truth; everything else is a projection.

Invariants live here, enforced by the database itself: one event per id, one
ledger entry per idempotency key, no negative available balance or arrears,
and (through triggers made by the migration) no UPDATE or DELETE of a ledger entry.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in and out, on SQLite (which keeps no zone) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: Levelup stores aware UTC times only")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
Id = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER PRIMARY KEY only
Timestamp = UTCDateTime()

programs = Table(
    "programs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("key", String(63), nullable=False, unique=True),
    Column("version", Integer, nullable=False),
    Column("created_at", Timestamp, nullable=False),
)

program_versions = Table(
    "program_versions",
    metadata,
    Column("program_id", ForeignKey("programs.id"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("document", JSON, nullable=False),
    Column("applied_at", Timestamp, nullable=False),
    Column("applied_by", String(64)),
)

participants = Table(
    "participants",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("program_id", ForeignKey("programs.id"), nullable=False),
    Column("external_id", String(200), nullable=False),
    Column("name", String(200)),
    Column("attributes", JSON, nullable=False),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("tier", String(100)),
    Column("created_at", Timestamp, nullable=False),
    Column("erased_at", Timestamp),  # pseudonymised (participants.erasure): name, attributes, id replaced
    Column("hidden", Boolean, nullable=False, server_default=false()),  # opted out of public boards
    UniqueConstraint("program_id", "external_id"),
    CheckConstraint("status in ('active', 'suspended')", name="status"),
)

teams = Table(
    "teams",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("program_id", ForeignKey("programs.id"), nullable=False),
    Column("external_id", String(200), nullable=False),
    Column("name", String(200)),
    UniqueConstraint("program_id", "external_id"),
)

memberships = Table(
    "memberships",
    metadata,
    Column("participant_id", ForeignKey("participants.id"), primary_key=True),
    Column("team_id", ForeignKey("teams.id"), primary_key=True),
    Index("ix_memberships_team", "team_id"),
)

events = Table(
    "events",
    metadata,
    Column("seq", Id, primary_key=True, autoincrement=True),  # ingestion order: replay follows it
    Column("program_id", ForeignKey("programs.id"), nullable=False),
    Column("event_id", String(200), nullable=False),
    Column("type", String(100), nullable=False),
    Column("participant_id", ForeignKey("participants.id"), nullable=False),
    Column("occurred_at", Timestamp, nullable=False),
    Column("received_at", Timestamp, nullable=False),
    Column("data", JSON, nullable=False),
    Column("reverses", String(200)),
    Column("content_hash", String(64), nullable=False),
    Column("program_version", Integer, nullable=False),
    Column("teams", JSON, nullable=False),  # the teams it counted for, as they were when scored
    Column("tier", String(100)),  # the participant's tier when scored (its multiplier applied)
    Column("suspended", Boolean, nullable=False, server_default=false()),  # scored while suspended: no awards
    Column("share", Integer),  # a reversal: the share of the reversed event it refunds (millionths; null: all)
    Column("problems", JSON(none_as_null=True)),
    Column("notes", JSON(none_as_null=True)),
    UniqueConstraint("program_id", "event_id"),
    Index("ix_events_participant", "participant_id", "seq"),
    # the log in order (replay, simulation) and the studio's explorer, newest first, of a type or not
    Index("ix_events_program", "program_id", "seq"),
    Index("ix_events_type", "program_id", "type", "seq"),
)

# How much of an event refunds took back so far (millionths): the CHECK refuses refunding more than all of it.
refunds = Table(
    "refunds",
    metadata,
    Column("program_id", ForeignKey("programs.id"), primary_key=True),
    Column("reversed_event", String(200), primary_key=True),
    Column("refunded", Integer, nullable=False),
    CheckConstraint("refunded >= 0 AND refunded <= 1000000", name="refunded"),
)

# One row per fully reversed event (by one reversal or by the refund that completed it):
# the unique key makes a double reversal impossible.
reversals = Table(
    "reversals",
    metadata,
    Column("program_id", ForeignKey("programs.id"), primary_key=True),
    Column("reversed_event", String(200), primary_key=True),
    Column("by_event", String(200), nullable=False),
)

# The ledger kinds the liability report sums by month (redeemed, cancellations refunded, expired): a partial
# index holds them; a query must name them as literals (not bound) for SQLite to match it
MONTHLY_KINDS = ("redemption", "refund", "expiry")
_MONTHLY_SQL = "kind IN (" + ", ".join(f"'{k}'" for k in MONTHLY_KINDS) + ")"

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("program_id", ForeignKey("programs.id"), nullable=False),
    Column("participant_id", ForeignKey("participants.id"), nullable=False),
    Column("currency", String(64), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("rule", String(64)),
    Column("rule_version", Integer),
    Column("event_seq", ForeignKey("events.seq")),
    Column("idempotency_key", String(300), nullable=False),
    Column("explain", Text, nullable=False),
    Column("at", Timestamp, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    UniqueConstraint("program_id", "idempotency_key"),
    CheckConstraint("amount <> 0", name="nonzero"),
    Index("ix_ledger_participant", "participant_id", "id"),
    Index("ix_ledger_event", "event_seq"),
    # the liability's months: a few entries among every award
    Index(
        "ix_ledger_monthly", "program_id", "kind", postgresql_where=text(_MONTHLY_SQL), sqlite_where=text(_MONTHLY_SQL)
    ),
)

positions = Table(
    "positions",
    metadata,
    Column("participant_id", ForeignKey("participants.id"), primary_key=True),
    Column("currency", String(64), primary_key=True),
    Column("program_id", ForeignKey("programs.id"), nullable=False),
    Column("available", BigInteger, nullable=False),
    Column("arrears", BigInteger, nullable=False),
    Column("earned", BigInteger, nullable=False),
    Column("pending", BigInteger, nullable=False, server_default="0"),  # part of available not spendable yet
    CheckConstraint("available >= 0", name="available"),
    CheckConstraint("arrears >= 0", name="arrears"),
    CheckConstraint("pending >= 0 AND pending <= available", name="pending"),
    # the boards of balances, and (covering) the liability's sums of every balance
    Index("ix_positions_board", "program_id", "currency", "available", "pending", "arrears"),
    Index("ix_positions_earned", "program_id", "currency", "earned"),
)

# count and sum metrics, per subject ('p' participant or 't' team) and calendar period
metric_totals = Table(
    "metric_totals",
    metadata,
    Column("program_id", ForeignKey("programs.id"), primary_key=True),
    Column("metric", String(64), primary_key=True),
    Column("period", String(32), primary_key=True),
    Column("subject_kind", String(1), primary_key=True),
    Column("subject_id", Id, primary_key=True),  # participants.id or teams.id
    Column("value", Float, nullable=False),
    sqlite_with_rowid=False,  # the primary key is the table: one B-tree to update per upsert
)

# max and distinct metrics: how many times each value was seen on each local day
metric_samples = Table(
    "metric_samples",
    metadata,
    Column("program_id", ForeignKey("programs.id"), primary_key=True),
    Column("metric", String(64), primary_key=True),
    Column("subject_kind", String(1), primary_key=True),
    Column("subject_id", Id, primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("value_key", String(200), primary_key=True),
    Column("value", Float, nullable=False),
    Column("count", Integer, nullable=False),
)

rule_counters = Table(
    "rule_counters",
    metadata,
    Column("participant_id", ForeignKey("participants.id"), primary_key=True),
    Column("rule", String(64), primary_key=True),
    Column("period", String(32), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("last_at", Timestamp),
    Index("ix_rule_counters_period", "participant_id", "period"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("secret_hash", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("programs", JSON, nullable=False),  # ["*"] for every program
    Column("created_at", Timestamp, nullable=False),
    Column("revoked_at", Timestamp),
    Column("note", String(200)),
    Column("expires_at", Timestamp),  # null: never
    Column("last_used_at", Timestamp),  # at most a minute stale per process (keys/service.py)
    CheckConstraint("role in ('admin', 'ingest', 'read')", name="role"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("program_id", ForeignKey("programs.id")),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("detail", JSON, nullable=False),
    Column("at", Timestamp, nullable=False),
)


# --- loyalty: lots, redemptions, tiers ---

# Each credit of a spendable currency (see ledger.lots): live lots sum to positions.available.
lots = Table(
    "lots",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("program_id", ForeignKey("programs.id"), nullable=False),
    Column("participant_id", ForeignKey("participants.id"), nullable=False),
    Column("currency", String(64), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("remaining", BigInteger, nullable=False),
    Column("earned_at", Timestamp, nullable=False),
    Column("available_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp),
    Column("matured", Boolean, nullable=False),
    Column("event_seq", ForeignKey("events.seq")),
    Column("source_key", String(300), nullable=False),  # the ledger entry that made it
    CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining"),
    Index("ix_lots_participant", "participant_id", "currency", "remaining"),
    Index("ix_lots_expiry", "program_id", "expires_at"),
    Index("ix_lots_event", "event_seq"),
    # pending lots only: the maturing job reads what it has to move, not the program's history
    Index(
        "ix_lots_pending",
        "program_id",
        "available_at",
        postgresql_where=text("NOT matured"),
        sqlite_where=text("matured = 0"),  # SQLite matches a partial index by the query's own term
    ),
)

redemptions = Table(
    "redemptions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("program_id", ForeignKey("programs.id"), nullable=False),
    Column("participant_id", ForeignKey("participants.id"), nullable=False),
    Column("reward", String(64), nullable=False),
    Column("currency", String(64), nullable=False),
    Column("cost", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("idempotency_key", String(200), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("period", String(32), nullable=False),  # the limit's period the redemption counts in
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    UniqueConstraint("program_id", "idempotency_key"),
    CheckConstraint("cost > 0", name="cost"),
    CheckConstraint("status in ('pending', 'fulfilled', 'cancelled')", name="status"),
    Index("ix_redemptions_participant", "participant_id", "reward", "period"),
    Index("ix_redemptions_status", "program_id", "status", "id"),
)

# which lots a redemption drew, so a cancellation refunds the same lots (keeping their expiry)
redemption_draws = Table(
    "redemption_draws",
    metadata,
    Column("redemption_id", ForeignKey("redemptions.id"), primary_key=True),
    Column("lot_id", ForeignKey("lots.id"), primary_key=True),
    Column("amount", BigInteger, nullable=False),
)

# stock used per reward: a conditional update (redeemed < stock) is what never oversells
reward_counts = Table(
    "reward_counts",
    metadata,
    Column("program_id", ForeignKey("programs.id"), primary_key=True),
    Column("reward", String(64), primary_key=True),
    Column("redeemed", Integer, nullable=False),
    CheckConstraint("redeemed >= 0", name="redeemed"),
)

# refer-a-friend (see referrals.service): one referral per referred participant, never oneself
referrals = Table(
    "referrals",
    metadata,
    Column("referred_id", ForeignKey("participants.id"), primary_key=True),
    Column("program_id", ForeignKey("programs.id"), nullable=False),
    Column("referrer_id", ForeignKey("participants.id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("referral_event", String(200), nullable=False),
    Column("qualifying_event", String(200)),
    Column("pay_after", Timestamp),
    Column("created_at", Timestamp, nullable=False),
    Column("paid_at", Timestamp),
    CheckConstraint("referred_id <> referrer_id", name="not_self"),
    CheckConstraint("status in ('waiting', 'qualified', 'paid', 'void')", name="status"),
    Index("ix_referrals_due", "program_id", "status", "pay_after"),
)

# a participant's tier as last reviewed, and an admin's override (participants.tier is the tier in force)
tier_state = Table(
    "tier_state",
    metadata,
    Column("participant_id", ForeignKey("participants.id"), primary_key=True),
    Column("program_id", ForeignKey("programs.id"), nullable=False),
    Column("earned", String(100)),  # the tier the qualifying value gives, after the demotion policy
    Column("since", Timestamp, nullable=False),
    Column("reviewed", String(32)),  # the review period of the last drop (one-step policy)
    Column("override", String(100)),
    Column("override_until", Timestamp),
    Column("override_note", String(500)),
    Index("ix_tier_state_program", "program_id"),
)


# --- game mechanics (projections of the event log, rebuilt by replay) ---

badge_grants = Table(
    "badge_grants",
    metadata,
    Column("participant_id", ForeignKey("participants.id"), primary_key=True),
    Column("badge", String(64), primary_key=True),
    Column("grade", String(100), primary_key=True),
    Column("period", String(32), primary_key=True),  # "all" unless the badge is repeatable
    Column("program_id", ForeignKey("programs.id"), nullable=False),
    Column("event_id", String(200), nullable=False),  # the event that earned it
    Column("awarded_at", Timestamp, nullable=False),  # that event's time
    Column("revoked_by", String(200)),  # the reversal that took it back, if one did
)

challenge_completions = Table(
    "challenge_completions",
    metadata,
    Column("participant_id", ForeignKey("participants.id"), primary_key=True),
    Column("challenge", String(64), primary_key=True),
    Column("period", String(32), primary_key=True),
    Column("program_id", ForeignKey("programs.id"), nullable=False),
    Column("event_id", String(200), nullable=False),
    Column("completed_at", Timestamp, nullable=False),
    Column("reward", JSON, nullable=False),  # [[currency, amount], ...] paid: what a reversal takes back
)

streak_runs = Table(
    "streak_runs",
    metadata,
    Column("participant_id", ForeignKey("participants.id"), primary_key=True),
    Column("streak", String(64), primary_key=True),
    Column("program_id", ForeignKey("programs.id"), nullable=False),
    Column("periods", JSON, nullable=False),  # ordinals of the qualifying periods, oldest first
    Column("best", Integer, nullable=False),
)

# A quest's progress in one period: for each step reached so far, the value its metric had when
# the step became current (only what happens after that counts toward the step; see challenges.quests).
quest_progress = Table(
    "quest_progress",
    metadata,
    Column("participant_id", ForeignKey("participants.id"), primary_key=True),
    Column("challenge", String(64), primary_key=True),
    Column("period", String(32), primary_key=True),
    Column("program_id", ForeignKey("programs.id"), nullable=False),
    Column("baselines", JSON, nullable=False),  # [float, ...], one per step started
)

# What players and screens are told, in order: awards, badges, levels, streaks, completions.
feed = Table(
    "feed",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("program_id", ForeignKey("programs.id"), nullable=False),
    Column("participant", String(200)),
    Column("kind", String(32), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("at", Timestamp, nullable=False),
    Index("ix_feed_program", "program_id", "id"),
)

# A challenge or competition period that was settled: the primary key makes closing idempotent
# across workers (the first transaction to insert the row pays; any other finds it and stops).
closed_periods = Table(
    "closed_periods",
    metadata,
    Column("program_id", ForeignKey("programs.id"), primary_key=True),
    Column("challenge", String(64), primary_key=True),
    Column("period", String(32), primary_key=True),
    Column("closed_at", Timestamp, nullable=False),
    Column("result", JSON, nullable=False),
)

# Peer recognition: the giver's side of the budget (what was given, per budget period);
# the receiver's side is a ledger entry of kind "kudos".
kudos = Table(
    "kudos",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("program_id", ForeignKey("programs.id"), nullable=False),
    Column("giver_id", ForeignKey("participants.id"), nullable=False),
    Column("receiver_id", ForeignKey("participants.id"), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("period", String(32), nullable=False),
    Column("message", String(500), nullable=False),
    Column("idempotency_key", String(200), nullable=False),
    Column("at", Timestamp, nullable=False),
    UniqueConstraint("program_id", "idempotency_key"),
    CheckConstraint("amount > 0", name="positive"),
    CheckConstraint("giver_id <> receiver_id", name="not_self"),
    Index("ix_kudos_giver", "giver_id", "period"),
)

# --- leaderboard ranks (projections kept by triggers: migration 0004; read by levelup.leaderboards.ranks) ---

# The plain boards of every program version (calendar window, no normalization; or a participants'
# currency board over all time), by source ('p'/'t': participant/team metric; 'e': currency earned),
# key (metric or currency) and grain. Only rows of these boards are copied to rank_rows.
rank_boards = Table(
    "rank_boards",
    metadata,
    Column("program_id", ForeignKey("programs.id"), primary_key=True),
    Column("source", String(1), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("grain", String(8), primary_key=True),
    Column("filled", Integer, nullable=False),  # 1 once the rows already stored were copied
)

# The rows of those boards (metric_totals.value, or positions.earned with period 'all'), in board
# order by the index: value descending, then internal id (order of first appearance).
rank_rows = Table(
    "rank_rows",
    metadata,
    Column("program_id", Id, primary_key=True),
    Column("source", String(1), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("period", String(32), primary_key=True),
    Column("subject_id", Id, primary_key=True),  # participants.id or teams.id
    Column("value", Float, nullable=False),
    sqlite_with_rowid=False,
)
Index(
    "ix_rank_rows_order",
    rank_rows.c.program_id,
    rank_rows.c.source,
    rank_rows.c.key,
    rank_rows.c.period,
    rank_rows.c.value.desc(),
    rank_rows.c.subject_id,
)

# How many rows of a board fall in each logarithmic value bucket: a rank is the sum of the higher
# buckets plus a short index range inside one, instead of a walk over every row above.
rank_buckets = Table(
    "rank_buckets",
    metadata,
    Column("program_id", Id, primary_key=True),
    Column("source", String(1), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("period", String(32), primary_key=True),
    Column("bucket", Integer, primary_key=True),
    Column("n", BigInteger, nullable=False),
    sqlite_with_rowid=False,  # the count lives in the primary key's B-tree: a sum is one range read
)

# --- webhooks out (levelup.webhooks): subscriptions, the transactional outbox, the delivery log ---

# A program's outbound subscription; deleting one keeps the row (deleted_at) so its delivery log stays.
webhook_subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("program_id", ForeignKey("programs.id"), nullable=False),
    Column("url", String(2000), nullable=False),
    Column("events", JSON, nullable=False),  # the notification types it wants, sorted
    Column("secret", String(200), nullable=False),  # kept in clear: every delivery is signed with it
    Column("format", String(8), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("deleted_at", Timestamp),
    CheckConstraint("format in ('json', 'slack', 'teams')", name="format"),
    Index("ix_webhook_subscriptions_program", "program_id"),
)

# One notification for one subscription, written in the transaction of the effect that caused it.
# A worker claims a due row by moving next_at a lease ahead under its claim token; a worker that dies
# loses the row when the lease ends. dedup makes a notification a job may repeat (points.expiring) once.
webhook_outbox = Table(
    "webhook_outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("program_id", ForeignKey("programs.id"), nullable=False),
    Column("subscription_id", ForeignKey("webhook_subscriptions.id"), nullable=False),
    Column("notification", String(40), nullable=False),  # the id sent, the same on every retry
    Column("type", String(32), nullable=False),
    Column("body", JSON, nullable=False),  # {id, type, program, participant, at, data}
    Column("dedup", String(300)),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_at", Timestamp, nullable=False),
    Column("claim", String(32)),
    Column("created_at", Timestamp, nullable=False),
    Column("done_at", Timestamp),
    UniqueConstraint("subscription_id", "dedup"),
    CheckConstraint("status in ('pending', 'delivered', 'failed', 'cancelled')", name="status"),
    Index(
        "ix_webhook_outbox_due",
        "next_at",
        postgresql_where=text("status = 'pending'"),
        sqlite_where=text("status = 'pending'"),
    ),
    Index("ix_webhook_outbox_subscription", "subscription_id", "id"),
)

# Every attempt at a delivery: the answer's status code, or why there was none.
webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("outbox_id", ForeignKey("webhook_outbox.id"), nullable=False),
    Column("at", Timestamp, nullable=False),
    Column("status_code", Integer),
    Column("error", String(500)),
    Column("duration_ms", Integer, nullable=False),
    Index("ix_webhook_attempts_outbox", "outbox_id", "id"),
)

# --- the web pages (levelup.links, levelup.cases) ---

# A signed link to a web page: the token is "<id>.<secret>"; the id finds the row, the hash proves the
# secret (shown once, never stored). A tv link shows the program's boards; a participant link one
# participant's pages. options: what a tv link shows (top N, which boards, how fast it rotates).
links = Table(
    "links",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("program_id", ForeignKey("programs.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("participant_id", ForeignKey("participants.id")),
    Column("secret_hash", String(64), nullable=False),
    Column("options", JSON, nullable=False),
    Column("note", String(200)),
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
    Column("revoked_at", Timestamp),
    CheckConstraint(
        "(kind = 'tv' AND participant_id IS NULL) OR (kind = 'participant' AND participant_id IS NOT NULL)",
        name="subject",
    ),
    Index("ix_links_program", "program_id", "created_at"),
)

# "Something is missing": a participant's report (on a ledger line, or free text), answered by an admin
# with a reply, and resolved with an adjustment (its ledger entry) or without.
cases = Table(
    "cases",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("program_id", ForeignKey("programs.id"), nullable=False),
    Column("participant_id", ForeignKey("participants.id"), nullable=False),
    Column("entry_id", ForeignKey("ledger_entries.id")),  # the line it is about, if any
    Column("message", String(1000), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reply", String(1000)),
    Column("adjustment_id", ForeignKey("ledger_entries.id")),
    Column("created_at", Timestamp, nullable=False),
    Column("answered_at", Timestamp),
    CheckConstraint("status in ('open', 'resolved', 'declined')", name="status"),
    Index("ix_cases_program", "program_id", "status", "id"),
    Index("ix_cases_participant", "participant_id", "id"),
)

# An admin studio session: an admin key exchanged for a cookie whose secret is stored hashed (id). The key's
# id, role and programs are copied at sign-in; a session of a stored key ends when that key is revoked.
admin_sessions = Table(
    "admin_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("key_id", String(32), nullable=False),
    Column("role", String(16), nullable=False),
    Column("programs", JSON, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
)

# An analysis of the studio's insight page as an admin last computed it (seconds at 100,000 participants: the
# page only reads it), by view and the window's parameters. Derived: erasure drops a program's, exports skip it.
insight_snapshots = Table(
    "insight_snapshots",
    metadata,
    Column("program_id", ForeignKey("programs.id"), primary_key=True),
    Column("view", String(16), primary_key=True),
    Column("params", String(120), primary_key=True),
    Column("body", JSON, nullable=False),
    Column("computed_at", Timestamp, nullable=False),
    Column("computed_by", String(64), nullable=False),
)

# A participant's RFM segment from a moment on (``levelup segments refresh`` writes a row when it changes).
# The engine reads the one in force at an event's occurred_at, so replay finds what live scoring found.
segment_assignments = Table(
    "segment_assignments",
    metadata,
    Column("participant_id", ForeignKey("participants.id"), primary_key=True),
    Column("effective_at", Timestamp, primary_key=True),
    Column("program_id", ForeignKey("programs.id"), nullable=False),
    Column("segment", String(32), nullable=False),
    Index("ix_segment_assignments_program", "program_id", "effective_at"),
)

# A ``target: auto`` goal's target for one participant and period, frozen the first time it was needed
# (it never moves mid-period, and replay reads it rather than recomputing from a history that late events moved).
personal_targets = Table(
    "personal_targets",
    metadata,
    Column("participant_id", ForeignKey("participants.id"), primary_key=True),
    Column("challenge", String(64), primary_key=True),
    Column("period", String(32), primary_key=True),
    Column("program_id", ForeignKey("programs.id"), nullable=False),
    Column("target", Float, nullable=False),
    Column("source", String(16), nullable=False),  # own | team | fallback
    Column("created_at", Timestamp, nullable=False),
)

# The top of each board as it stood at the end of each local day (``leaderboards.history`` writes today's,
# again at every jobs tick): the TV's "▲2 since yesterday" and the board's movement chart read it. Internal
# subject ids only (a participant's or a team's, as the board ranks), so an erasure has nothing to rewrite.
board_ranks = Table(
    "board_ranks",
    metadata,
    Column("program_id", ForeignKey("programs.id"), primary_key=True),
    Column("board", String(100), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("subject_id", Id, primary_key=True),
    Column("period", String(40), nullable=False),
    Column("rank", Integer, nullable=False),
    Column("value", Float, nullable=False),
)

# The periods of the windowed boards kept in rank_rows (source 'w', ``leaderboards.windows``): a rolling board
# as of a local day, or a currency board over a calendar period. A row says that period's board rows are
# complete (filled by the board-windows job, kept by every write since); its bounds say what they sum, so a read
# under other bounds (a new time zone) ranks afresh instead. The first and last local day of the window; for a
# currency board also the instants they start and end at (ledger entries carry an instant, not a day).
board_windows = Table(
    "board_windows",
    metadata,
    Column("program_id", ForeignKey("programs.id"), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("period", String(32), primary_key=True),
    Column("first_day", String(10), nullable=False),
    Column("last_day", String(10), nullable=False),
    Column("starts_at", Timestamp, nullable=True),
    Column("ends_at", Timestamp, nullable=True),
)
