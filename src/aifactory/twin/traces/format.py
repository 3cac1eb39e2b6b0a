"""Our trace format: one row per job, as CSV or Parquet (see docs/trace_format.md).

A row is a job's arrival time, its whole `JobSpec` but for what runs it on a real machine
(`command`, `workdir`, `env`), and optionally its `work` for a cost model. `duration_s` is
the spec's known run time. Only `submit_time`, `project`, `gpus` and one of
`duration_s`/`work` are required. Every validation error names the column and the row
(1-based, not counting the header). A trace may come with a floor file beside it
(`NAME.floor.yaml`: nodes, projects, departments), which `aifactory export-trace` writes.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aifactory.core.cluster import NodeSpec
from aifactory.core.errors import SpecError
from aifactory.core.events import JobEvent, NodeEvent
from aifactory.core.job import JobSpec
from aifactory.core.project import PRIORITY_CLASSES, Department, Project
from aifactory.core.settings import FactorySettings

# JobSpec fields no trace carries: they say how to run the job on the machine that ran it,
# and the twin runs nothing.
NOT_IN_TRACE = ("command", "workdir", "env")
# Each carried JobSpec field, with the kind of its cell: float, int, text or bool.
SPEC_COLUMNS: dict[str, str] = {
    "project": "text",
    "user": "text",
    "gpus": "float",
    "gpu_memory_mib": "int",
    "gpu_model": "text",
    "multi_node": "bool",
    "priority": "int",
    "priority_class": "text",
    "time_limit_s": "float",
    "name": "text",
    "duration_s": "float",
    "cpu_milli": "int",
    "memory_mib": "int",
    # Job ids in a trace are its rows (0-based, in submission order): a dependency names the row
    # it waits for, `ROW:ok;ROW:any`; an array element names its first element's row.
    "after": "text",
    "array_id": "int",
    "array_index": "int",
    "array_cap": "int",
}
COLUMNS = ("submit_time", *SPEC_COLUMNS, "work")
KINDS = {"submit_time": "float", **SPEC_COLUMNS, "work": "float"}
REQUIRED = ("submit_time", "project", "gpus")


@dataclass(frozen=True, slots=True)
class TraceJob:
    """One arrival: when, and the job as submitted (`spec.duration_s`: its run time, None to
    derive it from `work` with a cost model)."""

    submit_time: float  # s from the trace start
    spec: JobSpec
    work: float | None = None  # units of the cost model (e.g. FLOPs)


def trace_job(
    submit_time: float, project: str, gpus: float, duration_s: float | None, work: float | None = None, **spec: Any
) -> TraceJob:
    """A trace job from the usual four values and any other `JobSpec` fields by name."""
    return TraceJob(submit_time, JobSpec((), project=project, gpus=gpus, duration_s=duration_s, **spec), work)


CostModel = Callable[[TraceJob], float]  # job -> run time in seconds


@dataclass(slots=True)
class Scenario:
    """What the twin replays: jobs in submission order, the nodes, the projects and departments."""

    name: str
    jobs: list[TraceJob]
    nodes: list[NodeSpec] = field(default_factory=list)
    projects: list[Project] = field(default_factory=list)
    departments: list[Department] = field(default_factory=list)
    settings: FactorySettings | None = None  # the core settings the jobs ran under (the floor's history)
    # What happened to nodes, (seconds on the jobs' clock, event) in time order: the floor's drains,
    # deaths and joins, replayed as they happened. A node whose first event is a join starts absent.
    node_events: list[tuple[float, NodeEvent]] = field(default_factory=list)
    # Holds, updates, requeues and idle GPUs of its jobs (job id = row), replayed when they happened.
    job_events: list[tuple[float, JobEvent]] = field(default_factory=list)


def _float(value: Any, column: str, row: int) -> float | None:
    """A number, or None for an empty cell."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise SpecError(column, f"row {row}: not a number: {value!r}") from None
    if math.isnan(out):
        return None
    if math.isinf(out):
        raise SpecError(column, f"row {row}: not finite: {value!r}")
    return out


def _required(value: Any, column: str, row: int) -> float:
    out = _float(value, column, row)
    if out is None:
        raise SpecError(column, f"row {row}: missing value")
    return out


def _text(value: Any, default: str | None) -> str | None:
    if value is None:
        return default
    text = str(value).strip()
    return text or default


def _bool(value: Any, column: str, row: int) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("", "0", "false", "no"):
        return False
    if text in ("1", "true", "yes"):
        return True
    raise SpecError(column, f"row {row}: not a boolean: {value!r}")


def _int(value: Any, column: str, row: int) -> int | None:
    out = _float(value, column, row)
    if out is not None and out != int(out):
        raise SpecError(column, f"row {row}: not a whole number: {out}")
    return None if out is None else int(out)


def _cells(rec: dict[str, Any], row: int) -> dict[str, Any]:
    """Every known column of a record read by its kind (None: empty)."""
    readers = {"float": _float, "int": _int, "bool": _bool}
    out: dict[str, Any] = {}
    for column, kind in KINDS.items():
        raw = rec.get(column)
        out[column] = _text(raw, None) if kind == "text" else readers[kind](raw, column, row)
    return out


