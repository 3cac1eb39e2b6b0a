"""/api/jobs: submit, list, show, cancel, logs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

from aifactory.core.states import JobState
from aifactory.live.api.auth import Caller
from aifactory.live.api.convert import job_out
from aifactory.live.api.deps import CallerDep, ServiceDep
from aifactory.live.api.logs import follow_log, read_log
from aifactory.live.service import FactoryService
from aifactory.live.store import EventRow, JobRow
from aifactory.live.wire import JobOut, JobSubmit

router = APIRouter(tags=["jobs"])


ESTIMATES_PER_LIST = 200  # queued jobs per listing that get an estimated start (each costs a pass over running jobs)


def _out(service: FactoryService, row: JobRow, history: list[EventRow] | None = None, estimate: bool = True) -> JobOut:
    if str(row.state) != JobState.QUEUED:
        return job_out(row, history)
    start = service.estimate_start(row.id) if estimate else None
    return job_out(row, history, service.pending_reason(row.id), estimated_start=start)


def _visible_job(service: FactoryService, caller: Caller, job_id: int) -> JobRow:
    row = service.job(job_id)
    caller.require_project(row.project)
    return row


@router.post("/jobs", status_code=201, response_model=JobOut)
async def submit(body: JobSubmit, service: ServiceDep, caller: CallerDep) -> JobOut:
    caller.require_project(body.project)
    row = await service.submit(body.to_spec(user=caller.user))
    return _out(service, row)


@router.get("/jobs", response_model=list[JobOut])
async def list_jobs(
    service: ServiceDep,
    caller: CallerDep,
    project: str | None = None,
    state: Annotated[list[JobState] | None, Query(description="repeat for several states")] = None,
    user: str | None = None,
    limit: Annotated[int | None, Query(ge=1, le=100_000)] = None,
) -> list[JobOut]:
    """Jobs newest first, filtered; several `state` values select jobs in any of them."""
    if project is not None:
        caller.require_project(project)
    if state and len(set(state)) > 1:
        picked = [r for s in set(state) for r in service.jobs(project=project, state=s, user=user, limit=limit)]
        rows = sorted(picked, key=lambda r: -r.id)[:limit]
    else:
        rows = service.jobs(project=project, state=state[0] if state else None, user=user, limit=limit)
    visible = [r for r in rows if caller.may_use(r.project)]
    queued = [r.id for r in visible if str(r.state) == JobState.QUEUED]
    # The oldest queued jobs are the ones whose start is near enough to estimate usefully.
    estimated = set(sorted(queued)[:ESTIMATES_PER_LIST])
    return [_out(service, r, estimate=r.id in estimated) for r in visible]


@router.get("/jobs/{job_id}", response_model=JobOut)
async def show(job_id: int, service: ServiceDep, caller: CallerDep) -> JobOut:
    row = _visible_job(service, caller, job_id)
    return _out(service, row, service.history(job_id))


@router.post("/jobs/{job_id}/cancel", response_model=JobOut)
async def cancel(job_id: int, service: ServiceDep, caller: CallerDep) -> JobOut:
    _visible_job(service, caller, job_id)
    return _out(service, await service.cancel(job_id))


@router.get("/jobs/{job_id}/logs", response_class=PlainTextResponse)
async def logs(
    job_id: int,
    service: ServiceDep,
    caller: CallerDep,
    tail: Annotated[int | None, Query(ge=0, le=1_000_000)] = None,
    follow: bool = False,
) -> Response:
    """The job's stdout and stderr (its last `tail` lines); `follow=true` streams until it ends, log drained."""
    _visible_job(service, caller, job_id)
    path = service.log_path(job_id)
    chunks = follow_log(service, job_id, path, tail) if follow else read_log(path, tail)
    return StreamingResponse(chunks, media_type="text/plain; charset=utf-8")
