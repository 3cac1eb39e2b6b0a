"""Fragmentation gradient descent (FGD, Weng et al., USENIX ATC'23): place where fragmentation grows least.

A node's fragmentation is measured against the *typical workload* (a weighted set of
request shapes): for one typical pod t, the free GPU milli the pod could not use there,

    frag_t(c, g) = L                          t is CPU-only, or asks for GPU models other than
                                              the node's, or does not fit (GPUs or CPU)
                 = sum of g[k] with g[k] < m_t   t fits: only too-small leftovers are fragments

and F(c, g) = sum_t w_t frag_t / sum_t w_t, the expected fragmented milli (L = sum of g).
A job goes to the node (and, for a shared GPU, the device) whose placement raises F
least, scored as the simulator does: s = trunc(100 * sigmoid(-dF / 1000)), 50 for no
change, ties to the first node. Shapes and units are those of `placement_bestfit`.

For speed the score is computed per typical-pod *group* (same milli m and count k):
F * W = W * L - sum_groups [#{g >= m} >= k] * W_fit(c) * U_m, where U_m is the free
milli on GPUs with at least m free and W_fit(c) the weight of the group's pods whose
CPU fits in c and whose GPU models include the node's (one table per node model, built on
first use; without any model constraint one table serves every node). With integer weights (pod counts) every term is an exact integer, so
an unchanged node scores exactly 50, as in the simulator.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from aifactory.core.cluster import Node
from aifactory.core.errors import SpecError
from aifactory.core.job import JobSpec, Placement
from aifactory.core.placement import gang
from aifactory.core.placement_bestfit import Demand, bestfit_gpus, demand_groups, gpu_fits, gpu_matrix, spec_demand


@dataclass(frozen=True, slots=True)
class TypicalPod:
    demand: Demand
    weight: float  # a pod count or a probability: only ratios matter


def typical_pods(counts: Mapping[Demand, float], cut: float = 0.95) -> tuple[TypicalPod, ...]:
    """The most popular shapes covering at least `cut` of all pods (the FGD paper's target workload).

    Shapes sorted by count, descending (ties: larger CPU, then milli, then count first);
    the shortest prefix whose cumulative count reaches `cut` of the total is kept.
    """
    if not 0 < cut <= 1:
        raise SpecError("cut", f"must be in (0, 1], got {cut}")
    total = sum(counts.values())
    if total <= 0:
        raise SpecError("typical", "no pods to learn the typical workload from")
    # A shape is (cpu, milli, count, models): the same request bound to other GPU models is another shape.
    ordered = sorted(
        counts.items(), key=lambda kv: (-kv[1], -kv[0].cpu, -kv[0].milli, -kv[0].count, sorted(kv[0].models or ()))
    )
    out: list[TypicalPod] = []
    covered = 0.0
    for demand, count in ordered:
        out.append(TypicalPod(demand, count))
        covered += count
        if covered >= cut * total:
            break
    return tuple(out)


class FragModel:
    """The typical workload, precomputed for vectorised fragmentation and FGD scores."""

    def __init__(self, typical: Sequence[TypicalPod]) -> None:
        if not typical or any(t.weight < 0 for t in typical):
            raise SpecError("typical", "needs at least one shape and no negative weight")
        self.typical = tuple(typical)
        self.total = float(sum(t.weight for t in typical))
        gpu_pods = [t for t in typical if not t.demand.gpu_free]
        keys = sorted({(t.demand.milli, t.demand.count) for t in gpu_pods})
        self.milli = np.array([m for m, _ in keys], dtype=np.int64)  # (M,) group thresholds
        self.count = np.array([k for _, k in keys], dtype=np.int64)  # (M,)
        self.cpu_steps = np.unique(np.array([t.demand.cpu for t in gpu_pods], dtype=np.float64))
        self._gpu_pods, self._keys = gpu_pods, keys
        self.bound = any(t.demand.models is not None for t in gpu_pods)  # some shape names GPU models
        self._tables: dict[str | None, np.ndarray] = {}
        self.cpu_table = self.table(None)

    def table(self, model: str | None) -> np.ndarray:
        """(S+1, M): weight of each group's pods, allowed on GPU `model` (None: on any node),
        needing at most the i-th smallest CPU step."""
        table = self._tables.get(model)
        if table is None:
            table = np.zeros((self.cpu_steps.size + 1, len(self._keys)))
            for t in self._gpu_pods:
                if model is None or t.demand.allows(model):
                    row = int(np.searchsorted(self.cpu_steps, t.demand.cpu)) + 1
                    table[row:, self._keys.index((t.demand.milli, t.demand.count))] += t.weight
            self._tables[model] = table
        return table

    def fit_weight(self, cpu: np.ndarray, models: np.ndarray | None = None) -> np.ndarray:
        """(N, M) weight of each group's pods whose CPU request fits in `cpu` (N,) and, given the
        nodes' GPU `models` (N,), whose models include the node's."""
        steps = np.searchsorted(self.cpu_steps, cpu, side="right")
        if models is None or not self.bound:
            return self.cpu_table[steps]
        out = np.empty((steps.size, len(self._keys)))
        for model in np.unique(models).tolist():
            mine = models == model
            out[mine] = self.table(model)[steps[mine]]
        return out

    def usable(self, gpu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per node and group: GPUs with at least m free (N, M) and their free milli (N, M).

        Groups are sorted by m, so a GPU with g free serves the first `level` groups
        (those with m <= g): one histogram of levels per node, summed from the top.
        """
        n, groups = gpu.shape[0], self.milli.size
        level = np.searchsorted(self.milli, gpu, side="right")  # (N, G)
        flat = (np.arange(n)[:, None] * (groups + 1) + level).ravel()
        size = n * (groups + 1)
        hist = np.bincount(flat, minlength=size).reshape(n, groups + 1)
        vol = np.bincount(flat, weights=gpu.ravel(), minlength=size).reshape(n, groups + 1)
        # column j: GPUs whose level is above j, i.e. g >= m_j
        return np.cumsum(hist[:, ::-1], axis=1)[:, -2::-1], np.cumsum(vol[:, ::-1], axis=1)[:, -2::-1]

    def fitted(self, weight: np.ndarray, cnt: np.ndarray, use: np.ndarray) -> np.ndarray:
        """(..., M) weighted usable milli [cnt >= k] * W_fit(c) * U_m; `weight` is W_fit(c), broadcast."""
        return (cnt >= self.count) * weight * use

    def frag(self, cpu: np.ndarray, gpu: np.ndarray, models: np.ndarray | None = None) -> np.ndarray:
        """(N,) expected fragmented milli-GPU of each node, straight from the definition."""
        total = gpu.sum(axis=1).astype(np.float64)
        out = np.zeros(gpu.shape[0])
        for t in self.typical:
            d = t.demand
            if d.gpu_free:
                out += t.weight * total
                continue
            fits = ((gpu >= d.milli).sum(axis=1) >= d.count) & (cpu >= d.cpu)
            if models is not None and d.models is not None:
                fits &= np.isin(models, list(d.models))
            small = np.where(gpu < d.milli, gpu, 0).sum(axis=1)
            out += t.weight * np.where(fits, small, total)
        return out / self.total


def sigmoid_score(delta: np.ndarray) -> np.ndarray:
    """trunc(100 * sigmoid(-delta / 1000)) for delta in milli-GPU: 50 at 0, 0 past ~4.6 GPUs."""
    return np.floor(100.0 / (1.0 + np.exp(np.clip(delta / 1000.0, -50.0, 50.0)))).astype(np.int64)


def fgd_scores(
    model: FragModel, cpu: np.ndarray, gpu: np.ndarray, demand: Demand, models: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """FGD scores of feasible nodes (N,) and, for a shared GPU, the device each would use (N,).

    cpu (N,) free millicores (inf where untracked); gpu (N, G) free milli; models (N,) the
    nodes' GPU models (None: no typical shape is bound to a model). For a shared
    GPU every device with room is a candidate; the node scores its best candidate and
    uses the lowest-indexed device reaching that score. Other jobs report device -1.
    """
    cnt, use = model.usable(gpu)  # (N, M) each
    before = model.fitted(model.fit_weight(cpu, models), cnt, use).sum(axis=1)  # (N,)
    weight_after = model.fit_weight(cpu - demand.cpu, models)  # (N, M)
    if not demand.sharing:
        taken = 0 if demand.gpu_free else demand.total  # whole GPUs: count * 1000 milli
        full = 0 if demand.gpu_free else demand.count
        after = model.fitted(weight_after, cnt - full, use - taken).sum(axis=1)
        delta = (-model.total * taken - (after - before)) / model.total
        return sigmoid_score(delta), np.full(gpu.shape[0], -1)
    m = demand.milli
    rows, cols = np.nonzero(gpu >= m)  # (C,) each: every device with room is a candidate
    free = gpu[rows, cols][:, None]  # (C, 1) milli free on the device before, and after:
    ge, ge_after = free >= model.milli, free - m >= model.milli  # (C, M)
    cnt_after = cnt[rows] - ge + ge_after
    use_after = use[rows] - free * ge + (free - m) * ge_after
    after = model.fitted(weight_after[rows], cnt_after, use_after).sum(axis=1)  # (C,)
    delta = (-model.total * m - (after - before[rows])) / model.total
    scores = np.full(gpu.shape, -1, dtype=np.int64)  # (N, G); -1: no room on the device
    scores[rows, cols] = sigmoid_score(delta)
    device = np.argmax(scores, axis=1)  # first maximum: the lowest-indexed device
    return scores[np.arange(gpu.shape[0]), device], device


class FGD:
    """Fragmentation gradient descent over a typical workload.

    `typical` fixes the workload (e.g. from a trace). Without it the policy learns: the
    shapes of the jobs it has placed so far, plus the job being placed, with the same
    95 % popularity cut, so a fresh factory starts from "more jobs like this one".
    """

    name = "fgd"

    def __init__(self, typical: Sequence[TypicalPod] | None = None, cut: float = 0.95) -> None:
        self.cut = cut
        self.fixed = FragModel(typical) if typical else None
        self.seen: Counter[Demand] = Counter()

    def model_for(self, demand: Demand) -> FragModel:
        if self.fixed is not None:
            return self.fixed
        counts = self.seen.copy()
        counts[demand] += 1
        return FragModel(typical_pods(counts, self.cut))

    def place(self, spec: JobSpec, nodes: Sequence[Node]) -> Placement | None:
        best: tuple[int, Node, Demand, int] | None = None  # score, node, demand, device
        for milli, group in demand_groups(spec, nodes).items():
            demand = spec_demand(spec, milli)
            gpu = gpu_matrix(group)
            fits = np.flatnonzero(gpu_fits(gpu, demand))
            if fits.size == 0:
                continue
            cpu = np.full(fits.size, np.inf)  # the live cluster does not track free CPU
            models = np.array([group[int(i)].gpu_model for i in fits])
            scores, device = fgd_scores(self.model_for(demand), cpu, gpu[fits], demand, models)
            i = int(np.argmax(scores))
            if best is None or scores[i] > best[0]:
                best = (int(scores[i]), group[int(fits[i])], demand, int(device[i]))
        if best is None:
            return gang(spec, nodes) if spec.multi_node else None
        _, node, demand, shared = best
        self.seen[demand] += 1
        gpus = (shared,) if demand.sharing else bestfit_gpus(node.free, demand)
        return Placement(((node.name, gpus),), milli=demand.milli)
