"""/api/projects: quotas and what each project holds and waits for."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from aifactory.live.api.deps import CallerDep, ServiceDep
from aifactory.live.wire import ProjectOut

router = APIRouter(tags=["projects"])


def project_out(view: Any) -> ProjectOut:
    return ProjectOut(
        name=view.name,
        quota=view.quota,
        weight=view.weight,
        limit=view.limit,
        pool=view.pool,
        department=view.department,
        in_use=view.in_use,
        running=view.running,
        queued=view.queued,
    )


@router.get("/projects", response_model=list[ProjectOut])
async def list_projects(service: ServiceDep, caller: CallerDep) -> list[ProjectOut]:
    return [project_out(v) for v in service.projects() if caller.may_use(v.name)]
