"""The store's tables (SQLAlchemy Core) and the frozen rows read back from them.

Times are float seconds since the epoch (the shell's clock), so the twin can replay
the event log as a trace without conversions. The schema itself is created only by
the Alembic migrations in `migrations/versions`; these Table objects must match them
(a test compares the two).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import sqlalchemy as sa

from aifactory.core.events import NodeEvent
from aifactory.core.job import MILLI, Job, JobSpec, Placement
from aifactory.core.states import JobState

metadata = sa.MetaData()

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("user", sa.String(200), nullable=False, index=True),
    sa.Column("project", sa.String(200), nullable=False, index=True),
    sa.Column("submitted_at", sa.Double, nullable=False),
    sa.Column("queued_at", sa.Double, nullable=False),
    sa.Column("started_at", sa.Double),
    sa.Column("finished_at", sa.Double),
    sa.Column("exit_code", sa.Integer),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Column("stop_reason", sa.Text),
    sa.Column("placement", sa.JSON),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("done_s", sa.Double, nullable=False, server_default="0"),
    sa.Column("pending_reason", sa.Text, nullable=False, server_default=""),
    sa.Column("pid", sa.Integer),
    sa.Column("pgid", sa.Integer),
    sa.Column("log_path", sa.Text),
    sa.Column("held", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("array_id", sa.Integer, index=True),  # an array element's array (its first element's id)
    sqlite_autoincrement=True,
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.Integer, nullable=False, index=True),
    sa.Column("old", sa.String(16)),
    sa.Column("new", sa.String(16), nullable=False),
    sa.Column("at", sa.Double, nullable=False, index=True),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sqlite_autoincrement=True,
)

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("quota", sa.Double, nullable=False),
    sa.Column("weight", sa.Double, nullable=False),
    sa.Column("limit", sa.Double),
    sa.Column("pool", sa.String(200)),
    sa.Column("department", sa.String(200)),
    sa.Column("quota_by_model", sa.JSON, nullable=False, server_default=sa.text("'{}'")),  # model -> GPUs
    sa.Column("idle_timeout_s", sa.Double),
)

departments = sa.Table(
    "departments",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("quota", sa.Double, nullable=False),
    sa.Column("weight", sa.Double, nullable=False),
    sa.Column("limit", sa.Double),
)

nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("gpu_count", sa.Integer, nullable=False),
    sa.Column("gpu_model", sa.String(200), nullable=False),
    sa.Column("gpu_memory_mib", sa.Integer, nullable=False),
    sa.Column("pool", sa.String(200), nullable=False),
    sa.Column("cpu_milli", sa.Integer, nullable=False, server_default="0"),
    sa.Column("memory_mib", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rack", sa.String(200)),
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("user", sa.String(200), nullable=False),
    sa.Column("is_admin", sa.Boolean, nullable=False),
    sa.Column("projects", sa.JSON, nullable=False),  # list of project names, or "*"
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double),  # None: never
    sa.Column("revoked_at", sa.Double),  # None: not revoked
)

leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(256), nullable=False),  # host:pid:nonce of the server that leads
    sa.Column("expires_at", sa.Double, nullable=False),  # unix seconds; past it, anyone may take over
    sa.Column("term", sa.Integer, nullable=False),  # +1 at every change of leader
)

node_events = sa.Table(
    "node_events",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Double, nullable=False, index=True),
    sa.Column("node", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # core.events.NODE_EVENT_KINDS
    sa.Column("spec", sa.JSON),  # a join's capacity (NodeSpec fields)
    sa.Column("by", sa.String(200), nullable=False, server_default=""),  # the operator; "" the cluster itself
    sqlite_autoincrement=True,
)

job_events = sa.Table(  # core.events.JobEvent: hold, update, requeue, idle
    "job_events",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Double, nullable=False, index=True),
    sa.Column("job_id", sa.Integer, nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("data", sa.JSON, nullable=False),  # the event's fields but the job id
    sqlite_autoincrement=True,
)

gpu_samples = sa.Table(  # telemetry.GpuSample: one GPU over one minute
    "gpu_samples",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Double, nullable=False, index=True),
    sa.Column("node", sa.String(200), nullable=False),
    sa.Column("gpu", sa.Integer, nullable=False),
    sa.Column("seconds", sa.Double, nullable=False),
    sa.Column("utilization", sa.Double, nullable=False),  # percent, mean over the minute
    sa.Column("memory_used_mib", sa.Double, nullable=False),
    sa.Column("power_w", sa.Double, nullable=False),
    sa.Column("temperature_c", sa.Double, nullable=False),
    sa.Column("job_id", sa.Integer, index=True),  # the job that held the GPU alone (None: free or shared)
    sa.Column("project", sa.String(200)),
    sqlite_autoincrement=True,
)

job_usage = sa.Table(  # telemetry.JobUsage: a job's compact series
    "job_usage",
    metadata,
    sa.Column("job_id", sa.Integer, primary_key=True),
    sa.Column("samples", sa.Integer, nullable=False),
    sa.Column("util_sum", sa.Double, nullable=False),
    sa.Column("util_peak", sa.Double, nullable=False),
    sa.Column("memory_peak_mib", sa.Integer, nullable=False),
    sa.Column("energy_j", sa.Double, nullable=False),
    sa.Column("busy_gpu_s", sa.Double, nullable=False),
    sa.Column("gpu_s", sa.Double, nullable=False),
    sa.Column("idle_since", sa.Double),
)

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


# -- JSON forms of the core's value objects ----------------------------------------------


def spec_to_json(spec: JobSpec) -> dict[str, Any]:
    data = asdict(spec)
    data["command"] = list(spec.command)
    return data


def spec_from_json(data: Mapping[str, Any]) -> JobSpec:
    fields = dict(data)
    fields["command"] = tuple(fields["command"])
    fields["env"] = dict(fields.get("env") or {})
    fields["after"] = tuple((int(d), str(k)) for d, k in fields.get("after") or ())
    return JobSpec(**fields)


def placement_to_json(placement: Placement | None) -> dict[str, Any] | None:
    if placement is None:
        return None
    data: dict[str, Any] = {"parts": [[node, list(idx)] for node, idx in placement.parts], "milli": placement.milli}
    if placement.cpu_milli or placement.memory_mib:
        data |= {"cpu_milli": placement.cpu_milli, "memory_mib": placement.memory_mib}
    return data


def placement_from_json(data: Mapping[str, Any] | None) -> Placement | None:
    if data is None:
        return None
    parts = tuple((str(node), tuple(int(g) for g in idx)) for node, idx in data["parts"])
    return Placement(
        parts,
        milli=int(data.get("milli", MILLI)),
        cpu_milli=int(data.get("cpu_milli", 0)),
        memory_mib=int(data.get("memory_mib", 0)),
    )


# -- rows ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobRow:
    """One job as stored: the core's spec plus every column."""

    id: int
    spec: JobSpec
    state: JobState
    user: str
    project: str
    submitted_at: float
    queued_at: float
    started_at: float | None
    finished_at: float | None
    exit_code: int | None
    reason: str
    stop_reason: str | None
    placement: Placement | None
    attempts: int
    done_s: float
    pending_reason: str
    pid: int | None
    pgid: int | None
    log_path: str | None
    held: bool = False

    @classmethod
    def from_db(cls, row: sa.Row[Any]) -> JobRow:
        m = row._mapping
        values = {name: m[name] for name in ROW_FIELDS}
        values |= {
            "spec": spec_from_json(m["spec"]),
            "state": JobState(m["state"]),
            "placement": placement_from_json(m["placement"]),
        }
        return cls(**values)

    @classmethod
    def from_job(cls, job: Job, pid: int | None = None, pgid: int | None = None, log_path: str | None = None) -> JobRow:
        """The row a job record is saved as (what the store would read back)."""
        kept = {name: getattr(job, name) for name in KEPT_FIELDS}
        return cls(**kept, user=job.spec.user, project=job.spec.project, pid=pid, pgid=pgid, log_path=log_path)

    def to_job(self) -> Job:
        """The core record, for Factory.restore after a restart."""
        return Job(**{name: getattr(self, name) for name in KEPT_FIELDS})

    @property
    def wait_s(self) -> float | None:
        """Seconds from submission to the (last) start, None while never started."""
        return None if self.started_at is None else self.started_at - self.submitted_at

    @property
    def runtime_s(self) -> float | None:
        """Seconds of the last attempt, None while never started (open-ended while running)."""
        if self.started_at is None:
            return None
        return None if self.finished_at is None else self.finished_at - self.started_at


