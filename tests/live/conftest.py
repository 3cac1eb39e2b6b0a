"""Fixtures for the live shell: a store URL on SQLite and on PostgreSQL (skipped where absent)."""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG = {"host": "127.0.0.1", "port": 5432, "dbname": "test", "user": "postgres"}


def _pg_connect():  # type: ignore[no-untyped-def]
    import psycopg

    try:
        return psycopg.connect(**PG, connect_timeout=2, autocommit=True)
    except psycopg.OperationalError:
        return None


@pytest.fixture
def live_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private AIFACTORY_HOME for one test."""
    path = tmp_path / "home"
    monkeypatch.setenv("AIFACTORY_HOME", str(path))
    return path


@contextlib.contextmanager
def pg_schema_url() -> Iterator[str | None]:
    """The URL of a fresh PostgreSQL schema of its own (xdist-safe), dropped afterwards; None
    where no PostgreSQL answers."""
    conn = _pg_connect()
    if conn is None:
        yield None
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield (
            f"postgresql+psycopg://{PG['user']}@{PG['host']}:{PG['port']}/{PG['dbname']}"
            f"?options=-csearch_path%3D{schema}"
        )
    finally:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a PostgreSQL schema of its own (xdist-safe)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'factory.db'}"
        return
    with pg_schema_url() as url:
        if url is None:
            pytest.skip("PostgreSQL does not answer at 127.0.0.1:5432")
        yield url


@pytest.fixture
def no_leftovers(tmp_path: Path) -> Iterator[None]:
    """After the test, SIGKILL every process it left running (a failing test must not leak jobs).

    Found by `tmp_path` in the command line: job wrappers (leaders of their process
    group, so the group goes too) and server processes the test started.
    """
    yield
    marker = os.fsencode(str(tmp_path))
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        try:
            found = marker in (entry / "cmdline").read_bytes() and pid != os.getpid()
        except OSError:
            continue
        if found:
            with contextlib.suppress(OSError):
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)


RAY_LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # keep every Ray process on 127.0.0.1


@contextlib.contextmanager
def ray_cluster(gpus: dict[str, int]) -> Iterator[object]:
    """A `ray.cluster_utils.Cluster` on 127.0.0.1: a head with no GPUs and one node per name of
    `gpus`, declaring that many GPUs and labelled with the name (the floor's node name)."""
    from ray.cluster_utils import Cluster

    os.environ.update(RAY_LOOPBACK)
    small = {"node_ip_address": "127.0.0.1", "object_store_memory": 80 << 20}
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False, **small})
    try:
        for name, count in gpus.items():
            c.add_node(num_cpus=1, num_gpus=count, labels={"aifactory/node": name}, **small)
        c.wait_for_nodes()
        yield c
    finally:
        c.shutdown()


# The executors a floor test runs on: Ray's cases on one test worker (one cluster at a time).
EXECUTORS = ["local", pytest.param("ray", marks=pytest.mark.xdist_group("ray"))]
