"""/api/projects and /api/departments: quotas and what each holds and waits for; the admin changes them."""

from __future__ import annotations

import re
from dataclasses import asdict

from fastapi import APIRouter

from aifactory.core.errors import SpecError
from aifactory.core.project import Account, Department, Project
from aifactory.live.api.deps import CallerDep, ServiceDep
from aifactory.live.service import DepartmentView
from aifactory.live.wire import DepartmentOut, DepartmentSet, ProjectOut, ProjectSet, parse_duration_s

router = APIRouter(tags=["projects"])
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def project_out(a: Account) -> ProjectOut:
    return ProjectOut(
        **asdict(a.settings),
        in_use=a.in_use,
        running=a.running,
        queued=a.pending_jobs,
        borrowed=a.borrowed,
        lent=a.lent,
        pending_gpus=a.pending_gpus,
    )


def department_out(view: DepartmentView) -> DepartmentOut:
    return DepartmentOut(
        **asdict(view.settings), projects=list(view.projects), in_use=view.in_use, borrowed=view.borrowed
    )


def _check_name(name: str, what: str) -> None:
    if not NAME.fullmatch(name):
        raise SpecError("name", f"not a {what} name: {name!r} (letters, digits, _ . -; up to 64)")


@router.get("/projects", response_model=list[ProjectOut])
async def list_projects(service: ServiceDep, caller: CallerDep) -> list[ProjectOut]:
    return [project_out(a) for a in service.projects() if caller.may_use(a.project)]


@router.put("/projects/{name}", response_model=ProjectOut)
async def put_project(name: str, body: ProjectSet, service: ServiceDep, caller: CallerDep) -> ProjectOut:
    """Admin: add the project `name`, or change it (every field as given; the queue is looked at again)."""
    caller.require_admin()
    _check_name(name, "project")
    fields = body.model_dump(exclude={"idle_timeout"})
    idle = None if body.idle_timeout is None else parse_duration_s(body.idle_timeout)
    return project_out(await service.set_project(Project(name=name, idle_timeout_s=idle, **fields)))


@router.get("/departments", response_model=list[DepartmentOut])
async def list_departments(service: ServiceDep, caller: CallerDep) -> list[DepartmentOut]:
    """Departments; a project-bound token sees those of its projects only."""
    views = service.departments()
    return [department_out(v) for v in views if any(caller.may_use(p) for p in v.projects) or caller.admin]


@router.put("/departments/{name}", response_model=DepartmentOut)
async def put_department(name: str, body: DepartmentSet, service: ServiceDep, caller: CallerDep) -> DepartmentOut:
    """Admin: add the department `name`, or change its quota, weight or limit."""
    caller.require_admin()
    _check_name(name, "department")
    return department_out(await service.set_department(Department(name=name, **body.model_dump())))
