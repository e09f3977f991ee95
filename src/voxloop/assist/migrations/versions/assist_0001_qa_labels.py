"""assist: QA labels (confirm / overturn / missed verdicts on quality-inspection hits)

Revision ID: assist_0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "assist_0001"
down_revision = None
branch_labels = ("assist",)
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "assist_qa_labels",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("voice_id", sa.String(200), nullable=False),
        sa.Column("rule_id", sa.String(64), nullable=False),
        sa.Column("hit_id", sa.String(32)),
        sa.Column("verdict", sa.String(10), nullable=False),
        sa.Column("note", sa.Text()),
        sa.Column("province", sa.String(100)),
        sa.Column("city", sa.String(100)),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("voice_id", "rule_id", name="uq_assist_qa_labels_voice_rule"),
    )
    op.create_index("ix_assist_qa_labels_voice_id", "assist_qa_labels", ["voice_id"])
    op.create_index("ix_assist_qa_labels_hit_id", "assist_qa_labels", ["hit_id"])


def downgrade() -> None:
    op.drop_index("ix_assist_qa_labels_hit_id", table_name="assist_qa_labels")
    op.drop_index("ix_assist_qa_labels_voice_id", table_name="assist_qa_labels")
    op.drop_table("assist_qa_labels")
