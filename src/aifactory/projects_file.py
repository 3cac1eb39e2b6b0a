"""Projects and departments from a TOML or YAML file, validated at the edge with pydantic.

    [[departments]]
    name = "research"
    quota = 32          # guaranteed GPUs for all its projects together
    weight = 2          # share of idle GPUs lent over quota
    limit = 48          # hard cap (optional)

    [[projects]]
    name = "vision"
    department = "research"
    quota = 8
    weight = 1
    limit = 16
    pool = "a100"       # optional node pool
    quota_by_model = { H100 = 4 }

Every error is a SpecError naming the field (`projects[1].quota`), and nothing is
returned unless the whole file is valid.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, ValidationInfo, field_validator

from aifactory.bounded import load_toml, load_yaml
from aifactory.core.cluster import NodeSpec
from aifactory.core.errors import SpecError, UnknownName
from aifactory.core.events import (
    JOB_EVENT_KINDS,
    JobEvent,
    NodeEvent,
    job_event_record,
    node_event,
    node_event_kind,
    node_event_name,
)
from aifactory.core.project import Department, Project
from aifactory.core.settings import FactorySettings

MAX_BYTES = 1 << 20  # a projects file is small; anything larger is a mistake


class DepartmentModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    quota: float = Field(default=0.0, ge=0)
    weight: float = Field(default=1.0, gt=0)
    limit: float | None = Field(default=None, ge=0)

    @field_validator("limit")
    @classmethod
    def _limit_covers_quota(cls, limit: float | None, info: ValidationInfo) -> float | None:
        quota = info.data.get("quota")
        if limit is not None and quota is not None and limit < quota:
            raise ValueError(f"limit {limit:g} is below quota {quota:g}")
        return limit


class ProjectModel(DepartmentModel):
    department: str | None = None
    pool: str | None = None
    quota_by_model: dict[str, float] = Field(default_factory=dict)
    idle_timeout_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)


class ProjectsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    departments: list[DepartmentModel] = Field(default_factory=list)
    projects: list[ProjectModel] = Field(default_factory=list)


class NodeModel(BaseModel):
    """A node's capacity (`NodeSpec`) as a floor file gives it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    gpu_count: int = Field(ge=0)
    gpu_model: str = Field(default="virtual", min_length=1, max_length=200)
    gpu_memory_mib: int = Field(default=0, ge=0)
    pool: str = Field(default="default", min_length=1, max_length=200)
    cpu_milli: int = Field(default=0, ge=0)
    memory_mib: int = Field(default=0, ge=0)
    rack: str | None = Field(default=None, max_length=200)


class NodeEventModel(BaseModel):
    """Something that happened to a node, `at` seconds on the trace's clock (`core.events.node_event`)."""

    model_config = ConfigDict(extra="forbid")

    at: float = Field(allow_inf_nan=False)
    node: str = Field(min_length=1, max_length=200)
    kind: Literal["drain", "resume", "down", "up", "join"]


class JobEventModel(BaseModel):
    """A hold, update, requeue or idle report of a trace's job (its row), `at` seconds on the trace's clock."""

    model_config = ConfigDict(extra="forbid")

    at: float = Field(ge=0, allow_inf_nan=False)
    job: int = Field(ge=0)
    kind: Literal["hold", "update", "requeue", "idle"]
    data: dict[str, Any] = Field(default_factory=dict)


class FloorFile(ProjectsFile):
    """A floor as a trace carries it beside its jobs: the nodes, projects and departments, the
    core settings it scheduled with (policy, placement, graces, policy options), and what happened
    to its nodes (a node whose first event is a join is not there before it)."""

    nodes: list[NodeModel] = Field(default_factory=list)
    settings: dict[str, Any] | None = None
    node_events: list[NodeEventModel] = Field(default_factory=list)
    job_events: list[JobEventModel] = Field(default_factory=list)


def core_settings(data: Mapping[str, Any], field: str = "settings") -> FactorySettings:
    """FactorySettings from their fields by name, checked (SpecError naming `field.NAME`)."""
    known = {f.name for f in fields(FactorySettings)}
    for name in data:
        if name not in known:
            raise SpecError(f"{field}.{name}", f"unknown setting (known: {', '.join(sorted(known))})")
    try:
        return TypeAdapter(FactorySettings).validate_python(dict(data))
    except ValidationError as err:
        first = err.errors()[0]
        raise SpecError(f"{field}." + ".".join(str(p) for p in first["loc"]), first["msg"]) from None


class Floor(NamedTuple):
    nodes: list[NodeSpec]
    projects: list[Project]
    departments: list[Department]
    settings: FactorySettings | None  # None: the file does not say
    node_events: list[tuple[float, NodeEvent]]  # (seconds on the trace's clock, event), in order
    job_events: list[tuple[float, JobEvent]]  # holds, updates, requeues, idle GPUs (job id: the row)


def _validate(model: type[Parsed], data: Any) -> Parsed:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"]).lstrip(".")
        raise SpecError(where or "file", first["msg"]) from None


def parse_projects(text: str, fmt: str = "toml") -> tuple[list[Project], list[Department]]:
    """Projects and departments from file text in `fmt` ("toml" or "yaml")."""
    return _build(_validate(ProjectsFile, _load(text, fmt)))


