"""The live factory's store: SQLAlchemy 2 on SQLite or PostgreSQL, schema by Alembic."""

from aifactory.live.store.models import EventRow, JobRow, NodeEventRow, TokenInfo
from aifactory.live.store.repository import Store

__all__ = ["EventRow", "JobRow", "NodeEventRow", "Store", "TokenInfo"]
