"""The store: SQLite (WAL, busy timeout) by default, PostgreSQL by URL.

Every write method is one transaction. The schema is created and upgraded only by
running the Alembic migrations at `open()`; nothing calls `metadata.create_all`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from aifactory.core.actions import StateChanged
from aifactory.core.cluster import NODE_FIELDS, Node, NodeSpec
from aifactory.core.errors import AifactoryError, NotFound, SpecError
from aifactory.core.events import (
    JobEvent,
    NodeJoined,
    job_event,
    job_event_record,
    node_event,
    node_event_kind,
    node_event_name,
)
from aifactory.core.job import Job, JobSpec
from aifactory.core.project import Department, Project
from aifactory.core.states import JobState
from aifactory.dbutil import create_engine
from aifactory.live.store import models as m
from aifactory.live.store.models import EventRow, JobRow, NodeEventRow, TokenInfo
from aifactory.live.telemetry import GpuSample, JobUsage

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
GPU_SAMPLE_FIELDS = tuple(f.name for f in fields(GpuSample))
PROJECT_FIELDS = tuple(f.name for f in fields(Project))
JOB_USAGE_FIELDS = tuple(f.name for f in fields(JobUsage))
ACTIVE = (JobState.QUEUED.value, JobState.RUNNING.value, JobState.PREEMPTED.value)
SQLITE_BUSY_TIMEOUT_MS = 10_000


TOKEN_ID_LEN = 12  # the hash's first hex digits shown as a token's id
TOKEN_ID_MIN = 8  # the fewest digits a revoke accepts


@dataclass(frozen=True, slots=True)
class HeldJob:
    """A job as accounting reads it: who, how many GPUs, on which node (its first), when."""

    id: int
    project: str
    user: str
    gpus: float
    node: str
    started_at: float
    finished_at: float | None


def _window(query: Any, column: Any, since: float | None, until: float | None) -> Any:
    """`query` cut to rows whose `column` lies in [since, until) (None: open on that side)."""
    if since is not None:
        query = query.where(column >= since)
    if until is not None:
        query = query.where(column < until)
    return query


def _event_row(r: Any) -> EventRow:
    return EventRow(r.seq, r.job_id, None if r.old is None else JobState(r.old), JobState(r.new), r.at, r.reason)


def _token_info(row: Mapping[Any, Any]) -> TokenInfo:
    projects = row["projects"]
    return TokenInfo(
        user=row["user"],
        is_admin=bool(row["is_admin"]),
        projects="*" if projects == "*" else tuple(projects),
        created_at=row["created_at"],
        id=row["sha256"][:TOKEN_ID_LEN],
        expires_at=row.get("expires_at"),
        revoked_at=row.get("revoked_at"),
    )


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _project_rows(projects: Iterable[Project]) -> list[dict[str, Any]]:
    return [asdict(p) for p in projects]


def _department_rows(departments: Iterable[Department]) -> list[dict[str, Any]]:
    return [{"name": d.name, "quota": d.quota, "weight": d.weight, "limit": d.limit} for d in departments]


def _put(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Insert or replace `rows` by name (other rows are kept)."""
    if rows:
        conn.execute(table.delete().where(table.c.name.in_([r["name"] for r in rows])))
        conn.execute(table.insert(), rows)