def load_floor(path: str | Path) -> Floor:
    """Read a floor file (YAML): its nodes, projects, departments and settings, validated whole."""
    parsed = _validate(FloorFile, _load(_read(Path(path)), "yaml"))
    names = [n.name for n in parsed.nodes]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise SpecError(f"nodes[{i}].name", f"duplicate node {name!r}")
    settings = core_settings(parsed.settings) if parsed.settings is not None else None
    specs = {n.name: NodeSpec(**n.model_dump()) for n in parsed.nodes}
    events: list[tuple[float, NodeEvent]] = []
    for i, e in enumerate(parsed.node_events):
        if e.node not in specs:
            raise SpecError(f"node_events[{i}].node", str(UnknownName("node", e.node, specs)))
        if events and e.at < events[-1][0]:
            raise SpecError(f"node_events[{i}].at", f"{e.at:g} is before the event above it: events go in time order")
        events.append((e.at, node_event(e.kind, e.node, specs[e.node])))
    jobs: list[tuple[float, JobEvent]] = []
    for i, j in enumerate(parsed.job_events):
        cls = JOB_EVENT_KINDS[j.kind]
        try:  # the fields of the core's event, each of its type
            event = TypeAdapter(cls).validate_python({**j.data, "job_id": j.job})
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise SpecError(f"job_events[{i}].data.{where}", first["msg"]) from None
        jobs.append((j.at, event))
    return Floor(list(specs.values()), *_build(parsed), settings, events, jobs)


def write_floor(
    path: Path,
    nodes: Iterable[NodeSpec],
    projects: Iterable[Project],
    departments: Iterable[Department],
    settings: FactorySettings | None = None,
    node_events: Iterable[tuple[float, NodeEvent]] = (),
    job_events: Iterable[tuple[float, JobEvent]] = (),
) -> Path:
    """Write a floor file that `load_floor` reads back as the same nodes, projects, departments,
    settings and node events (a join's capacity is its node's in `nodes`)."""
    data: dict[str, Any] = {
        "nodes": [asdict(n) for n in nodes],
        "departments": [asdict(d) for d in departments],
        "projects": [asdict(p) for p in projects],
    }
    if settings is not None:
        data["settings"] = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()}
    events = [{"at": at, "node": node_event_name(e), "kind": node_event_kind(e)} for at, e in node_events]
    if events:
        data["node_events"] = events
    jobs = [
        {"at": at, "job": e.job_id, "kind": kind, "data": fields}
        for at, e in job_events
        for kind, fields in [job_event_record(e)]
    ]
    if jobs:
        data["job_events"] = jobs
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def load_projects(path: str | Path) -> tuple[list[Project], list[Department]]:
    """Read a projects file (.toml, .yaml or .yml)."""
    p = Path(path)
    fmt = "yaml" if p.suffix in (".yaml", ".yml") else "toml"
    if p.is_file() and p.suffix not in (".toml", ".yaml", ".yml"):
        raise SpecError("file", f"{p.name}: expected a .toml, .yaml or .yml file")
    return parse_projects(_read(p), fmt)


def _read(p: Path) -> str:
    if not p.is_file():
        raise SpecError("file", f"no such file {str(p)!r}")
    if p.stat().st_size > MAX_BYTES:
        raise SpecError("file", f"{p} is larger than {MAX_BYTES} bytes")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise SpecError("file", f"{p.name} is not UTF-8 text ({err.reason})") from None


Parsed = TypeVar("Parsed", bound=BaseModel)


def _load(text: str, fmt: str) -> Any:
    if len(text.encode("utf-8")) > MAX_BYTES:
        raise SpecError("file", f"larger than {MAX_BYTES} bytes")
    if fmt == "toml":
        try:
            return load_toml(text)
        except tomllib.TOMLDecodeError as err:
            raise SpecError("file", f"not valid TOML: {err}") from None
    if fmt == "yaml":
        try:
            data = load_yaml(text)
        except yaml.YAMLError as err:
            raise SpecError("file", f"not valid YAML: {err}") from None
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise SpecError("file", f"expected a mapping with projects and departments, got {type(data).__name__}")
        return data
    raise SpecError("format", f"unknown format {fmt!r} (known: toml, yaml)")


def _build(parsed: ProjectsFile) -> tuple[list[Project], list[Department]]:
    departments: dict[str, Department] = {}
    for i, d in enumerate(parsed.departments):
        if d.name in departments:
            raise SpecError(f"departments[{i}].name", f"duplicate department {d.name!r}")
        departments[d.name] = Department(d.name, quota=d.quota, weight=d.weight, limit=d.limit)
    projects: dict[str, Project] = {}
    guaranteed: dict[str, float] = {}
    for i, p in enumerate(parsed.projects):
        if p.name in projects:
            raise SpecError(f"projects[{i}].name", f"duplicate project {p.name!r}")
        if p.department is not None and p.department not in departments:
            known = ", ".join(sorted(departments)) or "none"
            raise SpecError(f"projects[{i}].department", f"unknown department {p.department!r} (known: {known})")
        for model, quota in p.quota_by_model.items():
            if quota < 0 or quota > p.quota:
                raise SpecError(f"projects[{i}].quota_by_model.{model}", f"must be between 0 and quota {p.quota:g}")
        projects[p.name] = Project(**p.model_dump())
        if p.department is not None:
            guaranteed[p.department] = guaranteed.get(p.department, 0.0) + p.quota
            dept = departments[p.department]
            if dept.quota and guaranteed[p.department] > dept.quota + 1e-9:
                raise SpecError(
                    f"projects[{i}].quota",
                    f"department {dept.name} guarantees {dept.quota:g} GPUs, "
                    f"its projects' quotas add up to {guaranteed[p.department]:g}",
                )
    return list(projects.values()), list(departments.values())
