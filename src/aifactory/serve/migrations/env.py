"""Alembic environment of the prediction log; run programmatically by `aifactory.serve.feedback`.

The caller passes an open connection in `config.attributes["connection"]`; the log keeps its
own version table so it can share a database with the factory's other stores.
"""

from __future__ import annotations

from alembic import context

VERSION_TABLE = "serve_alembic_version"

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
