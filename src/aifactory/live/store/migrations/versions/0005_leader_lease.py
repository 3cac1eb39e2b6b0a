"""One active server per store: a leader lease (who leads, until when, the how-manyth leader).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(256), nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
        sa.Column("term", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("leases")
