"""Every type that crosses the wire between the API server and its clients.

Submissions are validated strictly here (pydantic, at the edge); the core then
checks what only it can know (project exists, the GPUs exist). Sizes and
durations are accepted the way people write them ("20GiB", "1h30m") and stored
in the core's units (MiB, seconds).
"""

from __future__ import annotations

import math
import re
import shlex
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

from aifactory.core.errors import SpecError
from aifactory.core.job import JobSpec

MAX_BODY_BYTES = 1 << 20  # 1 MiB: the largest request body the server reads

PAGE_MAX = 1000  # items per page of a list route, at most
PAGE_DEFAULT = 500  # items per page unless `limit` says otherwise
MAX_ID = (1 << 31) - 1  # ids are 32-bit signed integers in the store (INTEGER on PostgreSQL)
MAX_MEMORY_MIB = 1 << 40  # a zebibyte: more than any node, small enough for a 64-bit column
MAX_DURATION_S = 100 * 366 * 86400.0  # a century: "no limit" is said by giving none
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_SPACE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # tab, newline and CR pass


def no_control(value: str) -> str:
    """Names and paths: no control character at all (NUL breaks exec; ESC rewrites terminals)."""
    found = _CONTROL.search(value)
    if found:
        raise ValueError(f"contains the control character {found.group()!r} at position {found.start()}")
    return value


def no_control_but_space(value: str) -> str:
    """Arguments and environment values: tab and newline are fine (a script for `bash -c`), NUL and
    other control characters are not."""
    found = _CONTROL_BUT_SPACE.search(value)
    if found:
        raise ValueError(f"contains the control character {found.group()!r} at position {found.start()}")
    return value


Text = Annotated[str, AfterValidator(no_control)]
Name = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(no_control)]
Arg = Annotated[str, Field(max_length=131072), AfterValidator(no_control_but_space)]
GpuCount = Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)]

_MEMORY_UNITS_MIB = {"": 1, "m": 1, "mb": 1, "mi": 1, "mib": 1, "g": 1024, "gb": 1024, "gi": 1024, "gib": 1024}
_MEMORY_UNITS_MIB |= {"t": 1 << 20, "tb": 1 << 20, "ti": 1 << 20, "tib": 1 << 20}
_DURATION_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_memory_mib(value: str | int) -> int:
    """`20GiB` -> 20480; a bare number is MiB. Raises ValueError naming the value."""
    if isinstance(value, bool):
        raise ValueError(f"not a memory size: {value!r}")
    if isinstance(value, int):
        mib = value
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value)
        unit = m.group(2).lower() if m else ""
        if m is None or unit not in _MEMORY_UNITS_MIB:
            raise ValueError(f"not a memory size: {value!r} (write e.g. 20GiB or 512MiB)")
        mib = round(float(m.group(1)) * _MEMORY_UNITS_MIB[unit])
    if mib <= 0:
        raise ValueError(f"must be positive, got {value!r}")
    if mib > MAX_MEMORY_MIB:
        raise ValueError(f"too large: {value!r} (at most {MAX_MEMORY_MIB} MiB)")
    return mib


