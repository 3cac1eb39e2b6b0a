"""A project's idle GPU timeout: its interactive jobs are stopped after their GPUs idle this long.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("idle_timeout_s", sa.Double))


def downgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("idle_timeout_s")
