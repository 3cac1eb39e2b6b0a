"""The prediction log: every answer (live and shadow) and the labels posted later.

`input` holds the request row as 64 little-endian float32 (8x8 pixels, row-major);
`probs` the model's 10 class probabilities as float32.

Revision ID: s0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "s0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "serve_predictions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("row", sa.Integer, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("input", sa.LargeBinary, nullable=False),
        sa.Column("predicted", sa.Integer, nullable=False),
        sa.Column("probs", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_serve_predictions_request", "serve_predictions", ["request_id", "role"])
    op.create_table(
        "serve_feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("prediction_id", sa.Integer, sa.ForeignKey("serve_predictions.id"), nullable=False, unique=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("row", sa.Integer, nullable=False),
        sa.Column("label", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("serve_feedback")
    op.drop_index("ix_serve_predictions_request", table_name="serve_predictions")
    op.drop_table("serve_predictions")
