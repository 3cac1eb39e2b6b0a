"""/api/projects: quotas and what each project holds and waits for; the admin adds and changes them."""

from __future__ import annotations

import re

from fastapi import APIRouter

from aifactory.core.errors import SpecError
from aifactory.core.project import Project
from aifactory.live.api.deps import CallerDep, ServiceDep
from aifactory.live.service import FactoryService, ProjectView
from aifactory.live.wire import ProjectOut, ProjectSet

router = APIRouter(tags=["projects"])
PROJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def project_out(view: ProjectView) -> ProjectOut:
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


def set_project(service: FactoryService, project: Project) -> None:
    """Add or change a project: stored first, then given to the running factory.

    Both steps are synchronous, so no other request is served between them.
    """
    if not PROJECT_NAME.fullmatch(project.name):
        raise SpecError("name", f"not a project name: {project.name!r} (letters, digits, _ . -; up to 64)")
    pools = {n.pool for n in service.nodes()}
    if project.pool is not None and project.pool not in pools:
        raise SpecError("pool", f"no node pool {project.pool!r} (have: {', '.join(sorted(pools))})")
    service.store.save_projects([project])
    service.factory.set_project(project)


@router.get("/projects", response_model=list[ProjectOut])
async def list_projects(service: ServiceDep, caller: CallerDep) -> list[ProjectOut]:
    return [project_out(v) for v in service.projects() if caller.may_use(v.name)]


@router.put("/projects/{name}", response_model=ProjectOut)
async def put_project(name: str, body: ProjectSet, service: ServiceDep, caller: CallerDep) -> ProjectOut:
    """Admin: add the project `name`, or change its quota, weight, limit, pool or department."""
    caller.require_admin()
    set_project(service, Project(name=name, **body.model_dump()))
    (view,) = [v for v in service.projects() if v.name == name]
    return project_out(view)
