"""act: users, tokens, work orders, links, comments, notifications, verification, audit log

Revision ID: act_0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "act_0001"
down_revision = None
branch_labels = ("act",)
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "act_users",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(100), nullable=False),
        sa.Column("display_name", sa.String(200)),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("province", sa.String(100)),
        sa.Column("city", sa.String(100)),
        sa.Column("password_hash", sa.Text()),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("username", name="uq_act_users_username"),
    )
    op.create_table(
        "act_api_tokens",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("act_users.id"), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100)),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS),
    )
    op.create_index("ix_act_api_tokens_user_id", "act_api_tokens", ["user_id"])
    op.create_table(
        "act_work_orders",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("idempotency_key", sa.String(200)),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("source_kind", sa.String(20), nullable=False),
        sa.Column("source_ref", sa.String(200)),
        sa.Column("scenario", sa.String(20)),
        sa.Column("subcategory", sa.String(100)),
        sa.Column("channel", sa.String(50)),
        sa.Column("segment", sa.String(100)),
        sa.Column("province", sa.String(100)),
        sa.Column("city", sa.String(100)),
        sa.Column("district", sa.String(100)),
        sa.Column("priority", sa.String(10), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("assignee_id", sa.Integer()),
        sa.Column("department", sa.String(100)),
        sa.Column("team", sa.String(100)),
        sa.Column("queue", sa.String(100)),
        sa.Column("routing_rule", sa.String(100)),
        sa.Column("commitment_id", sa.String(50)),
        sa.Column("due_at", TS),
        sa.Column("breached_at", TS),
        sa.Column("escalation_level", sa.Integer(), nullable=False),
        sa.Column("resolution_reason", sa.String(100)),
        sa.Column("resolution_notes", sa.Text()),
        sa.Column("regressed", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(100)),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("assigned_at", TS),
        sa.Column("in_progress_at", TS),
        sa.Column("pending_customer_at", TS),
        sa.Column("escalated_at", TS),
        sa.Column("resolved_at", TS),
        sa.Column("verified_at", TS),
        sa.Column("closed_at", TS),
        sa.Column("reopened_at", TS),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.UniqueConstraint("idempotency_key", name="uq_act_work_orders_idempotency_key"),
    )
    op.create_index("ix_act_work_orders_source_ref", "act_work_orders", ["source_ref"])
    op.create_index("ix_act_work_orders_province", "act_work_orders", ["province"])
    op.create_index("ix_act_work_orders_state", "act_work_orders", ["state"])
    op.create_table(
        "act_work_order_links",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.String(32), sa.ForeignKey("act_work_orders.id"), nullable=False),
        sa.Column("customer_id", sa.String(200)),
        sa.Column("voice_id", sa.String(200)),
        sa.Column("added_at", TS, nullable=False),
    )
    op.create_index("ix_act_work_order_links_order_id", "act_work_order_links", ["order_id"])
    op.create_index("ix_act_work_order_links_customer", "act_work_order_links", ["customer_id"])
    op.create_table(
        "act_work_order_comments",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.String(32), sa.ForeignKey("act_work_orders.id"), nullable=False),
        sa.Column("author", sa.String(100), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_act_work_order_comments_order_id", "act_work_order_comments", ["order_id"])
    op.create_table(
        "act_notifications",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.String(32), sa.ForeignKey("act_work_orders.id"), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("recipients", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("order_id", "kind", "level", name="uq_act_notif"),
    )
    op.create_index("ix_act_notifications_order_id", "act_notifications", ["order_id"])
    op.create_table(
        "act_verification_tasks",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.String(32), sa.ForeignKey("act_work_orders.id"), nullable=False),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("answered_at", TS),
        sa.Column("satisfied", sa.Boolean()),
        sa.Column("score", sa.Float()),
        sa.Column("note", sa.Text()),
    )
    op.create_index("ix_act_verification_tasks_order_id", "act_verification_tasks", ["order_id"])
    op.create_index(
        "ix_act_verification_tasks_customer_id", "act_verification_tasks", ["customer_id"]
    )
    op.create_table(
        "act_audit_log",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(50), nullable=False),
        sa.Column("object_type", sa.String(30), nullable=False),
        sa.Column("object_id", sa.String(200), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    op.create_index("ix_act_audit_log_at", "act_audit_log", ["at"])
    op.create_index("ix_act_audit_log_object_id", "act_audit_log", ["object_id"])
    # The audit log is append-only at the database level too, so no code path (or a
    # stray SQL console) can rewrite history.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION act_audit_log_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'act_audit_log is append-only (% refused)', TG_OP; END $$"
        )
        op.execute(
            "CREATE TRIGGER act_audit_log_append_only BEFORE UPDATE OR DELETE ON act_audit_log "
            "FOR EACH ROW EXECUTE FUNCTION act_audit_log_refuse()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER act_audit_log_no_{verb.lower()} BEFORE {verb} ON act_audit_log "
                f"BEGIN SELECT RAISE(ABORT, 'act_audit_log is append-only ({verb} refused)'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS act_audit_log_append_only ON act_audit_log")
        op.execute("DROP FUNCTION IF EXISTS act_audit_log_refuse()")
    for table in (
        "act_audit_log",
        "act_verification_tasks",
        "act_notifications",
        "act_work_order_comments",
        "act_work_order_links",
        "act_work_orders",
        "act_api_tokens",
        "act_users",
    ):
        op.drop_table(table)
