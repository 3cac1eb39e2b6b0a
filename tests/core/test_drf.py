"""CPU and memory as schedulable resources: allocation, placement, admission and weighted DRF."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aifactory.core import Cluster, Factory, Finished, JobSpec, Node, Project, SpecError, Submit
from aifactory.core.factory import FactorySettings
from aifactory.core.job import Placement
from aifactory.core.placement import get_placement

from .helpers import launched
from .sim import simulate

CPU = 1000  # milli-CPU per core


def host_factory(projects: list[Project], cpus: int = 0, nodes: int = 1, gpus: int = 8, **kw: object) -> Factory:
    cluster = Cluster.virtual(gpus, nodes, cpu_milli=cpus * CPU, host_memory_mib=kw.pop("memory_mib", 0))  # type: ignore[arg-type]
    return Factory(cluster, projects, FactorySettings(min_runtime_s=0.0, **kw))  # type: ignore[arg-type]


def job(project: str, cpus: float = 0, memory_mib: int = 0, gpus: float = 1, **kw: object) -> JobSpec:
    return JobSpec(("true",), project=project, gpus=gpus, cpu_milli=int(cpus * CPU), memory_mib=memory_mib, **kw)  # type: ignore[arg-type]


def started_per_project(f: Factory) -> dict[str, int]:
    out: dict[str, int] = {}
    for j in f.running.values():
        out[j.spec.project] = out.get(j.spec.project, 0) + 1
    return out


def submit_mix(f: Factory, heavy: JobSpec | None = None) -> None:
    """Project a is CPU-heavy (1 GPU + 25 CPUs a job), project b GPU-heavy (1 GPU a job); six of each wait
    behind a job of project z that holds the whole node, so one pass shares the node out when it ends."""
    f.handle(Submit(999, job("z", gpus=8)), 0.0)
    for i in range(1, 7):
        f.handle(Submit(i, heavy or job("a", cpus=25)), 0.0)
        f.handle(Submit(100 + i, job("b")), 0.0)
    f.handle(Finished(999, 0), 1.0)


# -- weighted DRF --------------------------------------------------------------------------


def test_drf_gives_each_project_its_dominant_share_where_gpu_only_fair_share_would_not() -> None:
    projects = [Project("a", quota=0), Project("b", quota=0), Project("z", quota=0)]
    drf = host_factory(projects, cpus=100)
    submit_mix(drf)
    # a's dominant resource is CPU (a quarter of the node a job), b's is GPU (an eighth): progressive filling
    # gives a 3 jobs (75% of the CPU) and b 5 (62.5% of the GPUs).
    assert started_per_project(drf) == {"a": 3, "b": 5}
    assert drf.host_usage["a"] == (75 * CPU, 0)
    gpu_only = host_factory(
        [Project("a", quota=0), Project("b", quota=0), Project("z", quota=0)], cpus=0
    )  # CPU not tracked
    submit_mix(gpu_only)
    assert started_per_project(gpu_only) == {"a": 4, "b": 4}  # equal GPUs: a holds all the CPU


def test_drf_shares_follow_the_weights() -> None:
    f = host_factory([Project("a", quota=0, weight=2.0), Project("b", quota=0), Project("z", quota=0)], cpus=100)
    submit_mix(f)
    # a's job costs 1/4 / 2 = 1/8 of weighted dominant share, as b's: they alternate, 4 each.
    assert started_per_project(f) == {"a": 4, "b": 4}


def test_memory_counts_as_a_dominant_resource() -> None:
    f = host_factory([Project("a", quota=0), Project("b", quota=0), Project("z", quota=0)], memory_mib=1000)
    submit_mix(f, job("a", memory_mib=250))
    assert started_per_project(f) == {"a": 3, "b": 5}


def test_the_guarantee_comes_first_then_drf_lends_the_rest() -> None:
    f = host_factory([Project("a", quota=4), Project("b", quota=0), Project("z", quota=0)], cpus=100)
    submit_mix(f)
    counts = started_per_project(f)
    # a takes its 4 guaranteed GPUs whatever its CPU; b is lent the rest.
    assert counts == {"a": 4, "b": 4}


def test_a_freed_gpu_goes_to_the_project_with_the_smaller_dominant_share() -> None:
    f = host_factory([Project("a", quota=0), Project("b", quota=0), Project("z", quota=0)], cpus=100)
    submit_mix(f)
    b_job = next(j for j in f.running.values() if j.spec.project == "b")
    acts = f.handle(Finished(b_job.id, 0), 10.0)
    (started,) = launched(acts)
    # b now holds 4/8 GPUs, a 75/100 CPU: b is further below its share and gets the GPU.
    assert f.jobs[started].spec.project == "b"


def test_without_cpu_or_memory_requests_a_tracked_floor_decides_as_a_gpu_only_one() -> None:
    def decisions(cpus: int) -> list[tuple[int, str]]:
        f = host_factory([Project("a", quota=2, weight=2.0), Project("b", quota=1)], cpus=cpus, gpus=4, nodes=2)
        out: list[tuple[int, str]] = []
        for i in range(1, 13):
            for a in f.handle(Submit(i, JobSpec(("true",), project="ab"[i % 2], gpus=1 + i % 3)), float(i)):
                out.append((a.job_id, type(a).__name__))  # type: ignore[attr-defined]
        return out

    assert decisions(64) == decisions(0)


# -- allocation and placement ---------------------------------------------------------------


def test_allocate_refuses_a_cpu_over_commit_and_changes_nothing() -> None:
    cluster = Cluster([Node("n0", 4, cpu_milli=8 * CPU, memory_mib=1024)])
    cluster.allocate(1, Placement((("n0", (0,)),), cpu_milli=6 * CPU, memory_mib=512))
    with pytest.raises(ValueError, match="milli-CPU"):
        cluster.allocate(2, Placement((("n0", (1,)),), cpu_milli=3 * CPU))
    with pytest.raises(ValueError, match="MiB"):
        cluster.allocate(3, Placement((("n0", (1,)),), memory_mib=600))
    node = cluster.nodes["n0"]
    assert (node.cpu_free, node.memory_free, node.free_whole) == (2 * CPU, 512, 3)
    cluster.release(1)
    assert (node.cpu_free, node.memory_free, node.free_whole) == (8 * CPU, 1024, 4)


@pytest.mark.parametrize("name", ["pack", "spread", "topology", "bestfit", "fgd"])
def test_placement_goes_only_where_the_cpu_fits(name: str) -> None:
    # n0 is the fullest GPU-wise (pack's choice) but short of CPU; n1 has the CPU.
    nodes = [Node("n0", 8, cpu_milli=4 * CPU), Node("n1", 8, cpu_milli=32 * CPU), Node("n2", 8, cpu_milli=2 * CPU)]
    cluster = Cluster(nodes)
    cluster.allocate(99, Placement((("n0", (0, 1, 2, 3)),)))
    spec = job("a", cpus=8, gpus=2)
    placement = get_placement(name).place(spec, list(cluster))
    assert placement is not None and placement.nodes == ("n1",)
    assert get_placement(name).place(job("a", cpus=40, gpus=1), list(cluster)) is None
    frac = get_placement(name).place(job("a", cpus=8, gpus=0.5), list(cluster))
    assert frac is not None and frac.nodes == ("n1",)


def test_a_gang_needs_the_cpu_on_every_node_it_uses() -> None:
    cluster = Cluster(
        [Node("n0", 4, cpu_milli=8 * CPU), Node("n1", 4, cpu_milli=2 * CPU), Node("n2", 4, cpu_milli=8 * CPU)]
    )
    for name in ("pack", "topology"):
        placement = get_placement(name).place(job("a", cpus=4, gpus=8, multi_node=True), list(cluster))
        assert placement is not None and sorted(placement.nodes) == ["n0", "n2"]


def test_the_factory_holds_cpu_per_node_and_gives_it_back() -> None:
    f = host_factory([Project("a", quota=8)], cpus=16, nodes=2, gpus=4)
    f.handle(Submit(1, job("a", cpus=4, gpus=8, multi_node=True)), 0.0)
    assert f.jobs[1].placement is not None and f.jobs[1].placement.cpu_milli == 4 * CPU
    assert [n.cpu_free for n in f.cluster] == [12 * CPU, 12 * CPU]
    assert f.host_usage["a"] == (8 * CPU, 0)
    f.handle(Finished(1, 0), 5.0)
    assert [n.cpu_free for n in f.cluster] == [16 * CPU, 16 * CPU] and f.host_usage["a"] == (0, 0)


def test_a_job_short_of_cpu_waits_with_a_reason_and_others_pass_it() -> None:
    f = host_factory([Project("a", quota=8)], cpus=16, gpus=8)
    f.handle(Submit(1, job("a", cpus=12)), 0.0)
    f.handle(Submit(2, job("a", cpus=8)), 0.0)  # 4 CPUs left: waits
    f.handle(Submit(3, job("a", cpus=2)), 0.0)  # fits beside job 1
    assert sorted(f.running) == [1, 3]
    reason = f.pending_reason(2)
    # Given when job 2 was last tried, before job 3 took 2 of the 4 CPUs left.
    assert reason == "needs 8 CPUs (most free on a node: 4) per node beside its GPUs", reason


# -- admission -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "field", "text"),
    [
        ({"cpu_milli": -1000}, "cpus", "must be a whole number >= 0"),
        ({"memory_mib": -1}, "memory", "must be a whole number >= 0"),
        ({"cpu_milli": 65 * CPU}, "cpus", "largest node has 64"),
        ({"memory_mib": 300_000}, "memory", "largest node has 262144 MiB"),
    ],
)
def test_check_rejects_bad_cpu_and_memory_naming_the_field(kw: dict[str, int], field: str, text: str) -> None:
    f = host_factory([Project("a")], cpus=64, memory_mib=262_144)
    with pytest.raises(SpecError) as err:
        f.handle(Submit(1, JobSpec(("true",), project="a", **kw)), 0.0)  # type: ignore[arg-type]
    assert err.value.field == field and text in str(err.value)
    assert not f.jobs and all(n.cpu_free == 64 * CPU for n in f.cluster)


def test_requests_are_not_enforced_where_no_node_tracks_them() -> None:
    f = host_factory([Project("a")], cpus=0)
    f.handle(Submit(1, job("a", cpus=500, memory_mib=10**7)), 0.0)
    assert 1 in f.running


# -- property: CPU and memory are never over-committed ---------------------------------------


@st.composite
def host_floors(draw: st.DrawFn) -> tuple[list[tuple[int, int, int]], list[tuple[float, int, JobSpec]], dict]:
    nodes = draw(
        st.lists(
            st.tuples(st.sampled_from([1, 2, 4]), st.sampled_from([0, 4, 8]), st.sampled_from([0, 16, 64])),
            min_size=1,
            max_size=3,
        )
    )
    arrivals, durations, t = [], {}, 0.0
    largest = max(g for g, _, _ in nodes)
    for job_id in range(1, draw(st.integers(1, 16)) + 1):
        t += draw(st.sampled_from([0.0, 1.0, 10.0]))
        gpus = draw(st.sampled_from([g for g in (0.5, 1, 2, 4) if g <= largest]))
        spec = JobSpec(
            ("true",),
            project=draw(st.sampled_from(["a", "b"])),
            gpus=gpus,
            cpu_milli=draw(st.sampled_from([0, 1, 2, 4])) * CPU,
            memory_mib=draw(st.sampled_from([0, 8, 16])),
            multi_node=draw(st.booleans()) and gpus >= 1,
        )
        arrivals.append((t, job_id, spec))
        durations[job_id] = draw(st.sampled_from([5.0, 30.0]))
    return nodes, arrivals, durations


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    policy=st.sampled_from(["fairshare", "fifo", "backfill"]),
    placement=st.sampled_from(["pack", "spread", "topology"]),
)
def test_cpu_and_memory_are_never_over_committed(data: st.DataObject, policy: str, placement: str) -> None:
    shape, arrivals, durations = data.draw(host_floors())
    cluster = Cluster(Node(f"n{i}", g, cpu_milli=c * CPU, memory_mib=m) for i, (g, c, m) in enumerate(shape))
    projects = [Project("a", quota=1, weight=2.0), Project("b", quota=0)]
    f = Factory(cluster, projects, FactorySettings(policy=policy, placement=placement, min_runtime_s=5.0))
    accepted = []
    for t, job_id, spec in arrivals:
        try:
            f.check(spec)
        except SpecError:
            continue
        accepted.append((t, job_id, spec))

    def host_ok(f: Factory, _before: object, _acts: object, _now: float) -> None:
        for node in f.cluster:
            held = [j.placement for j in f.running.values() if j.placement and node.name in j.placement.nodes]
            if node.cpu_milli:
                assert 0 <= node.cpu_free == node.cpu_milli - sum(p.cpu_milli for p in held)
            if node.memory_mib:
                assert 0 <= node.memory_free == node.memory_mib - sum(p.memory_mib for p in held)

    simulate(f, accepted, durations, on_actions=host_ok)
    assert all(j.state.terminal for j in f.jobs.values())
    assert all(n.cpu_free == n.cpu_milli and n.memory_free == n.memory_mib for n in f.cluster)
