"""FastAPI dependencies: the service behind the app, and the authenticated caller."""

from __future__ import annotations

import hashlib
import time
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from aifactory.live.api.auth import Caller, Unauthorized, bearer, caller_from_info
from aifactory.live.service import FactoryService


def get_service(request: Request) -> FactoryService:
    return request.app.state.service


CALLER_TTL_S = 5.0  # how long a token's answer is trusted without the database
CALLER_CACHE_MAX = 10_000


def forget_callers(app: FastAPI) -> None:
    """Empty the token cache (a token was revoked: the next request asks the database)."""
    app.state.callers.clear()


def get_caller(request: Request) -> Caller:
    return caller_of(request, bearer(request.headers.get("authorization")))


def caller_of(request: Request, token: str) -> Caller:
    """Who `token` is (Unauthorized if nobody): the API's bearer, or the dashboard's cookie."""
    # Looked up at most every few seconds per token: submits stay off the token table, and a
    # revoked or expired token is refused within CALLER_TTL_S (at once where revoked here).
    key = hashlib.sha256(token.encode()).hexdigest()
    cache: dict[str, tuple[Caller, float]] = request.app.state.callers
    now = time.monotonic()
    hit = cache.get(key)
    if hit is not None and now - hit[1] < CALLER_TTL_S:
        return hit[0]
    info = request.app.state.service.store.token_info(token)
    if info is None:
        cache.pop(key, None)
        raise Unauthorized("unknown, revoked or expired token")
    if info.expires_at is not None:  # never trusted past its expiry, cache or not
        now -= max(0.0, CALLER_TTL_S - (info.expires_at - time.time()))
    if len(cache) >= CALLER_CACHE_MAX:
        cache.clear()
    caller = caller_from_info(info)
    cache[key] = (caller, now)
    return caller


ServiceDep = Annotated[FactoryService, Depends(get_service)]
CallerDep = Annotated[Caller, Depends(get_caller)]
