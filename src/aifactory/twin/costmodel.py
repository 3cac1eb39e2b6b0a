"""Durations from work: the planner's training cost model as the twin's `cost_model` hook.

A trace row with `work` (training FLOPs) and no `duration_s` runs for
`plan.train.wall_seconds(work, gpu, gpus, mfu)`: its `gpu_model` (or a default GPU)
from the plan's hardware catalogue, at that GPU generation's default MFU unless one
is given. A fractional job gets that fraction of one GPU's throughput.
"""

from __future__ import annotations

from aifactory.core.errors import SpecError
from aifactory.twin.traces.format import CostModel, TraceJob


def flops_cost_model(default_gpu: str = "H100", mfu: float | None = None) -> CostModel:
    """A CostModel: job -> seconds, for `work` in FLOPs (unknown GPU names fail here, listing the known)."""
    from aifactory.plan.catalog import Gpu, load_catalog
    from aifactory.plan.train import wall_seconds

    if mfu is not None and not 0 < mfu <= 1:
        raise SpecError("mfu", f"must be a fraction in (0, 1], got {mfu}")
    catalog = load_catalog()
    gpus: dict[str, Gpu] = {default_gpu: catalog.gpu(default_gpu)}

    def seconds(job: TraceJob) -> float:
        name = job.spec.gpu_model or default_gpu
        gpu = gpus.get(name)
        if gpu is None:
            gpu = gpus[name] = catalog.gpu(name)
        rate = mfu if mfu is not None else catalog.default_mfu(gpu)
        work = job.work or 0.0
        share = job.spec.gpus
        if share < 1:
            return wall_seconds(work, gpu, 1, rate) / share  # a fraction of one GPU's throughput
        return wall_seconds(work, gpu, int(share), rate)

    return seconds
