"""The store against real SQLite and real PostgreSQL: every test runs on both."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext

from aifactory.core import Cluster, JobSpec, JobState, NotFound, Placement, Project, StateChanged
from aifactory.core.project import Department
from aifactory.live.store import Store
from aifactory.live.store.models import metadata
from aifactory.live.store.repository import MIGRATIONS


@pytest.fixture
def store(store_url: str):  # type: ignore[no-untyped-def]
    s = Store(store_url).open()
    yield s
    s.close()


def spec(**kw: object) -> JobSpec:
    return JobSpec(command=("python", "-c", "print('hi')"), **kw)  # type: ignore[arg-type]


def test_migration_builds_exactly_the_models(store: Store) -> None:
    with store.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
        version = conn.execute(sa.text("select version_num from alembic_version")).scalar_one()
    assert diffs == []
    assert version == "0011"


def test_upgrade_from_the_first_schema_keeps_the_data(store_url: str) -> None:
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(sa.text("insert into projects (name, quota, weight) values ('vision', 2, 1)"))
    engine.dispose()
    with Store(store_url) as s:
        assert s.load_projects() == [Project("vision", quota=2)]
        s.save_departments([Department("research", quota=4)])
        assert s.load_departments() == [Department("research", quota=4)]


def test_reopen_keeps_data_and_does_not_migrate_twice(store_url: str) -> None:
    with Store(store_url) as s:
        job_id = s.create_job(spec(project="vision", user="ada"), 10.0)
    with Store(store_url) as s:
        row = s.get_job(job_id)
    assert (row.project, row.user, row.state, row.submitted_at) == ("vision", "ada", JobState.QUEUED, 10.0)


def test_create_job_stores_spec_and_first_event(store: Store) -> None:
    full = spec(gpus=0.5, env={"A": "1"}, workdir="/tmp", time_limit_s=3.5, name="n", priority=2)
    a = store.create_job(full, 1.0)
    b = store.create_job(spec(), 2.0)
    assert b > a
    row = store.get_job(a)
    assert row.spec == full
    assert row.state is JobState.QUEUED
    assert [(e.job_id, e.old, e.new, e.at) for e in store.events(job_id=a)] == [(a, None, JobState.QUEUED, 1.0)]


def test_apply_persists_transitions_and_fields_atomically(store: Store) -> None:
    job_id = store.create_job(spec(), 1.0)
    job = store.load_active()[0]
    job.state, job.started_at, job.attempts = JobState.RUNNING, 2.0, 1
    job.placement = Placement((("node0", (1, 3)),))
    store.apply([StateChanged(job_id, JobState.QUEUED, JobState.RUNNING, 2.0, "on node0:1,3")], {job_id: job})
    store.set_process(job_id, 4242, 4242, "/logs/job-1.log")
    job.state, job.finished_at, job.exit_code = JobState.FAILED, 5.0, 3
    store.apply([StateChanged(job_id, JobState.RUNNING, JobState.FAILED, 5.0, "exit code 3")], {job_id: job})
    row = store.get_job(job_id)
    assert (row.state, row.exit_code, row.started_at, row.finished_at) == (JobState.FAILED, 3, 2.0, 5.0)
    assert row.placement == Placement((("node0", (1, 3)),))
    assert (row.pid, row.pgid, row.log_path, row.attempts) == (4242, 4242, "/logs/job-1.log", 1)
    assert [e.new for e in store.events(job_id=job_id)] == [JobState.QUEUED, JobState.RUNNING, JobState.FAILED]
    assert store.load_active() == []


def test_apply_is_all_or_nothing(store: Store) -> None:
    job_id = store.create_job(spec(), 1.0)
    job = store.load_active()[0]
    job.state = JobState.RUNNING
    job.queued_at = None  # type: ignore[assignment]  # violates NOT NULL after the event insert
    with pytest.raises(sa.exc.IntegrityError):
        store.apply([StateChanged(job_id, JobState.QUEUED, JobState.RUNNING, 2.0)], {job_id: job})
    assert store.get_job(job_id).state is JobState.QUEUED
    assert len(store.events()) == 1


def test_load_active_restores_core_records(store: Store) -> None:
    ids = [store.create_job(spec(project=f"p{i}"), float(i)) for i in range(3)]
    done = store.load_active()[1]
    done.state = JobState.CANCELLED
    store.apply([StateChanged(ids[1], JobState.QUEUED, JobState.CANCELLED, 9.0)], {ids[1]: done})
    active = store.load_active()
    assert [j.id for j in active] == [ids[0], ids[2]]
    assert active[1].spec.project == "p2" and active[1].submitted_at == 2.0 and active[1].queued_at == 2.0


def test_get_job_unknown_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match="no job 7"):
        store.get_job(7)


def test_list_jobs_filters_newest_first(store: Store) -> None:
    a = store.create_job(spec(project="vision", user="ada"), 1.0)
    b = store.create_job(spec(project="nlp", user="ada"), 2.0)
    c = store.create_job(spec(project="vision", user="bob"), 3.0)
    job = store.load_active()[0]
    job.state = JobState.CANCELLED
    store.apply([], {a: job})
    assert [r.id for r in store.list_jobs()] == [c, b, a]
    assert [r.id for r in store.list_jobs(project="vision")] == [c, a]
    assert [r.id for r in store.list_jobs(user="ada")] == [b, a]
    assert [r.id for r in store.list_jobs(state="queued")] == [c, b]
    assert [r.id for r in store.list_jobs(state=JobState.CANCELLED, project="vision")] == [a]
    assert [r.id for r in store.list_jobs(limit=2)] == [c, b]
    with pytest.raises(ValueError):
        store.list_jobs(state="sleeping")


def test_events_window_since_inclusive_until_exclusive(store: Store) -> None:
    for t in (1.0, 2.0, 3.0, 4.0):
        store.create_job(spec(), t)
    assert [e.at for e in store.events(since=2.0, until=4.0)] == [2.0, 3.0]
    assert [e.seq for e in store.events()] == sorted(e.seq for e in store.events())


def test_projects_and_nodes_upsert(store: Store) -> None:
    vision = Project("vision", 2, 3.0, 6.0, "a100", "research", quota_by_model={"A100": 2.0})
    store.save_projects([Project("default", quota=4), vision])
    store.save_projects([Project("default", quota=8)])
    assert store.load_projects() == [Project("default", quota=8), vision]
    store.save_departments([Department("research", 4, 2.0, 8.0), Department("ops")])
    store.save_departments([Department("ops", quota=1)])
    assert store.load_departments() == [Department("ops", quota=1), Department("research", 4, 2.0, 8.0)]
    store.save_nodes(Cluster.virtual(4, 2, model="H100", memory_mib=81559))
    store.save_nodes(Cluster.virtual(2, 1))
    node, gone = store.load_nodes()  # node1 stays known: the history names it
    assert (node.name, node.gpu_count, node.gpu_model, node.gpu_memory_mib, node.pool) == (
        "node0",
        2,
        "virtual",
        0,
        "default",
    )
    assert (gone.name, gone.gpu_count, gone.gpu_model) == ("node1", 4, "H100")


def test_node_events_keep_what_who_and_a_joins_capacity(store: Store) -> None:
    from aifactory.core import Drain, NodeJoined, NodeSpec, NodeState
    from aifactory.live.store import NodeEventRow

    big = NodeSpec("gpu-07", 8, "H100", 81559, pool="p", cpu_milli=64000, memory_mib=1 << 20, rack="r2")
    rows = [
        NodeEventRow(10.0, Drain("gpu-07"), "alice"),
        NodeEventRow(11.0, NodeState("gpu-07", up=False)),
        NodeEventRow(12.5, NodeJoined(big)),
        NodeEventRow(13.0, Drain("gpu-07", drained=False), "bob"),
    ]
    store.add_node_events(rows[:2])
    store.add_node_events(rows[2:])
    assert store.node_events() == rows
    assert store.node_events(since=11.0, until=13.0) == rows[1:3]


def test_tokens_are_stored_hashed(store: Store) -> None:
    store.add_token("s3cret", "ada", is_admin=False, projects=["vision", "nlp"], now=5.0)
    store.add_token("root-token", "root", is_admin=True)
    info = store.token_info("s3cret")
    assert info is not None and (info.user, info.is_admin, info.projects, info.created_at) == (
        "ada",
        False,
        ("nlp", "vision"),
        5.0,
    )
    assert info.may_use("vision") and not info.may_use("audio")
    admin = store.token_info("root-token")
    assert admin is not None and admin.is_admin and admin.projects == "*"
    assert store.token_info("wrong") is None
    with store.engine.connect() as conn:
        stored = conn.execute(sa.text("select sha256 from tokens")).scalars().all()
    assert "s3cret" not in stored and len(stored[0]) == 64


def test_meta_set_get(store: Store) -> None:
    assert store.get_meta("schema") is None
    assert store.get_meta("schema", "x") == "x"
    store.set_meta("started", "1")
    store.set_meta("started", "2")
    assert store.get_meta("started") == "2"


def test_sqlite_runs_in_wal_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with Store(f"sqlite:///{tmp_path / 'deep' / 'f.db'}") as s, s.engine.connect() as conn:
        assert conn.execute(sa.text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert conn.execute(sa.text("PRAGMA busy_timeout")).scalar_one() > 0


def test_bad_url_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from aifactory.core import AifactoryError

    with pytest.raises(AifactoryError, match="db_url"):
        Store("nosuchdb://x").open()
    with pytest.raises(AifactoryError, match="db_url"):
        Store("postgresql+psycopg://nobody@127.0.0.1:1/none").open()


def test_in_memory_sqlite_is_one_database() -> None:
    with Store("sqlite://") as s:
        job_id = s.create_job(spec(), 1.0)
        assert s.get_job(job_id).state is JobState.QUEUED
        assert [e.job_id for e in s.events()] == [job_id]
