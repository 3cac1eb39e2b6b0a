"""A node's whole capacity: host CPU and memory and its rack, so the event log replays on the
nodes the floor had (the twin schedules by CPU and memory too).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("cpu_milli", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("memory_mib", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("rack", sa.String(200)))


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("rack")
        batch.drop_column("memory_mib")
        batch.drop_column("cpu_milli")
