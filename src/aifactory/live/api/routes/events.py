"""/api/events: the floor's event history (`aifactory events`): every job's state changes, and for
an admin what happened to nodes. A tenant sees its own projects' jobs' events."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query

from aifactory.core.events import node_event_kind, node_event_name
from aifactory.live.api.deps import CallerDep, ServiceDep
from aifactory.live.api.routes.jobs import scope, visible_job
from aifactory.live.wire import MAX_ID, EventOut, EventsOut, NodeEventOut

router = APIRouter(tags=["events"])


@router.get("/events", response_model=EventsOut)
async def events(
    service: ServiceDep,
    caller: CallerDep,
    job: Annotated[int | None, Query(ge=1, le=MAX_ID, description="one job's events")] = None,
    since: Annotated[float | None, Query(ge=0, le=1e11, allow_inf_nan=False, description="unix seconds")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
) -> EventsOut:
    store = service.store
    if job is not None:
        await visible_job(service, caller, job)  # another tenant's job: 404, as if it did not exist
        rows = await asyncio.to_thread(store.events, job, since)
        rows = rows[-limit:]
    else:
        rows = await asyncio.to_thread(store.recent_events, since, scope(caller), limit)
    out = EventsOut(jobs=[EventOut(**{k: getattr(r, k) for k in EventOut.model_fields}) for r in rows], nodes=[])
    if caller.admin and job is None:
        nodes = await asyncio.to_thread(store.node_events, since)
        out.nodes = [
            NodeEventOut(at=r.at, node=node_event_name(r.event), kind=node_event_kind(r.event), by=r.by)
            for r in nodes[-limit:]
        ]
    return out