def job_from_record(rec: dict[str, Any], row: int) -> TraceJob:
    """Validate one record (column -> raw value) into a TraceJob; errors name column and row."""
    cells = _cells(rec, row)
    for column in REQUIRED:
        if cells[column] is None:
            raise SpecError(column, f"row {row}: missing value")
    submit, gpus, duration = cells.pop("submit_time"), cells["gpus"], cells["duration_s"]
    if submit < 0:
        raise SpecError("submit_time", f"row {row}: negative time {submit}")
    if gpus < 0 or (gpus > 1 and gpus != int(gpus)) or (gpus == 0 and not (cells["cpu_milli"] or cells["memory_mib"])):
        raise SpecError(
            "gpus", f"row {row}: must be a fraction below 1, a whole number, or 0 with CPU or memory; got {gpus}"
        )
    work = cells.pop("work")
    if duration is None and work is None:
        raise SpecError("duration_s", f"row {row}: missing value (and no work for a cost model)")
    if duration is not None and duration < 0:
        raise SpecError("duration_s", f"row {row}: negative duration {duration}")
    if cells["time_limit_s"] is not None and not cells["time_limit_s"] > 0:
        raise SpecError("time_limit_s", f"row {row}: must be positive, got {cells['time_limit_s']}")
    for column in ("gpu_memory_mib", "cpu_milli", "memory_mib"):
        if cells[column] is not None and cells[column] < 0:
            raise SpecError(column, f"row {row}: must not be negative, got {cells[column]}")
    cells["after"] = _after(cells["after"], row)
    pclass = cells["priority_class"] or "train"
    if pclass not in PRIORITY_CLASSES:
        raise SpecError("priority_class", f"row {row}: {pclass!r} is not one of {', '.join(PRIORITY_CLASSES)}")
    given = {k: v for k, v in cells.items() if v is not None}  # empty cells keep the spec's defaults
    return TraceJob(submit, JobSpec((), **(given | {"priority_class": pclass})), work)


def _check_header(columns: Sequence[str], path: Path) -> None:
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        raise SpecError(unknown[0], f"{path}: unknown column (known: {', '.join(COLUMNS)})")
    for col in REQUIRED:
        if col not in columns:
            raise SpecError(col, f"{path}: required column is missing")
    if "duration_s" not in columns and "work" not in columns:
        raise SpecError("duration_s", f"{path}: needs a duration_s or a work column")


def _records(path: Path) -> Iterable[dict[str, Any]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:
            raise SpecError("trace", f"{path}: not a readable Parquet file ({exc})") from None
        _check_header(table.column_names, path)
        return table.to_pylist()
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        _check_header(reader.fieldnames or [], path)
        return list(reader)


def _after(text: str | None, row: int) -> tuple[tuple[int, str], ...] | None:
    """`3:ok;5:any` -> ((3, "ok"), (5, "any")); SpecError naming the column and row."""
    if not text:
        return None
    out = []
    for part in text.split(";"):
        ref, _, kind = part.strip().partition(":")
        if not ref.isdigit() or kind not in ("ok", "any", "failed"):
            raise SpecError("after", f"row {row}: not a dependency {part!r} (ROW:ok, ROW:any or ROW:failed)")
        out.append((int(ref), kind))
    return tuple(out)


def read_trace(path: str | Path) -> list[TraceJob]:
    """Load a trace in our format (CSV, or Parquet by the `.parquet` suffix), sorted by submit time."""
    path = Path(path)
    if not path.is_file():
        raise SpecError("trace", f"no such file: {path}")
    jobs = [job_from_record(rec, i) for i, rec in enumerate(_records(path), start=1)]
    jobs.sort(key=lambda j: j.submit_time)  # stable: equal times keep file order
    return jobs


def _row(job: TraceJob) -> dict[str, Any]:
    cells = {c: getattr(job.spec, c) for c in SPEC_COLUMNS}
    cells["after"] = ";".join(f"{d}:{k}" for d, k in job.spec.after) or None
    return {"submit_time": job.submit_time, **cells, "work": job.work}


def _arrow_schema() -> Any:
    import pyarrow as pa

    types = {"float": pa.float64(), "int": pa.int64(), "text": pa.string(), "bool": pa.bool_()}
    return pa.schema([(column, types[KINDS[column]]) for column in COLUMNS])


def write_trace(jobs: Iterable[TraceJob], path: str | Path) -> Path:
    """Write `jobs` in our format: Parquet if the name ends in `.parquet`, else CSV."""
    path = Path(path)
    rows = [_row(j) for j in jobs]
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows, schema=_arrow_schema()), path)
        return path
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else int(v) if isinstance(v, bool) else v) for k, v in row.items()})
    return path


def floor_path(trace: Path) -> Path:
    """Where a trace's floor file lies: `NAME.floor.yaml` beside `NAME.csv`."""
    return trace.with_name(f"{trace.stem}.floor.yaml")


def for_replay(spec: JobSpec) -> JobSpec:
    """The spec as a trace keeps it: without what runs it on a real machine."""
    return replace(spec, command=(), workdir=None, env={})
