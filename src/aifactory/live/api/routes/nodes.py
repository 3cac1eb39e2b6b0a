"""/api/nodes: the nodes, their GPUs, and who holds each.

A tenant sees its own projects' jobs on a GPU; another tenant's share shows only as in use
(no job id, user or project). Holders come from the core's memory, not one query per GPU."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Path

from aifactory.live.api.auth import Caller
from aifactory.live.api.deps import CallerDep, ServiceDep
from aifactory.live.service import FactoryService, NodeView
from aifactory.live.wire import GpuOut, HolderOut, NodeOut

router = APIRouter(tags=["nodes"])
NodeName = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


def _holder(service: FactoryService, caller: Caller, job_id: int, milli: int) -> HolderOut:
    job = service.factory.jobs.get(job_id)
    if job is None or not caller.may_use(job.spec.project):
        return HolderOut(job_id=None, milli=milli, user=None, project=None)
    return HolderOut(job_id=job_id, milli=milli, user=job.spec.user, project=job.spec.project)


def node_out(service: FactoryService, caller: Caller, view: NodeView) -> NodeOut:
    spec = view.spec
    gpus = [
        GpuOut(
            index=i,
            model=spec.gpu_model,
            memory_mib=spec.gpu_memory_mib,
            holders=[_holder(service, caller, job_id, milli) for job_id, milli in sorted(held.items())],
        )
        for i, held in enumerate(view.holders)
    ]
    return NodeOut(
        **asdict(spec),
        gpus=gpus,
        up=view.up,
        state=view.state,
        cpu_free_milli=view.cpu_free_milli,
        memory_free_mib=view.memory_free_mib,
        isolation=service.isolation.short,
    )


@router.post("/nodes/{name}/drain", response_model=NodeOut)
async def drain(name: NodeName, service: ServiceDep, caller: CallerDep) -> NodeOut:
    """Admin: no new job on this node; the jobs running there run on."""
    caller.require_admin()
    return node_out(service, caller, await service.drain(name, True, caller.user))


@router.post("/nodes/{name}/resume", response_model=NodeOut)
async def resume(name: NodeName, service: ServiceDep, caller: CallerDep) -> NodeOut:
    """Admin: the node takes work again."""
    caller.require_admin()
    return node_out(service, caller, await service.drain(name, False, caller.user))


@router.get("/nodes", response_model=list[NodeOut])
async def list_nodes(service: ServiceDep, caller: CallerDep) -> list[NodeOut]:
    return [node_out(service, caller, v) for v in service.nodes()]
