"""FastAPI dependencies: the service behind the app, and the authenticated caller."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import Depends, Request

from aifactory.live.api.auth import Caller, Unauthorized, bearer, caller_from_info
from aifactory.live.service import FactoryService


def get_service(request: Request) -> FactoryService:
    return request.app.state.service


def get_caller(request: Request) -> Caller:
    token = bearer(request.headers.get("authorization"))
    # Tokens are looked up once, then served from memory: submits stay off the DB's token table.
    key = hashlib.sha256(token.encode()).hexdigest()
    cache: dict[str, Caller] = request.app.state.callers
    caller = cache.get(key)
    if caller is None:
        info = request.app.state.service.store.token_info(token)
        if info is None:
            raise Unauthorized("unknown token")
        caller = cache[key] = caller_from_info(info)
    return caller


ServiceDep = Annotated[FactoryService, Depends(get_service)]
CallerDep = Annotated[Caller, Depends(get_caller)]
