"""/api/jobs: submit, list, show, cancel, logs.

Database reads run in a worker thread, never on the event loop: a long listing must not stall
other requests. Lists are pages (newest first, a `Link: <...>; rel="next"` header to the next
one); the caller's projects filter the query itself, so a page is never emptied after the fact.
A job in a project the caller may not use answers 404 like a job that does not exist.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from pydantic import AfterValidator, TypeAdapter

from aifactory.core.errors import NotFound, SpecError
from aifactory.core.events import Hold, Requeue, Update
from aifactory.core.job import JobSpec
from aifactory.core.states import JobState
from aifactory.live.api.auth import Caller, Forbidden
from aifactory.live.api.convert import job_out
from aifactory.live.api.deps import CallerDep, ServiceDep
from aifactory.live.api.logs import follow_log, ranks_log, read_log
from aifactory.live.service import FactoryService
from aifactory.live.store import EventRow, JobRow
from aifactory.live.telemetry import JobUsage
from aifactory.live.wire import (
    MAX_ID,
    PAGE_DEFAULT,
    PAGE_MAX,
    DryRunOut,
    JobOut,
    JobPatch,
    JobSubmit,
    no_control,
    parse_duration_s,
)

router = APIRouter(tags=["jobs"])

ESTIMATES_PER_LIST = 200  # queued jobs per listing that get an estimated start (each costs a pass over running jobs)

JOB_PAGE = TypeAdapter(list[JobOut])
JobId = Annotated[int, Path(ge=1, le=MAX_ID, description="a job id")]
NameQuery = Annotated[str | None, Query(min_length=1, max_length=128), AfterValidator(lambda v: v and no_control(v))]


def _out(service: FactoryService, row: JobRow, history: list[EventRow] | None = None, estimate: bool = True) -> JobOut:
    if str(row.state) != JobState.QUEUED:
        return job_out(row, history)
    start = service.estimate_start(row.id) if estimate else None
    return job_out(row, history, service.pending_reason(row.id), estimated_start=start)


def scope(caller: Caller) -> frozenset[str] | None:
    """The projects whose jobs `caller` may see (None: all)."""
    return None if caller.admin else caller.projects


async def visible_job(service: FactoryService, caller: Caller, job_id: int) -> JobRow:
    """The job, or NotFound: the same answer whether it does not exist or is another tenant's."""
    try:
        row = await asyncio.to_thread(service.job, job_id)
    except NotFound:
        row = None
    if row is None or not caller.may_use(row.project):
        raise NotFound(f"no job {job_id}")
    return row


@router.post("/jobs", status_code=201, response_model=JobOut)
async def submit(body: JobSubmit, service: ServiceDep, caller: CallerDep) -> JobOut:
    caller.require_project(body.project)
    spec = body.to_spec(user=caller.user)
    await _may_wait_for(service, caller, spec)
    elements = body.elements()
    if elements is not None:  # a job array: the answer is its first element (its id is the array's)
        rows = await service.submit_array(spec, *elements)
        return _out(service, rows[0])
    row = await service.submit(spec)
    return _out(service, row)


@router.get("/arrays/{array_id}", response_model=list[JobOut])
async def array(array_id: JobId, service: ServiceDep, caller: CallerDep) -> list[JobOut]:
    """The elements of a job array, by index (404: no such array, or another tenant's)."""
    # One read, not one per element: elements read apart could show an element still running
    # beside the one that took its place, more running than the cap allows.
    rows = await asyncio.to_thread(service.array, array_id)
    if not rows or not caller.may_use(rows[0].project):  # another tenant's array: as if missing
        raise NotFound(f"no array {array_id}")
    return [_out(service, r) for r in rows]


async def _may_wait_for(service: FactoryService, caller: Caller, spec: JobSpec) -> None:
    """A job may wait only for jobs its submitter can see (another tenant's is as if missing)."""
    for dep, _ in spec.after:
        try:
            await visible_job(service, caller, dep)
        except NotFound:
            raise SpecError("after", f"no job {dep}") from None


@router.post("/jobs/dry-run", response_model=DryRunOut)
async def dry_run(body: JobSubmit, service: ServiceDep, caller: CallerDep) -> DryRunOut:
    """Where the job would run now, or why it would wait and its estimated start; stores nothing."""
    caller.require_project(body.project)
    spec = body.to_spec(user=caller.user)
    await _may_wait_for(service, caller, spec)
    placement, why, start = await service.dry_run(spec)
    return DryRunOut(placement=placement, pending_reason=why, estimated_start=start)


async def _act(service: FactoryService, caller: Caller, job_id: int, event: Hold | Update | Requeue) -> JobOut:
    row = await visible_job(service, caller, job_id)
    caller.require_project(row.project)
    return _out(service, await service.act(event))


@router.post("/jobs/{job_id}/hold", response_model=JobOut)
async def hold(job_id: JobId, service: ServiceDep, caller: CallerDep) -> JobOut:
    """A queued job is not started until released; it keeps its place."""
    return await _act(service, caller, job_id, Hold(job_id, True, caller.user))


@router.post("/jobs/{job_id}/release", response_model=JobOut)
async def release(job_id: JobId, service: ServiceDep, caller: CallerDep) -> JobOut:
    return await _act(service, caller, job_id, Hold(job_id, False, caller.user))


