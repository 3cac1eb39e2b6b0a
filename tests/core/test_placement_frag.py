"""bestfit and FGD placement: scoring on hand-made tiny nodes, and the policies inside the Factory."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aifactory.core import Cluster, Factory, JobSpec, Launch, Node, Project, SpecError, Submit
from aifactory.core.factory import FactorySettings
from aifactory.core.placement import get_placement
from aifactory.core.placement_bestfit import BestFit, Demand, bestfit_gpus, bestfit_scores, gpu_fits
from aifactory.core.placement_fgd import FGD, FragModel, TypicalPod, fgd_scores, sigmoid_score, typical_pods


def nodes_with(*frees: list[int]) -> list[Node]:
    return [Node(name=f"n{i}", gpu_count=len(f), free=list(f), holders=[{} for _ in f]) for i, f in enumerate(frees)]


def job(gpus: float = 1, **kw: object) -> JobSpec:
    return JobSpec(command=("true",), gpus=gpus, **kw)  # type: ignore[arg-type]


SHARE_500 = (TypicalPod(Demand(0, 500, 1), 1),)


# -- bestfit ------------------------------------------------------------------------------


def test_bestfit_picks_the_node_left_tightest() -> None:
    nodes = nodes_with([1000] * 8, [1000, 1000, 0, 0], [1000] * 4)
    assert BestFit().place(job(1), nodes).parts == (("n1", (0,)),)
    assert BestFit().place(job(2), nodes).parts == (("n1", (0, 1)),)
    assert BestFit().place(job(3), nodes).parts == (("n2", (0, 1, 2)),)
    assert BestFit().place(job(5), nodes).parts == (("n0", (0, 1, 2, 3, 4)),)
    assert BestFit().place(job(9), nodes) is None


def test_bestfit_shared_gpu_goes_to_the_tightest_device() -> None:
    nodes = nodes_with([1000, 400, 350], [1000, 1000])
    placement = BestFit().place(job(0.3), nodes)
    assert placement.parts == (("n0", (2,)),) and placement.milli == 300
    assert bestfit_gpus([500, 300, 300, 1000], Demand(0, 300, 1)) == (1,)  # equal free: lowest index
    assert bestfit_gpus([0, 1000, 700, 1000, 1000], Demand(0, 1000, 2)) == (1, 3)


def test_bestfit_score_is_truncated_to_an_integer() -> None:
    cpu = np.array([68000.0, 132000.0, 12000.0])  # 64, 128 and 8 cores left after 4
    total = np.array([8000, 1000, 2000])
    # left = 0.5 * 64000/128000 + 0.5 * 7000/8000 = 0.6875 -> 31.25 -> 31; 0.5 + 0 -> exactly 50;
    # 0.5 * 8000/128000 + 0.5 * 1000/8000 = 0.09375 -> 90.625 -> 90
    assert bestfit_scores(cpu, total, Demand(4000, 1000, 1)).tolist() == [31, 50, 90]
    assert bestfit_scores(cpu, total, Demand(4000, 1000, 1)).dtype == np.int64


def test_bestfit_ties_go_to_the_first_node() -> None:
    nodes = nodes_with([1000, 1000], [1000, 1000], [1000, 1000])
    assert BestFit().place(job(1), nodes).nodes == ("n0",)
    assert BestFit().place(job(1), nodes[::-1]).nodes == ("n2",)


def test_bestfit_respects_gpu_model_and_falls_back_to_a_gang() -> None:
    a100 = Node(name="a", gpu_count=2, gpu_model="A100")
    h100 = Node(name="h", gpu_count=4, gpu_model="H100")
    assert BestFit().place(job(1, gpu_model="H100"), [a100, h100]).nodes == ("h",)
    assert BestFit().place(job(6), [a100, h100]) is None
    gang = BestFit().place(job(6, multi_node=True), [a100, h100])
    assert gang is not None and gang.gpu_count == 6 and set(gang.nodes) == {"a", "h"}


def test_memory_sized_fraction_is_scored_per_gpu_size() -> None:
    small = Node(name="small", gpu_count=1, gpu_memory_mib=16384)
    big = Node(name="big", gpu_count=1, gpu_memory_mib=81920)
    for policy in (BestFit(), FGD()):
        placement = policy.place(job(1, gpu_memory_mib=8192), [small, big])
        # 8 GiB is half of the small GPU but a tenth of the big one: both fit, so milli follows the node
        assert placement.milli == {"small": 500, "big": 103}[placement.nodes[0]]


def test_demand_rejects_shapes_that_cannot_exist() -> None:
    with pytest.raises(SpecError, match="demand"):
        Demand(0, 500, 2)
    with pytest.raises(SpecError, match="demand"):
        Demand(0, 1200, 1)


# -- FGD ----------------------------------------------------------------------------------


def test_fgd_prefers_less_expected_fragmentation_where_bestfit_packs() -> None:
    # Typical pods want 500 milli. Putting 300 on the 700-free GPU leaves 400 that no typical
    # pod can use (+400 fragmentation, score 40); the whole GPU keeps 700 usable (+0, score 50).
    nodes = nodes_with([700], [1000])
    assert BestFit().place(job(0.3), nodes).nodes == ("n0",)
    assert FGD(SHARE_500).place(job(0.3), nodes).nodes == ("n1",)
    model = FragModel(SHARE_500)
    scores, device = fgd_scores(model, np.full(2, np.inf), np.array([[700], [1000]]), Demand(0, 300, 1))
    assert scores.tolist() == [40, 50] and device.tolist() == [0, 0]


def test_fgd_sharing_uses_the_lowest_device_with_the_best_score() -> None:
    # Whole-GPU typical pods: taking 500 from either empty GPU or from the 500-free one.
    model = FragModel((TypicalPod(Demand(0, 1000, 1), 3),))
    gpu = np.array([[1000, 500, 1000, 500]])
    scores, device = fgd_scores(model, np.array([np.inf]), gpu, Demand(0, 500, 1))
    # filling a 500 leftover removes 500 of fragment: delta -500 -> trunc(100 * sigmoid(0.5)) = 62
    assert scores.tolist() == [62] and device.tolist() == [1]


def test_fgd_cpu_only_pods_count_every_idle_gpu_and_cpu_can_block() -> None:
    # half the weight CPU-only (all free GPU is fragment to it), half a 1-GPU pod needing 8 cores
    model = FragModel((TypicalPod(Demand(0, 0, 0), 1), TypicalPod(Demand(8000, 1000, 1), 1)))
    cpu, gpu = np.array([16000.0, 8000.0]), np.array([[1000, 1000], [1000, 0]])
    assert model.frag(cpu, gpu).tolist() == [1000.0, 500.0]
    # a CPU-only job of 8 cores: node 0 keeps 8 for the GPU pod (F unchanged, 50); on node 1 it
    # leaves none, so the free GPU becomes a fragment to both typical pods (+500, 37)
    scores, _ = fgd_scores(model, cpu, gpu, Demand(8000, 0, 0))
    assert scores.tolist() == [50, 37]


def test_sigmoid_score_is_50_at_zero_and_truncated() -> None:
    assert sigmoid_score(np.array([0.0, -500.0, 500.0, 4600.0, -8000.0])).tolist() == [50, 62, 37, 0, 99]


def test_typical_pods_take_the_popular_shapes_up_to_the_cut() -> None:
    a, b, c, d = Demand(1, 1000, 1), Demand(2, 500, 1), Demand(9, 0, 0), Demand(3, 250, 1)
    picked = typical_pods({a: 50, b: 30, c: 15, d: 5})
    assert [t.demand for t in picked] == [a, b, c] and [t.weight for t in picked] == [50, 30, 15]
    assert [t.demand for t in typical_pods({d: 5, c: 5}, cut=0.5)] == [c]  # tie: larger CPU first
    with pytest.raises(SpecError, match="cut"):
        typical_pods({a: 1}, cut=0)


def test_fgd_learns_the_workload_from_the_jobs_it_places() -> None:
    fgd = FGD()
    nodes = nodes_with([1000, 1000], [1000, 1000])
    first = fgd.place(job(0.5), nodes)
    assert first is not None and fgd.seen == {Demand(0, 500, 1): 1}
    fgd.place(job(1), nodes)
    assert fgd.seen == {Demand(0, 500, 1): 1, Demand(0, 1000, 1): 1}
    assert FGD(SHARE_500).seen == {} and FGD(SHARE_500).model_for(Demand(0, 100, 1)).typical == SHARE_500


shapes = st.sampled_from([(0, 0), (1000, 1), (1000, 2), (500, 1), (250, 1), (810, 1), (50, 1)])


@settings(max_examples=60, deadline=None)
@given(
    typical=st.lists(st.tuples(shapes, st.integers(0, 32000), st.integers(1, 50)), min_size=1, max_size=6),
    state=st.lists(
        st.tuples(st.integers(0, 64000), st.lists(st.integers(0, 20).map(lambda v: v * 50), min_size=4, max_size=4)),
        min_size=1,
        max_size=5,
    ),
    pod=st.tuples(shapes, st.integers(0, 16000)),
)
def test_fgd_score_equals_the_change_of_the_fragmentation_measure(typical, state, pod) -> None:
    """The grouped, incremental score is trunc(100 sigmoid(-(F(after) - F(before)))) from the definition."""
    model = FragModel([TypicalPod(Demand(c, m, k), w) for (m, k), c, w in typical])
    (m, k), c = pod
    demand = Demand(c, m, k)
    cpu = np.array([s[0] for s in state], dtype=np.float64)
    gpu = np.array([s[1] for s in state], dtype=np.int64)
    scores, device = fgd_scores(model, cpu, gpu, demand)
    before = model.frag(cpu, gpu)
    for n in np.flatnonzero(gpu_fits(gpu, demand) & (cpu >= c)):
        options = [(g,) for g in range(4) if gpu[n, g] >= m] if demand.sharing else [bestfit_gpus(gpu[n], demand)]
        expected = []
        for gpus in options:
            after = gpu[n : n + 1].copy()
            after[0, list(gpus)] -= m
            delta = model.frag(cpu[n : n + 1] - c, after)[0] - before[n]
            expected.append(math.floor(100 / (1 + math.exp(delta / 1000))))
        assert scores[n] == max(expected)
        if demand.sharing:
            assert options.index((int(device[n]),)) == expected.index(max(expected))


# -- inside the Factory ---------------------------------------------------------------------


@pytest.mark.parametrize("placement", ["bestfit", "fgd"])
def test_factory_runs_with_the_placement(placement: str) -> None:
    f = Factory(
        Cluster.virtual(4, 2), [Project("default", quota=8)], FactorySettings(policy="fifo", placement=placement)
    )
    acts = []
    for i, gpus in enumerate([0.5, 1, 0.5, 2, 0.25, 3, 1], start=1):
        acts += f.handle(Submit(i, job(gpus)), now=float(i))
    started = {a.job_id: a.placement for a in acts if isinstance(a, Launch)}
    assert set(started) == {1, 2, 3, 4, 5, 6}  # 7.25 GPUs asked, 8 there; job 7 waits for a whole GPU
    for node in f.cluster:
        assert all(0 <= free <= 1000 for free in node.free)
    # the two halves share one GPU rather than spoiling two
    assert started[1].parts == started[3].parts
    assert get_placement(placement).name == placement
