"""Our trace format: one row per job, as CSV or Parquet (see docs/trace_format.md).

Columns (units in brackets): `submit_time` [s from the trace start], `project`, `user`,
`gpus` [GPUs; a fraction of one below 1], `gpu_model`, `duration_s` [s of run time],
`time_limit_s` [s], `priority`, `priority_class`, `multi_node`, `work` [units of the
cost model, used when `duration_s` is empty]. Only `submit_time`, `project`, `gpus`
and one of `duration_s`/`work` are required. Every validation error names the
column and the row (1-based, not counting the header).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aifactory.core.cluster import Node
from aifactory.core.errors import SpecError
from aifactory.core.project import Project

COLUMNS = (
    "submit_time",
    "project",
    "user",
    "gpus",
    "gpu_model",
    "duration_s",
    "time_limit_s",
    "priority",
    "priority_class",
    "multi_node",
    "work",
)
REQUIRED = ("submit_time", "project", "gpus")
PRIORITY_CLASSES = ("train", "interactive", "inference")  # as the core's projects know them


@dataclass(frozen=True, slots=True)
class TraceJob:
    submit_time: float  # s from the trace start
    project: str
    gpus: float
    duration_s: float | None  # s of run time; None: derive from `work` with a cost model
    user: str = "anonymous"
    gpu_model: str | None = None
    time_limit_s: float | None = None
    priority: int = 0
    priority_class: str = "train"
    multi_node: bool = False
    work: float | None = None  # units of the cost model (e.g. FLOPs)


CostModel = Callable[[TraceJob], float]  # job -> run time in seconds


@dataclass(slots=True)
class Scenario:
    """What the twin replays: jobs in submission order, the nodes and the projects."""

    name: str
    jobs: list[TraceJob]
    nodes: list[Node] = field(default_factory=list)
    projects: list[Project] = field(default_factory=list)


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


def job_from_record(rec: dict[str, Any], row: int) -> TraceJob:
    """Validate one record (column -> raw value) into a TraceJob; errors name column and row."""
    submit = _required(rec.get("submit_time"), "submit_time", row)
    project = _text(rec.get("project"), None)
    if project is None:
        raise SpecError("project", f"row {row}: missing value")
    gpus = _required(rec.get("gpus"), "gpus", row)
    if submit < 0:
        raise SpecError("submit_time", f"row {row}: negative time {submit}")
    if not gpus > 0 or (gpus > 1 and gpus != int(gpus)):
        raise SpecError("gpus", f"row {row}: must be a fraction below 1 or a whole number, got {gpus}")
    duration = _float(rec.get("duration_s"), "duration_s", row)
    work = _float(rec.get("work"), "work", row)
    if duration is None and work is None:
        raise SpecError("duration_s", f"row {row}: missing value (and no work for a cost model)")
    if duration is not None and duration < 0:
        raise SpecError("duration_s", f"row {row}: negative duration {duration}")
    limit = _float(rec.get("time_limit_s"), "time_limit_s", row)
    if limit is not None and not limit > 0:
        raise SpecError("time_limit_s", f"row {row}: must be positive, got {limit}")
    prio = _float(rec.get("priority"), "priority", row)
    if prio is not None and prio != int(prio):
        raise SpecError("priority", f"row {row}: not a whole number: {prio}")
    pclass = _text(rec.get("priority_class"), "train")
    if pclass not in PRIORITY_CLASSES:
        raise SpecError("priority_class", f"row {row}: {pclass!r} is not one of {', '.join(PRIORITY_CLASSES)}")
    return TraceJob(
        submit_time=submit,
        project=project,
        gpus=gpus,
        duration_s=duration,
        user=_text(rec.get("user"), "anonymous") or "anonymous",
        gpu_model=_text(rec.get("gpu_model"), None),
        time_limit_s=limit,
        priority=int(prio or 0),
        priority_class=pclass or "train",
        multi_node=_bool(rec.get("multi_node"), "multi_node", row),
        work=work,
    )


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


def read_trace(path: str | Path) -> list[TraceJob]:
    """Load a trace in our format (CSV, or Parquet by the `.parquet` suffix), sorted by submit time."""
    path = Path(path)
    if not path.is_file():
        raise SpecError("trace", f"no such file: {path}")
    jobs = [job_from_record(rec, i) for i, rec in enumerate(_records(path), start=1)]
    jobs.sort(key=lambda j: j.submit_time)  # stable: equal times keep file order
    return jobs


def _row(job: TraceJob) -> dict[str, Any]:
    return {
        "submit_time": job.submit_time,
        "project": job.project,
        "user": job.user,
        "gpus": job.gpus,
        "gpu_model": job.gpu_model,
        "duration_s": job.duration_s,
        "time_limit_s": job.time_limit_s,
        "priority": job.priority,
        "priority_class": job.priority_class,
        "multi_node": job.multi_node,
        "work": job.work,
    }


def write_trace(jobs: Iterable[TraceJob], path: str | Path) -> Path:
    """Write `jobs` in our format: Parquet if the name ends in `.parquet`, else CSV."""
    path = Path(path)
    rows = [_row(j) for j in jobs]
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema(
            [
                ("submit_time", pa.float64()),
                ("project", pa.string()),
                ("user", pa.string()),
                ("gpus", pa.float64()),
                ("gpu_model", pa.string()),
                ("duration_s", pa.float64()),
                ("time_limit_s", pa.float64()),
                ("priority", pa.int64()),
                ("priority_class", pa.string()),
                ("multi_node", pa.bool_()),
                ("work", pa.float64()),
            ]
        )
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
        return path
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else int(v) if k == "multi_node" else v) for k, v in row.items()})
    return path