@router.post("/jobs/{job_id}/requeue", response_model=JobOut)
async def requeue(job_id: JobId, service: ServiceDep, caller: CallerDep) -> JobOut:
    """A running job is stopped (the preemption grace) and queued again."""
    return await _act(service, caller, job_id, Requeue(job_id, caller.user))


@router.patch("/jobs/{job_id}", response_model=JobOut)
async def update(job_id: JobId, body: JobPatch, service: ServiceDep, caller: CallerDep) -> JobOut:
    """Change a queued job's priority, time limit or GPUs (a running job: its time limit). Only an
    admin may raise a priority: a user may lower one."""
    row = await visible_job(service, caller, job_id)
    if body.priority is not None and body.priority > row.spec.priority and not caller.admin:
        raise Forbidden("only an admin may raise a job's priority")
    limit = None if body.time_limit is None else parse_duration_s(body.time_limit)
    event = Update(job_id, priority=body.priority, time_limit_s=limit, gpus=body.gpus, by=caller.user)
    return await _act(service, caller, job_id, event)


@router.get("/jobs", response_model=list[JobOut])
async def list_jobs(
    request: Request,
    service: ServiceDep,
    caller: CallerDep,
    project: NameQuery = None,
    state: Annotated[list[JobState] | None, Query(description="repeat for several states")] = None,
    user: NameQuery = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX, description="jobs per page")] = PAGE_DEFAULT,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="cursor: only jobs with a lower id")] = None,
) -> Response:
    """Jobs newest first, filtered, one page; several `state` values select jobs in any of them."""
    if project is not None:
        caller.require_project(project)
    states = list(set(state)) if state else None
    rows = await asyncio.to_thread(service.jobs, project, states, user, limit, projects=scope(caller), before=before)
    headers = {}
    if len(rows) == limit:
        after = request.url.include_query_params(before=rows[-1].id)
        headers["Link"] = f'<{after.path}?{after.query}>; rel="next"'
    # What only the core knows is read here, on the loop that changes it; the rest of the work
    # (a thousand records to JSON) runs in a thread, so other requests are not kept waiting.
    queued = sorted(r.id for r in rows if str(r.state) == JobState.QUEUED)
    # The oldest queued jobs are the ones whose start is near enough to estimate usefully.
    estimated = set(queued[:ESTIMATES_PER_LIST])
    notes = {i: (service.pending_reason(i), service.estimate_start(i) if i in estimated else None) for i in queued}
    live = {r.id: u for r in rows if (u := service.telemetry.jobs.get(r.id)) is not None}
    body = await asyncio.to_thread(page_json, rows, notes, live)
    return Response(body, media_type="application/json", headers=headers)


def page_json(
    rows: list[JobRow], notes: dict[int, tuple[str, float | None]], live: dict[int, JobUsage] | None = None
) -> bytes:
    live = live or {}
    now = time.time()
    out = []
    for r in rows:
        pending, start = notes.get(r.id, (None, None))
        out.append(with_usage(job_out(r, None, pending, now, start, full=False), live.get(r.id)))
    return JOB_PAGE.dump_json(out)


@router.get("/jobs/{job_id}", response_model=JobOut)
async def show(job_id: JobId, service: ServiceDep, caller: CallerDep) -> JobOut:
    row = await visible_job(service, caller, job_id)
    out = _out(service, row, await asyncio.to_thread(service.history, job_id))
    job = service.factory.jobs.get(job_id)  # active jobs only: the report matters while it runs
    out.checkpoint_at = job.checkpoint_at if job is not None else None
    with_usage(out, await asyncio.to_thread(service.usage_of, job_id))
    return out


def with_usage(out: JobOut, usage: JobUsage | None) -> JobOut:
    if usage is not None and usage.samples:
        out.gpu_util_mean = round(usage.util_mean, 1)
        out.gpu_util_peak = usage.util_peak
        out.gpu_memory_peak_mib = usage.memory_peak_mib
        out.energy_wh = round(usage.energy_wh, 3)
        out.idle_since = usage.idle_since
    return out


@router.post("/jobs/{job_id}/cancel", response_model=JobOut)
async def cancel(job_id: JobId, service: ServiceDep, caller: CallerDep) -> JobOut:
    await visible_job(service, caller, job_id)
    return _out(service, await service.cancel(job_id, caller.user))


@router.get("/jobs/{job_id}/logs", response_class=PlainTextResponse)
async def logs(
    job_id: JobId,
    service: ServiceDep,
    caller: CallerDep,
    tail: Annotated[int | None, Query(ge=0, le=1_000_000)] = None,
    follow: bool = False,
    rank: Annotated[int | None, Query(ge=0, le=4096, description="one rank of a multi-node gang")] = None,
) -> Response:
    """The job's stdout and stderr (its last `tail` lines); `follow=true` streams until it ends, log
    drained. A multi-node gang: one `rank`, or every rank's lines prefixed `[rank k] `."""
    row = await visible_job(service, caller, job_id)
    paths = service.log_paths(row)
    if rank is not None:
        if rank >= len(paths):
            raise SpecError("rank", f"job {job_id} has {len(paths)} rank(s): 0..{len(paths) - 1}")
        paths = [paths[rank]]
    if len(paths) > 1:
        chunks = ranks_log(service, job_id, paths, tail, follow)
    else:
        chunks = follow_log(service, job_id, paths[0], tail) if follow else read_log(paths[0], tail)
    return StreamingResponse(chunks, media_type="text/plain; charset=utf-8")
