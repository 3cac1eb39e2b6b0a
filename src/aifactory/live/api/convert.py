"""From the service's records to wire types (times are the server's clock, unix seconds)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from aifactory.core.job import JobSpec
from aifactory.live.store import EventRow, JobRow
from aifactory.live.wire import EventOut, JobOut

SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(JobSpec))


def spec_dict(spec: JobSpec) -> dict[str, Any]:
    # Shallow, not dataclasses.asdict: its deep copy was a third of a 1,000-job listing's time.
    out = {name: getattr(spec, name) for name in SPEC_FIELDS}
    out["command"] = list(spec.command)
    out["env"] = dict(spec.env)
    return out


def job_out(
    row: JobRow,
    history: list[EventRow] | None = None,
    pending: str | None = None,
    now: float | None = None,
    estimated_start: float | None = None,
    full: bool = True,
) -> JobOut:
    """The wire form of a job; `full`: with its whole spec (one job), not in lists."""
    now = time.time() if now is None else now
    spec = row.spec
    started, finished = row.started_at, row.finished_at
    # A job that ended without ever starting waited until it ended.
    waited_until = started if started is not None else (finished if finished is not None else now)
    return JobOut.model_construct(  # the store's own records: nothing to validate, and 10x cheaper
        id=row.id,
        name=spec.name,
        project=row.project,
        user=row.user,
        state=str(row.state),
        gpus=spec.gpus,
        gpu_memory_mib=spec.gpu_memory_mib,
        command=list(spec.command),
        priority=spec.priority,
        submitted_at=row.submitted_at,
        started_at=started,
        finished_at=finished,
        wait_s=max(0.0, waited_until - row.submitted_at),
        runtime_s=None if started is None else max(0.0, (finished if finished is not None else now) - started),
        exit_code=row.exit_code,
        reason=row.reason or "",
        placement=row.placement.describe() if row.placement is not None else None,
        attempts=row.attempts,
        pending_reason=pending if pending is not None else (row.pending_reason or ""),
        estimated_start=estimated_start,
        array_id=spec.array_id,
        array_index=spec.array_index,
        held=row.held,
        spec=spec_dict(spec) if full else None,
        history=None if history is None else [event_out(e) for e in history],
    )


def event_out(event: EventRow) -> EventOut:
    return EventOut(
        seq=event.seq,
        job_id=event.job_id,
        old=None if event.old is None else str(event.old),
        new=str(event.new),
        at=event.at,
        reason=event.reason or "",
    )
