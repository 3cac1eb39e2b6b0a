"""Any model: a regression answer has no predicted class, and a label may be a number.

`probs` now holds the model's outputs (class probabilities, or one value per regression target).

Revision ID: s0002
Revises: s0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "s0002"
down_revision = "s0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("serve_predictions") as batch:
        batch.alter_column("predicted", existing_type=sa.Integer, nullable=True)
    with op.batch_alter_table("serve_feedback") as batch:
        batch.alter_column("label", existing_type=sa.Integer, type_=sa.Float, existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("serve_feedback") as batch:
        batch.alter_column("label", existing_type=sa.Float, type_=sa.Integer, existing_nullable=False)
    with op.batch_alter_table("serve_predictions") as batch:
        batch.alter_column("predicted", existing_type=sa.Integer, nullable=False)