ROW_FIELDS = tuple(f.name for f in fields(JobRow))
# The fields of the core's Job a row keeps (its demand, checkpoint time and estimate are worked out again).
KEPT_FIELDS = tuple(name for name in ROW_FIELDS if name in {f.name for f in fields(Job)})


def job_columns(job: Job) -> dict[str, Any]:
    """The mutable columns of a job row, from the core's record."""
    return {
        "state": job.state.value,
        "queued_at": job.queued_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "exit_code": job.exit_code,
        "reason": job.reason,
        "stop_reason": job.stop_reason,
        "placement": placement_to_json(job.placement),
        "attempts": job.attempts,
        "done_s": job.done_s,
        "pending_reason": job.pending_reason,
        "held": job.held,
    }


@dataclass(frozen=True, slots=True)
class EventRow:
    """One state transition of one job: the twin's trace of the floor."""

    seq: int
    job_id: int
    old: JobState | None
    new: JobState
    at: float
    reason: str


@dataclass(frozen=True, slots=True)
class NodeEventRow:
    """Something that happened to a node, when, and who did it ("" : the cluster itself)."""

    at: float
    event: NodeEvent
    by: str = ""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    user: str
    is_admin: bool
    projects: tuple[str, ...] | Literal["*"]
    created_at: float
    id: str = ""  # the first characters of the token's hash: names it in lists and revokes
    expires_at: float | None = None
    revoked_at: float | None = None

    def valid(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def may_use(self, project: str) -> bool:
        return self.is_admin or self.projects == "*" or project in self.projects
