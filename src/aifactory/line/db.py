"""The line's database: one SQLite file under home (WAL), or PostgreSQL by URL.

The schema is created by the line's own Alembic migrations (`migrations/`, version table
`line_alembic_version`), so it sits next to the floor's tables without touching them.
Every SQLite transaction starts with `BEGIN IMMEDIATE`: writers from two processes (a
model server and a pipeline) take turns instead of failing on a stale read.
"""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from aifactory.dbutil import create_engine

VERSION_TABLE = "line_alembic_version"
HEAD = "l0002"  # the latest revision in migrations/versions (a test checks they agree)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_MS = 30_000  # how long a writer waits for another process's transaction
_PG_LOCK_KEY = 0x6C696E65  # "line": advisory lock serialising migrations on PostgreSQL

metadata = sa.MetaData()

dataset_versions = sa.Table(
    "line_dataset_versions",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("sha256", sa.String(64)),
    sa.Column("parent", sa.Integer),
    sa.Column("rows", sa.Integer),
    sa.Column("features", sa.Integer),
    sa.Column("source", sa.Text),
    sa.Column("created_at", sa.Float),
    sa.Column("kind", sa.String(16)),
    sa.Column("schema", sa.Text),
)
model_versions = sa.Table(
    "line_model_versions",
    metadata,
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("checkpoint_path", sa.Text),
    sa.Column("sha256", sa.String(64)),
    sa.Column("metrics", sa.Text),
    sa.Column("lineage", sa.Text),
    sa.Column("created_at", sa.Float),
    sa.Column("flavour", sa.String(40)),
    sa.Column("signature", sa.Text),
    sa.Column("measured_on", sa.Text),
)
aliases = sa.Table(
    "line_aliases",
    metadata,
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("alias", sa.String(100), primary_key=True),
    sa.Column("version", sa.Integer),
    sa.Column("updated_at", sa.Float),
)
alias_history = sa.Table(
    "line_alias_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(200)),
    sa.Column("alias", sa.String(100)),
    sa.Column("version", sa.Integer),
    sa.Column("previous", sa.Integer),
    sa.Column("kind", sa.String(20)),
    sa.Column("reason", sa.Text),
    sa.Column("at", sa.Float),
)
gate_decisions = sa.Table(
    "line_gate_decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(200)),
    sa.Column("challenger", sa.Integer),
    sa.Column("champion", sa.Integer),
    sa.Column("metric", sa.String(100)),
    sa.Column("challenger_score", sa.Float),
    sa.Column("champion_score", sa.Float),
    sa.Column("margin", sa.Float),
    sa.Column("holdout", sa.Text),
    sa.Column("promoted", sa.Boolean),
    sa.Column("reason", sa.Text),
    sa.Column("at", sa.Float),
    sa.Column("higher_is_better", sa.Boolean),
)
step_cache = sa.Table(
    "line_step_cache",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("step", sa.String(200)),
    sa.Column("outputs", sa.Text),
    sa.Column("created_at", sa.Float),
)
runs = sa.Table(
    "line_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("pipeline", sa.String(200)),
    sa.Column("status", sa.String(20)),
    sa.Column("lineage", sa.Text),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
)

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def database_url(home: Path) -> str:
    return f"sqlite:///{Path(home) / 'line.db'}"


def open_engine(home: Path, url: str | None = None) -> Engine:
    """The engine for `url` (default: `home/line.db`), migrated to the latest schema; one per process."""
    url = url or database_url(home)
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            if url.startswith("sqlite"):
                Path(home).mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, BUSY_TIMEOUT_MS, begin_immediate=True)
            _migrate(engine)
            _engines[url] = engine
        return engine


def write_lock(conn: sa.Connection, key: str) -> None:
    """Serialise writers of `key` (e.g. one model's versions) until the transaction ends.

    SQLite needs nothing more: BEGIN IMMEDIATE already holds the database's write lock. On
    PostgreSQL a transaction-level advisory lock keeps "read max(version), insert max + 1"
    from handing two writers the same number.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": key})


def _at_head(engine: Engine) -> bool:
    """Whether the schema is current already (saves importing Alembic in every step's process)."""
    try:
        with engine.begin() as conn:
            return conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() == HEAD
    except sa.exc.DBAPIError:
        return False


def _migrate(engine: Engine) -> None:
    if _at_head(engine):
        return
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
