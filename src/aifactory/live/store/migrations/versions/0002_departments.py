"""Departments, and per-model guarantees of projects (the core's two-level quotas).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "departments",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("quota", sa.Double, nullable=False),
        sa.Column("weight", sa.Double, nullable=False),
        sa.Column("limit", sa.Double),
    )
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("quota_by_model", sa.JSON, nullable=False, server_default=sa.text("'{}'")))


def downgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("quota_by_model")
    op.drop_table("departments")
