"""GPU telemetry: each GPU's history (one row per GPU per minute, with the job that held it) and
each job's compact usage (mean and peak utilisation, peak memory, energy).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gpu_samples",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Double, nullable=False, index=True),
        sa.Column("node", sa.String(200), nullable=False),
        sa.Column("gpu", sa.Integer, nullable=False),
        sa.Column("seconds", sa.Double, nullable=False),
        sa.Column("utilization", sa.Double, nullable=False),
        sa.Column("memory_used_mib", sa.Double, nullable=False),
        sa.Column("power_w", sa.Double, nullable=False),
        sa.Column("temperature_c", sa.Double, nullable=False),
        sa.Column("job_id", sa.Integer, index=True),
        sa.Column("project", sa.String(200)),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "job_usage",
        sa.Column("job_id", sa.Integer, primary_key=True),
        sa.Column("samples", sa.Integer, nullable=False),
        sa.Column("util_sum", sa.Double, nullable=False),
        sa.Column("util_peak", sa.Double, nullable=False),
        sa.Column("memory_peak_mib", sa.Integer, nullable=False),
        sa.Column("energy_j", sa.Double, nullable=False),
        sa.Column("busy_gpu_s", sa.Double, nullable=False),
        sa.Column("gpu_s", sa.Double, nullable=False),
        sa.Column("idle_since", sa.Double),
    )


def downgrade() -> None:
    op.drop_table("job_usage")
    op.drop_table("gpu_samples")
