"""/api/tokens: the admin makes, lists, revokes and rotates tokens; /api/me says who a token is.

A revoked or expired token is refused on its next request: the server's token cache keeps an
answer for `CALLER_TTL_S` seconds at most, and a revoke here empties it at once.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request

from aifactory.core.errors import SpecError, UnknownName
from aifactory.live.api.auth import ALL_PROJECTS, new_token, write_secret
from aifactory.live.api.deps import CallerDep, ServiceDep, forget_callers
from aifactory.live.store import TokenInfo
from aifactory.live.wire import CallerOut, TokenCreate, TokenInfoOut, TokenOut, parse_duration_s

router = APIRouter(tags=["tokens"])

TokenId = Annotated[str, Path(min_length=8, max_length=64, pattern=r"^[0-9a-f]+$", description="a token's id")]


def info_out(info: TokenInfo, now: float) -> TokenInfoOut:
    state: Literal["active", "expired", "revoked"] = "active"
    if info.revoked_at is not None:
        state = "revoked"
    elif not info.valid(now):
        state = "expired"
    projects = info.projects if info.projects == ALL_PROJECTS else list(info.projects)
    return TokenInfoOut(
        id=info.id,
        user=info.user,
        projects=projects,
        admin=info.is_admin,
        created_at=info.created_at,
        expires_at=info.expires_at,
        revoked_at=info.revoked_at,
        state=state,
    )


@router.get("/me", response_model=CallerOut)
async def me(caller: CallerDep) -> CallerOut:
    """Who the token acts for and which projects it may use (what `aifactory login` stores)."""
    projects = None if caller.projects is None else sorted(caller.projects)
    return CallerOut(user=caller.user, admin=caller.admin, projects=projects)


@router.post("/tokens", status_code=201, response_model=TokenOut)
async def create_token(body: TokenCreate, service: ServiceDep, caller: CallerDep) -> TokenOut:
    """Make a token for `user`; it may act only in `projects` unless `admin`; it lapses after
    `expires` if given. Shown once, stored hashed."""
    caller.require_admin()
    known = {a.project for a in service.projects()}
    for name in body.projects:
        if name not in known:
            raise SpecError("projects", str(UnknownName("project", name, known)))
    now = time.time()
    expires_at = None if body.expires is None else now + parse_duration_s(body.expires)
    token = new_token()
    info = service.store.add_token(token, body.user, body.admin, list(body.projects), now, expires_at)
    return TokenOut(
        token=token, id=info.id, user=body.user, projects=list(body.projects), admin=body.admin, expires_at=expires_at
    )


@router.get("/tokens", response_model=list[TokenInfoOut])
async def list_tokens(service: ServiceDep, caller: CallerDep) -> list[TokenInfoOut]:
    """Every token: its id, user, projects, and whether it is active, expired or revoked."""
    caller.require_admin()
    now = time.time()
    return [info_out(t, now) for t in service.store.tokens()]


@router.delete("/tokens/{token_id}", response_model=list[TokenInfoOut])
async def revoke_token(
    token_id: TokenId, request: Request, service: ServiceDep, caller: CallerDep
) -> list[TokenInfoOut]:
    """Revoke the token(s) whose id starts with `token_id`: refused from the next request on."""
    caller.require_admin()
    revoked = service.store.revoke_tokens(token_id)
    forget_callers(request.app)
    now = time.time()
    return [info_out(t, now) for t in revoked]


@router.post("/tokens/rotate-admin", status_code=201, response_model=TokenOut)
async def rotate_admin(request: Request, service: ServiceDep, caller: CallerDep) -> TokenOut:
    """A new admin token in the home's `token` file (0600); the one it replaces is revoked."""
    caller.require_admin()
    path = service.settings.token_path
    old = path.read_text().strip() if path.is_file() else None
    token = new_token()
    info = service.store.add_token(token, caller.user, True, ALL_PROJECTS)
    write_secret(path, token)
    if old:
        old_info = service.store.token_info(old, now=0.0)
        if old_info is not None:
            service.store.revoke_tokens(old_info.id)
    forget_callers(request.app)
    return TokenOut(token=token, id=info.id, user=caller.user, projects="*", admin=True)