def parse_duration_s(value: str | float) -> float:
    """`1h30m` -> 5400.0; a bare number is seconds. Raises ValueError naming the value."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip().lower()
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION_PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(f"not a duration: {value!r} (write e.g. 90s, 30m, 1h30m)") from None
            seconds = sum(float(n) * _DURATION_UNITS_S[u] for n, u in parts)
    if not seconds > 0:
        raise ValueError(f"must be positive, got {value!r}")
    if not math.isfinite(seconds) or seconds > MAX_DURATION_S:
        raise ValueError(f"too long: {value!r} (at most a century; give no limit for none)")
    return seconds


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_ARRAY = 10_000  # elements of one job array
ARRAY = re.compile(r"(\d{1,5}(?:-\d{1,5})?(?:,\d{1,5}(?:-\d{1,5})?)*)(?:%([1-9]\d{0,4}))?")


def parse_array(value: str) -> tuple[list[int], int | None]:
    """`0-99%8` -> (indices 0..99, cap 8); `1,3,5-7` -> ([1, 3, 5, 6, 7], None). ValueError naming it."""
    m = ARRAY.fullmatch(value.strip())
    if m is None:
        raise ValueError(f"not an array: {value!r} (write e.g. 0-99%8 or 1,3,5-7)")
    indices: list[int] = []
    for part in m.group(1).split(","):
        lo, _, hi = part.partition("-")
        first, last = int(lo), int(hi or lo)
        if last < first:
            raise ValueError(f"not an array: {value!r} ({part}: the range runs backwards)")
        indices += range(first, last + 1)
        if len(indices) > MAX_ARRAY:
            raise ValueError(f"too many elements: {value!r} (at most {MAX_ARRAY})")
    if len(set(indices)) != len(indices):
        raise ValueError(f"not an array: {value!r} (an index repeats)")
    return indices, int(m.group(2)) if m.group(2) else None


def _array_text(value: str) -> str:
    parse_array(value)
    return value


DEPENDENCY = re.compile(r"([1-9][0-9]{0,9})(?::(ok|any|failed))?")


def parse_dependency(value: str) -> tuple[int, str]:
    """`42`, `42:ok`, `42:any`, `42:failed` -> (42, kind). ValueError naming the value."""
    m = DEPENDENCY.fullmatch(value.strip())
    if m is None or int(m.group(1)) > MAX_ID:
        raise ValueError(f"not a dependency: {value!r} (write ID, ID:ok, ID:any or ID:failed)")
    return int(m.group(1)), m.group(2) or "ok"


def _dependency(value: str) -> str:
    parse_dependency(value)
    return value


def _duration(value: str | float) -> str | float:
    parse_duration_s(value)  # ValueError naming the value
    return value


Duration = Annotated[str | float, AfterValidator(_duration)]  # as people write it: "1h30m", or seconds


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobSubmit(_Strict):
    """A job as a user writes it: the body of POST /api/jobs and the fields of a job YAML."""

    command: list[Arg] = Field(min_length=1, max_length=4096)
    project: Name = "default"
    gpus: float = Field(1.0, ge=0, le=4096, allow_inf_nan=False)  # 0: a job with no GPU (asks cpus or memory)
    gpu_memory: str | StrictInt | None = None  # "20GiB" or MiB: a fraction of one GPU by memory
    gpu_model: Name | None = None
    multi_node: StrictBool = False
    cpus: float = Field(0.0, ge=0, le=1_000_000, allow_inf_nan=False)  # CPU cores per node (0: not asked)
    memory: str | StrictInt | None = None  # host memory per node, "16GiB" or MiB
    priority: StrictInt = Field(0, ge=-1_000_000, le=1_000_000)
    # train (may borrow idle GPUs, preemptible), interactive or inference (within quota, never preempted)
    priority_class: Name = "train"
    time_limit: Duration | None = None  # "1h30m" or seconds
    name: Annotated[str, Field(min_length=1, max_length=256), AfterValidator(no_control)] | None = None
    workdir: Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(no_control)] | None = None
    env: dict[str, Arg] = Field(default_factory=dict, max_length=1024)
    # A job array: "0-99%8" (indices 0 to 99, at most 8 running at once), "1,3,5-7"; or one element
    # per set of parameters in `array_params` (each an environment of its own).
    array: Annotated[str, AfterValidator(_array_text)] | None = None
    array_params: list[dict[str, Arg]] | None = Field(None, min_length=1, max_length=MAX_ARRAY)
    # Jobs to wait for: "ID" or "ID:ok" (it succeeded), "ID:any" (it ended), "ID:failed" (it did not succeed).
    after: list[Annotated[str, AfterValidator(_dependency)]] = Field(default_factory=list, max_length=64)

    @field_validator("command", mode="before")
    @classmethod
    def _split_string_command(cls, value: Any) -> Any:
        # YAML files often write the command as one string.
        return shlex.split(value) if isinstance(value, str) else value

    @field_validator("command")
    @classmethod
    def _non_empty_program(cls, value: list[str]) -> list[str]:
        if not value[0].strip():
            raise ValueError("the program to run (first word) is empty")
        return value

    @field_validator("gpus", "cpus", mode="before")
    @classmethod
    def _gpus_is_a_number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be a number, got {value!r}")
        return value

    @field_validator("gpu_memory", "memory")
    @classmethod
    def _memory(cls, value: str | int | None) -> str | int | None:
        if value is not None:
            parse_memory_mib(value)
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not ENV_NAME.fullmatch(key):
                raise ValueError(f"not an environment variable name: {key!r}")
        return value

    def elements(self) -> tuple[list[int], int | None, list[dict[str, str]]] | None:
        """A job array's indices, cap and each element's own environment (None: one job)."""
        if self.array is None and self.array_params is None:
            return None
        indices, cap = (
            parse_array(self.array) if self.array is not None else (list(range(len(self.array_params or []))), None)
        )
        params = [dict(p) for p in self.array_params] if self.array_params is not None else [{} for _ in indices]
        if len(params) != len(indices):
            raise SpecError("array_params", f"{len(params)} parameter sets for {len(indices)} array elements")
        for k, p in enumerate(params):
            for key in p:
                if not ENV_NAME.fullmatch(key):
                    raise SpecError("array_params", f"[{k}]: not an environment variable name: {key!r}")
        return indices, cap, params

    def to_spec(self, user: str) -> JobSpec:
        return JobSpec(
            command=tuple(self.command),
            project=self.project,
            user=user,
            gpus=self.gpus,
            gpu_memory_mib=parse_memory_mib(self.gpu_memory) if self.gpu_memory is not None else None,
            gpu_model=self.gpu_model,
            multi_node=self.multi_node,
            cpu_milli=round(self.cpus * 1000),
            memory_mib=parse_memory_mib(self.memory) if self.memory is not None else 0,
            priority=self.priority,
            priority_class=self.priority_class,
            time_limit_s=parse_duration_s(self.time_limit) if self.time_limit is not None else None,
            name=self.name,
            workdir=self.workdir,
            env=dict(self.env),
            after=tuple(parse_dependency(d) for d in self.after),
        )


class EventOut(BaseModel):
    seq: int
    job_id: int
    old: str | None
    new: str
    at: float  # unix seconds
    reason: str


class JobOut(BaseModel):
    id: int
    name: str | None
    project: str
    user: str
    state: str
    gpus: float
    gpu_memory_mib: int | None
    command: list[str]
    priority: int
    submitted_at: float
    started_at: float | None
    finished_at: float | None
    wait_s: float  # queued time so far (until the first start, or now)
    runtime_s: float | None  # time since the start (until the end, or now)
    exit_code: int | None
    reason: str
    placement: str | None  # `node0:0,1`, `node0:2@0.50` for a fraction
    attempts: int
    pending_reason: str
    estimated_start: float | None = None  # unix seconds, queued jobs only: a lower bound from time limits
    checkpoint_at: float | None = None  # unix seconds: the running job's last checkpoint report (one job only)
    array_id: int | None = None  # an element of the job array with this id (its first element's job id)
    array_index: int | None = None
    held: bool = False
    # GPU telemetry (None: never read: no NVML, or virtual GPUs). In lists: running jobs only.
    gpu_util_mean: float | None = None  # percent, over its GPUs and readings
    gpu_util_peak: float | None = None
    gpu_memory_peak_mib: int | None = None
    energy_wh: float | None = None
    idle_since: float | None = None  # unix seconds its GPUs went below the idle threshold (running jobs)
    spec: dict[str, Any] | None = None  # the whole spec: only on GET /api/jobs/{id} (lists stay light)
    history: list[EventOut] | None = None  # only on GET /api/jobs/{id}


class HolderOut(BaseModel):
    """A share of a GPU; another tenant's shows only as in use (job_id, user and project None)."""

    job_id: int | None
    milli: int  # share of the GPU held, in 1/1000 of a GPU
    user: str | None
    project: str | None


