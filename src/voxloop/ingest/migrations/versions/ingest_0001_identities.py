"""ingest: customer identities and their access log

Revision ID: ingest_0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ingest_0001"
down_revision = None
branch_labels = ("ingest",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "customer_identities",
        sa.Column("pseudonym", sa.String(40), nullable=False),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pseudonym", name="pk_customer_identities"),
    )
    op.create_table(
        "identity_access_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("pseudonym", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("purpose", sa.String(500), nullable=False),
        sa.Column("found", sa.Boolean(), nullable=False),
        sa.Column("accessed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_identity_access_log"),
    )
    op.create_index(
        "ix_identity_access_log_pseudonym", "identity_access_log", ["pseudonym"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_identity_access_log_pseudonym", table_name="identity_access_log")
    op.drop_table("identity_access_log")
    op.drop_table("customer_identities")
