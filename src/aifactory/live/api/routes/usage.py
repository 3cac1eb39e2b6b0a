"""/api/usage: GPU-hours allocated and busy, energy and cost over a period, by project, user or
department (`aifactory usage`, like Slurm's sreport). A tenant's report holds its own projects."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from aifactory.live.api.deps import CallerDep, ServiceDep
from aifactory.live.api.routes.jobs import scope
from aifactory.live.usage import report
from aifactory.live.wire import UsageOut, UsageReportOut

router = APIRouter(tags=["usage"])
MAX_TIME = 1e11  # unix seconds: year 5138; anything larger is a mistake
Time = Annotated[float | None, Query(ge=0, le=MAX_TIME, allow_inf_nan=False)]


@router.get("/usage", response_model=UsageReportOut)
async def usage(
    service: ServiceDep,
    caller: CallerDep,
    since: Time = None,
    until: Time = None,
    by: Literal["project", "user", "department"] = "project",
) -> UsageReportOut:
    """The period [since, until) (unix seconds; default: the last 30 days up to now)."""
    end = until if until is not None else time.time()
    start = since if since is not None else end - 30 * 86400
    rows = await asyncio.to_thread(report, service.store, start, end, by, dict(service.settings.prices), scope(caller))
    out = [
        UsageOut(
            key=r.key,
            jobs=r.jobs,
            gpu_hours=round(r.gpu_hours, 6),
            busy_gpu_hours=round(r.busy_gpu_hours, 6),
            busy_ratio=None if r.busy_ratio is None else round(r.busy_ratio, 4),
            energy_kwh=round(r.energy_kwh, 6),
            cost=round(r.cost, 4),
        )
        for r in rows
    ]
    return UsageReportOut(since=start, until=end, by=by, rows=out)