class GpuOut(BaseModel):
    index: int
    model: str
    memory_mib: int
    holders: list[HolderOut]


class NodeOut(BaseModel):
    name: str
    pool: str
    gpu_count: int
    gpu_model: str
    gpu_memory_mib: int
    gpus: list[GpuOut]
    cpu_milli: int = 0  # host CPU capacity (0: not tracked)
    cpu_free_milli: int = 0
    memory_mib: int = 0  # host memory capacity (0: not tracked)
    memory_free_mib: int = 0
    rack: str | None = None
    up: bool = True  # takes work: alive and not drained
    state: str = "up"  # up, drained, down, or "down, drained"
    isolation: str = "none"  # full: own Unix account and cgroup per job; none: the server's account


class ProjectOut(BaseModel):
    name: str
    quota: float
    weight: float
    limit: float | None
    pool: str | None
    department: str | None
    quota_by_model: dict[str, float] = {}  # GPU model -> guaranteed GPUs
    idle_timeout_s: float | None = None  # interactive jobs stop after their GPUs idle this long
    in_use: float  # GPUs held now
    running: int
    queued: int
    borrowed: float = 0.0  # GPUs held over quota
    lent: float = 0.0  # idle guarantee other projects are using
    pending_gpus: float = 0.0  # GPUs the queued jobs ask for


class DepartmentOut(BaseModel):
    name: str
    quota: float
    weight: float
    limit: float | None
    projects: list[str]
    in_use: float  # GPUs its projects hold now
    borrowed: float  # held over its quota


class ProjectSet(_Strict):
    """The body of PUT /api/projects/{name}: add a project or change one (GPUs)."""

    quota: float = Field(0.0, ge=0, le=1_000_000, allow_inf_nan=False)
    weight: float = Field(1.0, gt=0, le=1_000_000, allow_inf_nan=False)
    limit: float | None = Field(None, gt=0, le=1_000_000, allow_inf_nan=False)
    pool: Name | None = None
    department: Name | None = None
    quota_by_model: dict[Name, GpuCount] = Field(default_factory=dict, max_length=64)  # GPU model -> guaranteed GPUs
    idle_timeout_s: float | None = Field(
        None, gt=0, le=MAX_DURATION_S, allow_inf_nan=False
    )  # interactive jobs idle this long stop


