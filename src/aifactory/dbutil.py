"""One way to open a SQLAlchemy engine for the factory's stores (live, line, serving).

SQLite gets WAL (readers never block the writer), a busy timeout instead of "database
is locked" errors under concurrent writers, and synchronous=NORMAL (a commit survives a
killed process, not a power cut, without an fsync each). Other databases (PostgreSQL)
get pre-ping so a restarted server does not hand out dead connections.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa


def create_engine(
    url: str,
    busy_timeout_ms: int = 10_000,
    begin_immediate: bool = False,
    foreign_keys: bool = False,
    any_thread: bool = False,
    **kw: Any,
) -> sa.Engine:
    """An engine for `url`; `begin_immediate` takes SQLite's write lock when a transaction begins.

    BEGIN IMMEDIATE makes "read max(version), insert max + 1" safe between processes on
    SQLite; on PostgreSQL callers use an advisory lock instead. `any_thread` lets a SQLite
    connection be used from threads other than the one that opened it (background writers).
    """
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True, **kw)
    connect_args: dict[str, Any] = {"timeout": busy_timeout_ms / 1000}
    if any_thread:
        connect_args["check_same_thread"] = False
    engine = sa.create_engine(url, connect_args=connect_args, **kw)

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        if begin_immediate:
            dbapi_conn.isolation_level = None  # the "begin" hook below issues BEGIN itself
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        if foreign_keys:
            cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    if begin_immediate:

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
