"""detect: alerts, webhook outbox, problems, memberships, human edits

Revision ID: detect_0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "detect_0001"
down_revision = None
branch_labels = ("detect",)
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "detect_alerts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("dedup_key", sa.String(500), nullable=False),
        sa.Column("root_cause", sa.Text(), nullable=False),
        sa.Column("values_json", sa.Text(), nullable=False),
        sa.Column("granularity", sa.String(10), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("first_bucket", sa.Integer(), nullable=False),
        sa.Column("last_bucket", sa.Integer(), nullable=False),
        sa.Column("windows", sa.Integer(), nullable=False),
        sa.Column("actual", sa.Float(), nullable=False),
        sa.Column("expected", sa.Float(), nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("pvalue", sa.Float(), nullable=False),
        sa.Column("typical_json", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
    )
    op.create_index("ix_detect_alerts_dedup_key", "detect_alerts", ["dedup_key"])
    op.create_index("ix_detect_alerts_state", "detect_alerts", ["state"])
    op.create_table(
        "detect_outbox",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(50), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("delivered_at", TS),
        sa.Column("last_error", sa.Text()),
    )
    op.create_index("ix_detect_outbox_alert_id", "detect_outbox", ["alert_id"])
    op.create_index(
        "ix_detect_outbox_pending", "detect_outbox", ["delivered_at", "next_attempt_at"]
    )
    op.create_table(
        "detect_problems",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("keywords_json", sa.Text(), nullable=False),
        sa.Column("scenario", sa.String(20)),
        sa.Column("province", sa.String(100)),
        sa.Column("city", sa.String(100)),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("config_version", sa.String(40), nullable=False),
        sa.Column("n_voices", sa.Integer(), nullable=False),
        sa.Column("n_customers", sa.Integer(), nullable=False),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
        sa.Column("typical_json", sa.Text(), nullable=False),
        sa.Column("daily_json", sa.Text(), nullable=False),
        sa.Column("regions_json", sa.Text(), nullable=False),
        sa.Column("merged_into", sa.String(64)),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "detect_problem_members",
        sa.Column("voice_id", sa.String(200), primary_key=True),
        sa.Column("problem_id", sa.String(64), nullable=False),
        sa.Column("source", sa.String(10), nullable=False),
        sa.Column("similarity", sa.Float(), nullable=False),
        sa.Column("assigned_at", TS, nullable=False),
    )
    op.create_index(
        "ix_detect_problem_members_problem_id", "detect_problem_members", ["problem_id"]
    )
    op.create_table(
        "detect_problem_edits",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(100)),
        sa.Column("created_at", TS, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "detect_problem_edits",
        "detect_problem_members",
        "detect_problems",
        "detect_outbox",
        "detect_alerts",
    ):
        op.drop_table(table)
