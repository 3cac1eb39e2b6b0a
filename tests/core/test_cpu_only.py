"""Jobs that need no GPU (`gpus=0` with CPU or memory): scheduled like the rest, by every policy."""

from __future__ import annotations

from dataclasses import replace

import pytest

from aifactory.core import Cluster, Factory, Finished, JobSpec, JobState, Node, Preempt, Project, SpecError, Submit
from aifactory.core.factory import FactorySettings

from .helpers import launched

POLICIES = ["fifo", "priority", "fairshare", "backfill", "las", "srtf"]


def floor(policy: str, cpu_nodes: int = 1, quota: float = 4.0) -> Factory:
    """One 4-GPU node with 8 CPUs and 32 GiB, and `cpu_nodes` nodes with no GPU, 4 CPUs and 16 GiB each."""
    nodes = [Node("gpu0", 4, cpu_milli=8000, memory_mib=32768)]
    nodes += [Node(f"cpu{i}", 0, cpu_milli=4000, memory_mib=16384) for i in range(cpu_nodes)]
    projects = [Project("a", quota=quota), Project("b", quota=0.0)]
    return Factory(Cluster(nodes), projects, FactorySettings(policy=policy, min_runtime_s=0.0))


def prep(cpus: float, project: str = "a", **kw: object) -> JobSpec:
    return JobSpec(("prep",), project=project, gpus=0, cpu_milli=round(cpus * 1000), duration_s=10, **kw)  # type: ignore[arg-type]


def train(gpus: int, project: str = "a") -> JobSpec:
    return JobSpec(("train",), project=project, gpus=gpus, duration_s=100)


@pytest.mark.parametrize("policy", POLICIES)
def test_a_job_with_no_gpu_runs_while_every_gpu_is_busy_and_prefers_a_node_without_gpus(policy: str) -> None:
    f = floor(policy)
    f.handle(Submit(1, train(4)), 0)
    f.handle(Submit(3, prep(2)), 1)
    assert f.job(3).state is JobState.RUNNING
    placement = f.job(3).placement
    assert placement is not None and placement.describe() == "cpu0:cpu" and placement.gpus == 0
    assert f.usage["a"] == 4  # it counts nothing against the GPU quota
    f.handle(Submit(4, prep(3)), 2)  # no room left on cpu0: the GPU node's CPUs
    assert f.job(4).placement is not None and f.job(4).placement.describe() == "gpu0:cpu"


@pytest.mark.parametrize("policy", ["fairshare", "las", "srtf"])
def test_a_job_with_no_gpu_passes_gpu_jobs_waiting_for_gpus(policy: str) -> None:
    """Policies that order by share or size start what fits; strict ones (fifo, priority, backfill
    without time limits) keep the head of the queue first, as they do for GPU jobs."""
    f = floor(policy)
    f.handle(Submit(1, train(4)), 0)
    f.handle(Submit(2, train(1)), 0)  # waits for a GPU
    f.handle(Submit(3, prep(2)), 1)
    assert f.job(3).state is JobState.RUNNING and f.job(2).state is JobState.QUEUED


@pytest.mark.parametrize("policy", POLICIES)
def test_a_job_with_no_gpu_waits_for_cpu_and_says_so(policy: str) -> None:
    f = floor(policy, cpu_nodes=0)
    f.handle(Submit(1, prep(6)), 0)
    f.handle(Submit(2, prep(6)), 0)
    assert f.job(1).state is JobState.RUNNING and f.job(2).state is JobState.QUEUED
    assert f.pending_reason(2).startswith("needs 6 CPUs (most free on a node: 2) per node")
    assert "GPU" not in f.pending_reason(2)
    f.handle(Finished(1, 0), 10)
    assert f.job(2).state is JobState.RUNNING


def test_over_quota_with_every_gpu_held_a_job_with_no_gpu_still_starts() -> None:
    f = floor("fairshare")
    for i in range(1, 5):  # b (quota 0) borrows all four GPUs
        f.handle(Submit(i, train(1, "b")), 0)
    acts = f.handle(Submit(9, prep(1, "b")), 1)
    assert launched(acts) == [9]


def test_a_job_with_no_gpu_never_preempts_gpu_jobs() -> None:
    f = floor("fairshare", cpu_nodes=0)
    for i in range(1, 5):
        f.handle(Submit(i, JobSpec(("t",), project="b", cpu_milli=2000)), 0)  # b's 4 jobs hold all 8 CPUs
    acts = f.handle(Submit(9, prep(2)), 100)  # a is within its quota, but a reclaim frees GPUs, not CPUs
    assert not [a for a in acts if isinstance(a, Preempt)]
    assert f.job(9).state is JobState.QUEUED


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (JobSpec(("x",), gpus=0), "gpus"),  # asks for nothing at all
        (JobSpec(("x",), gpus=-1, cpu_milli=1000), "gpus"),
        (JobSpec(("x",), gpus=0, cpu_milli=1000, gpu_model="A100"), "gpu_model"),
        (JobSpec(("x",), gpus=0, cpu_milli=1000, multi_node=True), "multi_node"),
        (JobSpec(("x",), gpus=0, cpu_milli=9000), "cpus"),  # more than the biggest node has
    ],
)
def test_bad_jobs_with_no_gpu_are_refused_naming_the_field(spec: JobSpec, field: str) -> None:
    f = floor("fairshare")
    with pytest.raises(SpecError) as err:
        f.handle(Submit(1, replace(spec, project="a")), 0)
    assert err.value.field == field
    assert not f.jobs


def test_where_no_node_tracks_cpu_a_job_with_no_gpu_is_refused_not_left_unbounded() -> None:
    f = Factory(Cluster([Node("g", 4)]), [Project("a", quota=4)], FactorySettings(policy="fairshare"))
    with pytest.raises(SpecError) as err:
        f.handle(Submit(1, prep(1)), 0)  # nothing bounds it: no GPU quota, no tracked CPU
    assert err.value.field == "gpus" and "--cpus-per-node" in str(err.value) and not f.jobs
    cpu_only_tracked = Factory(Cluster([Node("g", 4, cpu_milli=8000)]), [Project("a", quota=4)], FactorySettings())
    with pytest.raises(SpecError):  # memory only, and only CPU is tracked here: still unbounded
        cpu_only_tracked.handle(Submit(1, JobSpec(("x",), project="a", gpus=0, memory_mib=1024)), 0)
