"""/api/projects and /api/departments: quotas and what each holds and waits for; the admin changes them."""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter

from aifactory.core.errors import SpecError
from aifactory.core.project import Account, Department, Project
from aifactory.live.api.deps import CallerDep, ServiceDep
from aifactory.live.service import DepartmentView
from aifactory.live.wire import (
    DeletedOut,
    DepartmentOut,
    DepartmentPatch,
    DepartmentSet,
    ProjectOut,
    ProjectPatch,
    ProjectSet,
    QuotaOut,
)

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


def _patched(
    body: ProjectPatch | DepartmentPatch, old: Project | Department | None, fresh: Project | Department
) -> dict[str, Any]:
    """The fields of `old` (a new one: `fresh`'s defaults) with those the body gives."""
    given = body.model_dump(exclude_unset=True)
    for key in ("quota", "weight"):
        if key in given and given[key] is None:
            raise SpecError(key, "cannot be cleared (give a number)")
    return asdict(old if old is not None else fresh) | given


@router.get("/projects", response_model=list[ProjectOut])
async def list_projects(service: ServiceDep, caller: CallerDep) -> list[ProjectOut]:
    return [project_out(a) for a in service.projects() if caller.may_use(a.project)]


@router.put("/projects/{name}", response_model=ProjectOut)
async def put_project(name: str, body: ProjectSet, service: ServiceDep, caller: CallerDep) -> ProjectOut:
    """Admin: add the project `name`, or change it (every field as given; the queue is looked at again)."""
    caller.require_admin()
    _check_name(name, "project")
    return project_out(await service.set_project(Project(name=name, **body.model_dump())))


@router.patch("/projects/{name}", response_model=ProjectOut)
async def patch_project(name: str, body: ProjectPatch, service: ServiceDep, caller: CallerDep) -> ProjectOut:
    """Admin: change only the fields given (a new project: the defaults for the rest)."""
    caller.require_admin()
    _check_name(name, "project")
    fields = _patched(body, service.factory.projects.get(name), Project(name=name))
    if fields["quota_by_model"] is None:
        fields["quota_by_model"] = {}
    return project_out(await service.set_project(Project(**fields)))


@router.delete("/projects/{name}", response_model=DeletedOut)
async def delete_project(name: str, service: ServiceDep, caller: CallerDep, force: bool = False) -> DeletedOut:
    """Admin: remove a project; refused while it has queued or running jobs unless `force` cancels them."""
    caller.require_admin()
    return DeletedOut(name=name, cancelled=await service.delete_project(name, force))


@router.get("/quota", response_model=QuotaOut)
async def quota(service: ServiceDep, caller: CallerDep) -> QuotaOut:
    total, gpus = service.quota_sum()
    return QuotaOut(quota_gpus=total, gpus=gpus, oversubscribed=total > gpus + 1e-9)


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


@router.patch("/departments/{name}", response_model=DepartmentOut)
async def patch_department(name: str, body: DepartmentPatch, service: ServiceDep, caller: CallerDep) -> DepartmentOut:
    """Admin: change only the fields given (a new department: the defaults for the rest)."""
    caller.require_admin()
    _check_name(name, "department")
    fields = _patched(body, service.factory.departments.get(name), Department(name=name))
    return department_out(await service.set_department(Department(**fields)))


@router.delete("/departments/{name}", response_model=DeletedOut)
async def delete_department(name: str, service: ServiceDep, caller: CallerDep, force: bool = False) -> DeletedOut:
    """Admin: remove a department (its projects then stand alone); `force` cancels their active jobs."""
    caller.require_admin()
    return DeletedOut(name=name, cancelled=await service.delete_department(name, force))
