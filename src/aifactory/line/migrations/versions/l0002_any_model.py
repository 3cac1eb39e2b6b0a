"""Data of any shape and models of any flavour: a dataset version's kind and schema; a model
version's flavour, signature and the dataset each metric was measured on.

Revision ID: l0002
Revises: l0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "l0002"
down_revision = "l0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("line_dataset_versions") as batch:
        # Versions made before tables are (X, y) array blobs: "arrays".
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="arrays"))
        batch.add_column(sa.Column("schema", sa.Text, nullable=True))
    with op.batch_alter_table("line_model_versions") as batch:
        # Versions registered before flavours are digits CNN checkpoints.
        batch.add_column(sa.Column("flavour", sa.String(40), nullable=False, server_default="digits"))
        batch.add_column(sa.Column("signature", sa.Text, nullable=True))
        batch.add_column(sa.Column("measured_on", sa.Text, nullable=False, server_default="{}"))
    with op.batch_alter_table("line_gate_decisions") as batch:
        batch.add_column(sa.Column("higher_is_better", sa.Boolean, nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("line_gate_decisions") as batch:
        batch.drop_column("higher_is_better")
    with op.batch_alter_table("line_model_versions") as batch:
        batch.drop_column("measured_on")
        batch.drop_column("signature")
        batch.drop_column("flavour")
    with op.batch_alter_table("line_dataset_versions") as batch:
        batch.drop_column("schema")
        batch.drop_column("kind")
