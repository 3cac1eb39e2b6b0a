"""The line's schema: datasets, models, versions, aliases and their history, gate decisions, step cache.

Revision ID: l0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "l0001"
down_revision = None
branch_labels = ("line",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "line_dataset_versions",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("parent", sa.Integer, nullable=True),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("features", sa.Integer, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "line_model_versions",
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("checkpoint_path", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("lineage", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "line_aliases",
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("alias", sa.String(100), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "line_alias_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(200), nullable=False, index=True),
        sa.Column("alias", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("previous", sa.Integer, nullable=True),
        sa.Column("kind", sa.String(20), nullable=False),  # "set" or "rollback"
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_table(
        "line_gate_decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(200), nullable=False, index=True),
        sa.Column("challenger", sa.Integer, nullable=False),
        sa.Column("champion", sa.Integer, nullable=True),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("challenger_score", sa.Float, nullable=False),
        sa.Column("champion_score", sa.Float, nullable=True),
        sa.Column("margin", sa.Float, nullable=False),
        sa.Column("holdout", sa.Text, nullable=False),
        sa.Column("promoted", sa.Boolean, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_table(
        "line_step_cache",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("step", sa.String(200), nullable=False),
        sa.Column("outputs", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "line_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pipeline", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("lineage", sa.Text, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=True),
    )


def downgrade() -> None:
    for table in (
        "line_runs",
        "line_step_cache",
        "line_gate_decisions",
        "line_alias_history",
        "line_aliases",
        "line_model_versions",
        "line_dataset_versions",
    ):
        op.drop_table(table)