class DepartmentSet(_Strict):
    """The body of PUT /api/departments/{name}: add a department or change one (GPUs)."""

    quota: float = Field(0.0, ge=0, le=1_000_000, allow_inf_nan=False)
    weight: float = Field(1.0, gt=0, le=1_000_000, allow_inf_nan=False)
    limit: float | None = Field(None, gt=0, le=1_000_000, allow_inf_nan=False)


class ProjectPatch(_Strict):
    """The body of PATCH /api/projects/{name}: only the fields given change (null clears limit,
    pool, department or idle timeout); a new project takes the defaults for the rest."""

    quota: float | None = Field(None, ge=0, le=1_000_000, allow_inf_nan=False)
    weight: float | None = Field(None, gt=0, le=1_000_000, allow_inf_nan=False)
    limit: float | None = Field(None, gt=0, le=1_000_000, allow_inf_nan=False)
    pool: Name | None = None
    department: Name | None = None
    quota_by_model: dict[Name, GpuCount] | None = Field(None, max_length=64)
    idle_timeout_s: float | None = Field(None, gt=0, le=MAX_DURATION_S, allow_inf_nan=False)


class DepartmentPatch(_Strict):
    """The body of PATCH /api/departments/{name}: only the fields given change (null clears the limit)."""

    quota: float | None = Field(None, ge=0, le=1_000_000, allow_inf_nan=False)
    weight: float | None = Field(None, gt=0, le=1_000_000, allow_inf_nan=False)
    limit: float | None = Field(None, gt=0, le=1_000_000, allow_inf_nan=False)


class QuotaOut(BaseModel):
    """Guarantees against the floor: over-subscribed when the projects' quotas add up to more GPUs
    than there are (allowed: a choice, but said)."""

    quota_gpus: float
    gpus: int
    oversubscribed: bool


class DeletedOut(BaseModel):
    name: str
    cancelled: list[int]  # the jobs --force cancelled


class JobPatch(_Strict):
    """The body of PATCH /api/jobs/{id}: what to change (a queued job: any; a running one: its time limit)."""

    priority: int | None = Field(None, ge=-1_000_000, le=1_000_000)
    time_limit: Duration | None = None
    gpus: float | None = Field(None, ge=0, le=4096, allow_inf_nan=False)


class DryRunOut(BaseModel):
    """What `submit --dry-run` answers: where it would run now, or why it would wait and from when."""

    placement: str | None  # None: it would wait
    pending_reason: str
    estimated_start: float | None  # unix seconds (now, where it would run at once)


class TokenCreate(_Strict):
    user: Name
    projects: list[Name] = Field(min_length=1, max_length=1024)
    admin: StrictBool = False
    expires: Duration | None = None  # "30d", "12h" or seconds from now; None: never


class TokenOut(BaseModel):
    """A token as made: the only time the token itself is shown."""

    token: str
    id: str
    user: str
    projects: list[str] | Literal["*"]
    admin: bool
    expires_at: float | None = None


class TokenInfoOut(BaseModel):
    """A token as listed: its id (the first digits of its hash), never the token."""

    id: str
    user: str
    projects: list[str] | Literal["*"]
    admin: bool
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    state: Literal["active", "expired", "revoked"]


class CallerOut(BaseModel):
    """Who a token acts for: GET /api/me."""

    user: str
    admin: bool
    projects: list[str] | None  # None: every project


class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"
    version: str


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str = "value_error"


class ErrorOut(BaseModel):
    """Every error body: `detail` is a list naming fields (422) or one sentence (401, 403, 404, 409, 413)."""

    detail: list[ErrorItem] | str


class UsageOut(BaseModel):
    """One group of a usage report (`aifactory usage`)."""

    key: str  # the project, user or department
    jobs: int
    gpu_hours: float  # allocated
    busy_gpu_hours: float  # measured: allocated x utilisation (0 where nothing was measured)
    busy_ratio: float | None  # busy / allocated
    energy_kwh: float
    cost: float  # allocated GPU-hours x the price of their GPU model (config.toml [prices])


class UsageReportOut(BaseModel):
    since: float
    until: float
    by: str
    rows: list[UsageOut]


class NodeEventOut(BaseModel):
    at: float
    node: str
    kind: str  # drain, resume, down, up, join
    by: str  # the operator ("" : the cluster itself)


class EventsOut(BaseModel):
    jobs: list[EventOut]
    nodes: list[NodeEventOut]  # an admin's, and only without a job filter