class Store:
    """Jobs, the append-only event log, projects, nodes, tokens and meta, by URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: sa.Engine | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def open(self) -> Store:
        """Connect and run the migrations up to head (creates the schema on first open)."""
        if self._engine is not None:
            return self
        url = sa.make_url(self.url)
        kwargs: dict[str, Any] = {}
        if url.get_backend_name() == "sqlite":
            if url.database and url.database != ":memory:":
                Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            else:  # one in-memory database shared by every use, not one per pooled connection
                kwargs["poolclass"] = sa.pool.StaticPool
        try:
            engine = create_engine(self.url, SQLITE_BUSY_TIMEOUT_MS, foreign_keys=True, any_thread=True, **kwargs)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise AifactoryError(f"db_url: cannot use {self.url!r}: {exc}") from None
        try:
            with engine.begin() as conn:
                cfg = Config()
                cfg.set_main_option("script_location", str(MIGRATIONS))
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except sa.exc.OperationalError as exc:
            engine.dispose()
            raise AifactoryError(
                f"db_url: cannot open {url.render_as_string(hide_password=True)}: {exc.orig}"
            ) from None
        self._engine = engine
        return self

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __enter__(self) -> Store:
        return self.open()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            raise AifactoryError("store is not open")
        return self._engine

    # -- jobs ----------------------------------------------------------------------------

    def create_job(self, spec: JobSpec, now: float) -> int:
        """Insert a queued job and its first event in one transaction; return its id."""
        return self.create_jobs([spec], now)[0]

    def create_jobs(self, specs: Sequence[JobSpec], now: float, array: bool = False) -> list[int]:
        """Insert queued jobs and their first events in one transaction; their ids, in order.
        `array`: they are the elements of one job array, whose id is the first one's (set in
        each spec's `array_id`)."""
        ids: list[int] = []
        with self.engine.begin() as conn:
            for spec in specs:
                job_id = conn.execute(
                    m.jobs.insert().returning(m.jobs.c.id),
                    {
                        "spec": m.spec_to_json(spec),
                        "state": JobState.QUEUED.value,
                        "user": spec.user,
                        "project": spec.project,
                        "submitted_at": now,
                        "queued_at": now,
                        "reason": "",  # as the core records it; the event says "submitted"
                    },
                ).scalar_one()
                ids.append(int(job_id))
            if array:
                for k, (job_id, spec) in enumerate(zip(ids, specs, strict=True)):
                    element = replace(
                        spec, array_id=ids[0], array_index=spec.array_index if spec.array_index is not None else k
                    )
                    conn.execute(
                        sa.update(m.jobs)
                        .where(m.jobs.c.id == job_id)
                        .values(spec=m.spec_to_json(element), array_id=ids[0])
                    )
            conn.execute(
                m.events.insert(),
                [
                    {"job_id": job_id, "old": None, "new": JobState.QUEUED.value, "at": now, "reason": "submitted"}
                    for job_id in ids
                ],
            )
        return ids

    def array_jobs(self, array_id: int) -> list[JobRow]:
        """An array's elements by index order ([]: not an array), read in one query: one moment's
        states, so a reader never sees more elements running than the cap allows."""
        return self._select_jobs(m.jobs.c.array_id == array_id)

    def apply(self, changes: Sequence[StateChanged], jobs: Mapping[int, Job]) -> None:
        """Append the transitions to the event log and save the jobs' current fields, atomically."""
        if not changes and not jobs:
            return
        with self.engine.begin() as conn:
            if changes:
                conn.execute(
                    m.events.insert(),
                    [
                        {
                            "job_id": c.job_id,
                            "old": None if c.old is None else c.old.value,
                            "new": c.new.value,
                            "at": c.at,
                            "reason": c.reason,
                        }
                        for c in changes
                    ],
                )
            if jobs:
                conn.execute(
                    sa.update(m.jobs).where(m.jobs.c.id == sa.bindparam("_id")),
                    [{"_id": job_id, **m.job_columns(job)} for job_id, job in jobs.items()],
                )

    def set_spec(self, job_id: int, spec: JobSpec) -> None:
        """A job's spec as an update changed it (priority, time limit, GPUs)."""
        with self.engine.begin() as conn:
            conn.execute(sa.update(m.jobs).where(m.jobs.c.id == job_id).values(spec=m.spec_to_json(spec)))

    def set_process(self, job_id: int, pid: int | None, pgid: int | None, log_path: str | Path | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(m.jobs)
                .where(m.jobs.c.id == job_id)
                .values(pid=pid, pgid=pgid, log_path=None if log_path is None else str(log_path))
            )

    def load_active(self) -> list[Job]:
        """Queued, running and preempted jobs as core records, in id order (for restore)."""
        return [row.to_job() for row in self._select_jobs(m.jobs.c.state.in_(ACTIVE))]

    def active_rows(self) -> list[JobRow]:
        """Queued, running and preempted jobs with their process columns (for re-attach)."""
        return self._select_jobs(m.jobs.c.state.in_(ACTIVE))

    def get_job(self, job_id: int) -> JobRow:
        rows = self._select_jobs(m.jobs.c.id == job_id)
        if not rows:
            raise NotFound(f"no job {job_id}")
        return rows[0]

    def list_jobs(
        self,
        project: str | None = None,
        state: JobState | str | Collection[JobState | str] | None = None,
        user: str | None = None,
        limit: int | None = None,
        *,
        projects: Collection[str] | None = None,
        before: int | None = None,
    ) -> list[JobRow]:
        """Jobs matching every filter given, newest first (`limit`: the newest N).

        `state` may be several states (any of them); `projects` limits to the projects a caller may
        see (applied in the query, so before the limit); `before` is a cursor: only ids below it."""
        where = []
        if project is not None:
            where.append(m.jobs.c.project == project)
        if projects is not None:
            where.append(m.jobs.c.project.in_(sorted(projects)))
        if isinstance(state, str):
            where.append(m.jobs.c.state == JobState(state).value)
        elif state is not None:
            where.append(m.jobs.c.state.in_(sorted({JobState(s).value for s in state})))
        if user is not None:
            where.append(m.jobs.c.user == user)
        if before is not None:
            where.append(m.jobs.c.id < before)
        return self._select_jobs(*where, newest_first=True, limit=limit)

    def _select_jobs(self, *where: Any, newest_first: bool = False, limit: int | None = None) -> list[JobRow]:
        order = m.jobs.c.id.desc() if newest_first else m.jobs.c.id
        query = sa.select(m.jobs).where(*where).order_by(order).limit(limit)
        with self.engine.connect() as conn:
            return [JobRow.from_db(row) for row in conn.execute(query)]

    # -- the event log ---------------------------------------------------------------------

    def events(
        self, job_id: int | None = None, since: float | None = None, until: float | None = None
    ) -> list[EventRow]:
        """Transitions in the order they happened; `since` inclusive, `until` exclusive."""
        query = _window(sa.select(m.events).order_by(m.events.c.seq), m.events.c.at, since, until)
        if job_id is not None:
            query = query.where(m.events.c.job_id == job_id)
        with self.engine.connect() as conn:
            return [_event_row(r) for r in conn.execute(query)]

    def recent_events(
        self, since: float | None = None, projects: Collection[str] | None = None, limit: int = 200
    ) -> list[EventRow]:
        """The last `limit` transitions (from `since`), oldest first; `projects`: of their jobs only."""
        e, j = m.events.c, m.jobs.c
        query = _window(sa.select(m.events).order_by(e.seq.desc()).limit(limit), e.at, since, None)
        if projects is not None:
            query = query.join(m.jobs, j.id == e.job_id).where(j.project.in_(list(projects)))
        with self.engine.connect() as conn:
            rows = [_event_row(r) for r in conn.execute(query)]
        return rows[::-1]

    def held_between(self, since: float, until: float) -> tuple[list[HeldJob], list[tuple[int, str, float]]]:
        """What accounting reads, lean (a month of a big floor is 10^5 jobs): the jobs that may
        have held GPUs in [since, until), and their transitions (job id, new state, time) in order."""
        c = m.jobs.c
        query = sa.select(c.id, c.project, c.user, c.spec, c.placement, c.started_at, c.finished_at).where(
            c.started_at.is_not(None), c.started_at < until, sa.or_(c.finished_at.is_(None), c.finished_at >= since)
        )
        with self.engine.connect() as conn:
            jobs = [
                HeldJob(
                    r.id,
                    r.project,
                    r.user,
                    float(r.spec.get("gpus", 1)),
                    r.placement["parts"][0][0] if r.placement else "",
                    r.started_at,
                    r.finished_at,
                )
                for r in conn.execute(query)
            ]
        e = m.events.c
        rows: list[tuple[int, int, str, float]] = []
        ids = [j.id for j in jobs]
        for k in range(0, len(ids), 5000):
            q = sa.select(e.seq, e.job_id, e.new, e.at).where(e.job_id.in_(ids[k : k + 5000]), e.at < until)
            with self.engine.connect() as conn:
                rows += [(r.seq, r.job_id, r.new, r.at) for r in conn.execute(q)]
        rows.sort()
        return jobs, [(j, new, at) for _, j, new, at in rows]

    def gpu_usage_by_job(self, since: float, until: float, job_ids: Sequence[int]) -> dict[int, tuple[float, float]]:
        """job id -> (busy GPU-seconds, energy in J) of these jobs, from the GPUs' history in [since, until)."""
        s = m.gpu_samples.c
        out: dict[int, tuple[float, float]] = {}
        for k in range(0, len(job_ids), 5000):
            query = (
                sa.select(
                    s.job_id,
                    sa.func.sum(s.utilization * s.seconds / 100.0),
                    sa.func.sum(s.power_w * s.seconds),
                )
                .where(s.job_id.in_(list(job_ids[k : k + 5000])), s.at >= since, s.at < until)
                .group_by(s.job_id)
            )
            with self.engine.connect() as conn:
                out |= {int(j): (float(b or 0.0), float(e or 0.0)) for j, b, e in conn.execute(query)}
        return out

    # -- projects and nodes ------------------------------------------------------------------

    def save_projects(self, projects: Iterable[Project]) -> None:
        """Insert or replace the given projects (others are kept)."""
        with self.engine.begin() as conn:
            _put(conn, m.projects, _project_rows(projects))

    def save_config(self, projects: Iterable[Project], departments: Iterable[Department]) -> None:
        """Insert or replace projects and departments (a projects file) in one transaction."""
        with self.engine.begin() as conn:
            _put(conn, m.departments, _department_rows(departments))
            _put(conn, m.projects, _project_rows(projects))

    def load_projects(self) -> list[Project]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(m.projects).order_by(m.projects.c.name))
            return [
                Project(**{f: r._mapping[f] for f in PROJECT_FIELDS} | {"quota_by_model": dict(r.quota_by_model or {})})
                for r in rows
            ]

    def delete_projects(self, names: Collection[str]) -> None:
        with self.engine.begin() as conn:
            conn.execute(m.projects.delete().where(m.projects.c.name.in_(list(names))))

    def delete_departments(self, names: Collection[str]) -> None:
        with self.engine.begin() as conn:
            conn.execute(m.departments.delete().where(m.departments.c.name.in_(list(names))))

    def save_departments(self, departments: Iterable[Department]) -> None:
        """Insert or replace the given departments (others are kept)."""
        with self.engine.begin() as conn:
            _put(conn, m.departments, _department_rows(departments))

    def load_departments(self) -> list[Department]:
        with self.engine.connect() as conn:
            return [
                Department(name=r.name, quota=r.quota, weight=r.weight, limit=r.limit)
                for r in conn.execute(sa.select(m.departments).order_by(m.departments.c.name))
            ]

    def save_nodes(self, nodes: Iterable[Node | NodeSpec]) -> None:
        """Record these nodes' capacities (a known name's is replaced). Nodes no longer on the floor
        stay: the history names them (the node events say when each was there)."""
        rows = [asdict(n.spec if isinstance(n, Node) else n) for n in nodes]
        with self.engine.begin() as conn:
            if rows:
                conn.execute(m.nodes.delete().where(m.nodes.c.name.in_([r["name"] for r in rows])))
                conn.execute(m.nodes.insert(), rows)

    def add_node_events(self, rows: Iterable[NodeEventRow]) -> None:
        values = [
            {
                "at": r.at,
                "node": node_event_name(r.event),
                "kind": node_event_kind(r.event),
                "spec": asdict(r.event.spec) if isinstance(r.event, NodeJoined) else None,
                "by": r.by,
            }
            for r in rows
        ]
        if values:
            with self.engine.begin() as conn:
                conn.execute(m.node_events.insert(), values)

    def add_job_events(self, rows: Iterable[tuple[float, JobEvent]]) -> None:
        values = [
            {"at": at, "job_id": e.job_id, "kind": kind, "data": data}
            for at, e in rows
            for kind, data in [job_event_record(e)]
        ]
        if values:
            with self.engine.begin() as conn:
                conn.execute(m.job_events.insert(), values)

    def job_events(self, until: float | None = None) -> list[tuple[float, JobEvent]]:
        """What else the scheduler went by for jobs (holds, updates, requeues, idle GPUs), in order."""
        query = _window(sa.select(m.job_events).order_by(m.job_events.c.seq), m.job_events.c.at, None, until)
        with self.engine.connect() as conn:
            return [(r.at, job_event(r.kind, r.job_id, dict(r.data))) for r in conn.execute(query)]

    def node_events(self, since: float | None = None, until: float | None = None) -> list[NodeEventRow]:
        """What happened to nodes, in order; `since` inclusive, `until` exclusive."""
        query = _window(sa.select(m.node_events).order_by(m.node_events.c.seq), m.node_events.c.at, since, until)
        with self.engine.connect() as conn:
            return [
                NodeEventRow(r.at, node_event(r.kind, r.node, NodeSpec(**r.spec) if r.spec else None), r.by)
                for r in conn.execute(query)
            ]

    def load_nodes(self) -> list[NodeSpec]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(m.nodes).order_by(m.nodes.c.name))
            return [NodeSpec(**{name: r._mapping[name] for name in NODE_FIELDS}) for r in rows]

    # -- telemetry ---------------------------------------------------------------------------

    def add_gpu_samples(self, samples: Iterable[GpuSample]) -> None:
        rows = [asdict(s) for s in samples]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(m.gpu_samples.insert(), rows)

    def gpu_samples(
        self, since: float | None = None, until: float | None = None, node: str | None = None
    ) -> list[GpuSample]:
        query = _window(sa.select(m.gpu_samples).order_by(m.gpu_samples.c.seq), m.gpu_samples.c.at, since, until)
        if node is not None:
            query = query.where(m.gpu_samples.c.node == node)
        with self.engine.connect() as conn:
            return [GpuSample(**{f: r._mapping[f] for f in GPU_SAMPLE_FIELDS}) for r in conn.execute(query)]

    def gpu_samples_of_job(self, job_id: int) -> list[GpuSample]:
        """The stored minutes of the GPUs a job held alone, in time order."""
        query = sa.select(m.gpu_samples).where(m.gpu_samples.c.job_id == job_id).order_by(m.gpu_samples.c.at)
        with self.engine.connect() as conn:
            rows = [GpuSample(**{f: r._mapping[f] for f in GPU_SAMPLE_FIELDS}) for r in conn.execute(query)]
        # One point per minute: the mean over the job's GPUs.
        merged: dict[float, list[GpuSample]] = {}
        for s in rows:
            merged.setdefault(s.at, []).append(s)
        return [
            GpuSample(
                at,
                group[0].node,
                -1,
                group[0].seconds,
                sum(s.utilization for s in group) / len(group),
                sum(s.memory_used_mib for s in group),
                sum(s.power_w for s in group),
                max(s.temperature_c for s in group),
                job_id,
                group[0].project,
            )
            for at, group in merged.items()
        ]

    def prune_gpu_samples(self, before: float) -> int:
        """Drop the history older than `before` (retention); how many rows went."""
        with self.engine.begin() as conn:
            return int(conn.execute(m.gpu_samples.delete().where(m.gpu_samples.c.at < before)).rowcount)

    def save_job_usage(self, usages: Iterable[JobUsage]) -> None:
        rows = [{f: getattr(u, f) for f in JOB_USAGE_FIELDS} for u in usages]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(m.job_usage.delete().where(m.job_usage.c.job_id.in_([r["job_id"] for r in rows])))
                conn.execute(m.job_usage.insert(), rows)

    def job_usage(self, job_ids: Collection[int] | None = None) -> dict[int, JobUsage]:
        query = sa.select(m.job_usage)
        if job_ids is not None:
            query = query.where(m.job_usage.c.job_id.in_(list(job_ids)))
        with self.engine.connect() as conn:
            return {r.job_id: JobUsage(**{f: r._mapping[f] for f in JOB_USAGE_FIELDS}) for r in conn.execute(query)}

    # -- tokens and meta ---------------------------------------------------------------------

    def add_token(
        self,
        token: str,
        user: str,
        is_admin: bool = False,
        projects: Iterable[str] | Literal["*"] = "*",
        now: float | None = None,
        expires_at: float | None = None,
    ) -> TokenInfo:
        """Store a token by its SHA-256 only (the token itself is never written)."""
        row = {
            "sha256": token_hash(token),
            "user": user,
            "is_admin": is_admin,
            "projects": "*" if projects == "*" else sorted(projects),
            "created_at": time.time() if now is None else now,
            "expires_at": expires_at,
            "revoked_at": None,
        }
        with self.engine.begin() as conn:
            conn.execute(m.tokens.insert(), row)
        return _token_info(row)

    def token_info(self, token: str, now: float | None = None) -> TokenInfo | None:
        """The token's record if it is known, not revoked and not expired (at `now`)."""
        query = sa.select(m.tokens).where(m.tokens.c.sha256 == token_hash(token))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        info = _token_info(row._mapping)
        return info if info.valid(time.time() if now is None else now) else None

    def tokens(self) -> list[TokenInfo]:
        """Every token ever made (revoked and expired ones too), oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(m.tokens).order_by(m.tokens.c.created_at)).all()
        return [_token_info(r._mapping) for r in rows]

    def revoke_tokens(self, prefix: str, now: float | None = None) -> list[TokenInfo]:
        """Revoke the tokens whose id starts with `prefix` (at least TOKEN_ID_MIN characters);
        NotFound if none does. Already revoked ones stay as they were."""
        if len(prefix) < TOKEN_ID_MIN or not all(c in "0123456789abcdef" for c in prefix):
            raise SpecError("id", f"a token id is {TOKEN_ID_MIN} or more hex digits, got {prefix!r}")
        at = time.time() if now is None else now
        with self.engine.begin() as conn:
            hit = m.tokens.c.sha256.startswith(prefix, autoescape=True)
            rows = conn.execute(sa.select(m.tokens).where(hit)).all()
            if not rows:
                raise NotFound(f"no token {prefix}")
            conn.execute(m.tokens.update().where(hit, m.tokens.c.revoked_at.is_(None)).values(revoked_at=at))
            rows = conn.execute(sa.select(m.tokens).where(hit)).all()
        return [_token_info(r._mapping) for r in rows]

    # -- the leader lease --------------------------------------------------------------------

    def take_lease(
        self, name: str, holder: str, ttl_s: float, now: float | None = None, replacing: str | None = None
    ) -> int | None:
        """Take or renew the lease `name` for `holder` until now + ttl_s, if it is free, expired,
        already `holder`'s, or `replacing`'s (a holder known to be dead): the term it holds (None:
        another holder's, unexpired). One UPDATE with the condition in its WHERE: atomic on SQLite
        and PostgreSQL alike."""
        at = time.time() if now is None else now
        c = m.leases.c
        with self.engine.begin() as conn:
            if conn.execute(sa.select(c.name).where(c.name == name)).first() is None:
                try:
                    with conn.begin_nested():
                        conn.execute(m.leases.insert(), {"name": name, "holder": "", "expires_at": 0.0, "term": 0})
                except sa.exc.IntegrityError:
                    pass  # made meanwhile by another server
            changed = sa.case((c.holder == holder, c.term), else_=c.term + 1)
            done = conn.execute(
                m.leases.update()
                .where(c.name == name, sa.or_(c.holder == holder, c.expires_at < at, c.holder == (replacing or holder)))
                .values(holder=holder, expires_at=at + ttl_s, term=changed)
            )
            if done.rowcount != 1:
                return None
            return int(conn.execute(sa.select(c.term).where(c.name == name)).scalar_one())

    def lease(self, name: str) -> tuple[str, float, int] | None:
        """(holder, expires_at, term) of the lease `name`, None if never taken."""
        c = m.leases.c
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(c.holder, c.expires_at, c.term).where(c.name == name)).first()
        return None if row is None else (row.holder, row.expires_at, row.term)

    def release_lease(self, name: str, holder: str) -> None:
        """Let the lease go at once (a clean stop): a standby need not wait for it to expire."""
        c = m.leases.c
        with self.engine.begin() as conn:
            conn.execute(m.leases.update().where(c.name == name, c.holder == holder).values(expires_at=0.0))

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(m.meta.c.value).where(m.meta.c.key == key)).scalar_one_or_none()
        return default if value is None else value

    def set_meta(self, key: str, value: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(m.meta.delete().where(m.meta.c.key == key))
            conn.execute(m.meta.insert(), {"key": key, "value": value})
