"""Alembic environment of the line's own schema (version table `line_alembic_version`).

`aifactory.line.db.open_engine` runs it with a connection already in a transaction (and
holding the write lock), so two processes migrating at once take turns.
"""

from __future__ import annotations

from alembic import context

from aifactory.line.db import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(connection=connection, version_table=VERSION_TABLE, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
