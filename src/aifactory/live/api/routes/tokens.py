"""/api/tokens: the admin makes per-user tokens bound to projects."""

from __future__ import annotations

from fastapi import APIRouter

from aifactory.core.errors import SpecError, UnknownName
from aifactory.live.api.auth import new_token
from aifactory.live.api.deps import CallerDep, ServiceDep
from aifactory.live.wire import CallerOut, TokenCreate, TokenOut

router = APIRouter(tags=["tokens"])


@router.get("/me", response_model=CallerOut)
async def me(caller: CallerDep) -> CallerOut:
    """Who the token acts for and which projects it may use (what `aifactory login` stores)."""
    projects = None if caller.projects is None else sorted(caller.projects)
    return CallerOut(user=caller.user, admin=caller.admin, projects=projects)


@router.post("/tokens", status_code=201, response_model=TokenOut)
async def create_token(body: TokenCreate, service: ServiceDep, caller: CallerDep) -> TokenOut:
    """Make a token for `user`; it may act only in `projects` unless `admin`. Shown once, stored hashed."""
    caller.require_admin()
    known = {a.project for a in service.projects()}
    for name in body.projects:
        if name not in known:
            raise SpecError("projects", str(UnknownName("project", name, known)))
    token = new_token()
    service.store.add_token(token, body.user, body.admin, list(body.projects))
    return TokenOut(token=token, user=body.user, projects=list(body.projects), admin=body.admin)
