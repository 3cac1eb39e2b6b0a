"""Best-fit placement: the node with the least CPU and GPU left over after the job lands.

The scoring is the openb simulator's `05-BestFit` (FGD paper, ATC'23), vectorised
over candidate nodes with NumPy so the twin's openb experiment and the live
factory run the very same function. Node state in arrays:

    cpu  (N,)    free CPU per node, millicores
    gpu  (N, G)  free milli-GPU per device (1000 = a whole free GPU); nodes with fewer
                 than G GPUs are padded with 0, which reads the same as a full GPU

The live cluster does not track free CPU, and a JobSpec asks for none, so the live
policy scores on GPUs alone (the CPU term is 0 for every node and drops out).
Ties go to the first node in the order given; the experiment orders nodes by its
per-seed random rank, so that rule is the simulator's tie-break too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aifactory.core.cluster import Node
from aifactory.core.errors import SpecError
from aifactory.core.job import MILLI, MODEL_SEP, JobSpec, Placement
from aifactory.core.placement import eligible, gang

MAXCPU = 128_000  # millicores: the simulator normalises CPU by a 128-core node
MAXGPU = 8 * MILLI  # milli-GPU: and GPUs by an 8-GPU node


@dataclass(frozen=True, slots=True)
class Demand:
    """What one job asks of a node: `cpu` millicores and `count` GPUs of `milli` each, on a node
    of one of `models` (None: any model; the openb `gpu_spec`).

    count 0 is a CPU-only job; milli < 1000 (a shared GPU) only with count 1.
    """

    cpu: int
    milli: int
    count: int
    models: frozenset[str] | None = None

    def allows(self, model: str) -> bool:
        """May this demand run on a node of GPU `model`? (A CPU-only one runs anywhere.)"""
        return self.models is None or self.gpu_free or model in self.models

    def __post_init__(self) -> None:
        if self.count < 0 or not 0 <= self.milli <= MILLI or self.cpu < 0:
            raise SpecError("demand", f"bad request cpu={self.cpu} milli={self.milli} count={self.count}")
        if self.count > 1 and self.milli < MILLI:
            raise SpecError("demand", f"a shared GPU request ({self.milli} milli) must ask for one GPU")

    @property
    def total(self) -> int:
        """GPU milli asked for in all (the openb `num_gpu * gpu_milli`)."""
        return self.milli * self.count

    @property
    def sharing(self) -> bool:
        return self.count == 1 and 0 < self.milli < MILLI

    @property
    def gpu_free(self) -> bool:
        """No GPU asked for (count 0 or 0 milli)."""
        return self.count == 0 or self.milli == 0


def gpu_fits(gpu: np.ndarray, demand: Demand) -> np.ndarray:
    """(N,) bool: the node's GPUs can take the demand (a shared GPU or enough whole ones)."""
    if demand.gpu_free:
        return np.ones(gpu.shape[0], dtype=bool)
    if demand.sharing:
        return np.asarray((gpu >= demand.milli).any(axis=1))
    return (gpu == MILLI).sum(axis=1) >= demand.count


def bestfit_scores(cpu: np.ndarray, gpu_total: np.ndarray, demand: Demand) -> np.ndarray:
    """(N,) integer scores in 0..100 of feasible nodes; higher is a tighter fit.

    cpu: free millicores (N,); gpu_total: free milli-GPU summed over the node's GPUs (N,).
    s = trunc(100 * (1 - [0.5 (c - c_p)/128 cores + 0.5 (L - D_p)/8 GPUs])); the simulator's
    later min-max rescale keeps order and ties, so it is left out.
    """
    left = 0.5 * (cpu - demand.cpu) / MAXCPU + 0.5 * (gpu_total - demand.total) / MAXGPU
    return np.clip(np.floor(100.0 * (1.0 - left)), 0, 100).astype(np.int64)


def bestfit_gpus(free: Sequence[int] | np.ndarray, demand: Demand) -> tuple[int, ...]:
    """The GPUs a job gets on its node: the tightest shared GPU, or the lowest free whole ones.

    Shared: the GPU with the least free milli that still fits, lowest index on ties.
    Whole: the `count` lowest-indexed fully free GPUs. CPU-only: none.
    """
    if demand.gpu_free:
        return ()
    if demand.sharing:
        fits = [(f, k) for k, f in enumerate(free) if f >= demand.milli]
        return (min(fits)[1],) if fits else ()
    whole = [k for k, f in enumerate(free) if f == MILLI]
    return tuple(whole[: demand.count]) if len(whole) >= demand.count else ()


def gpu_matrix(nodes: Sequence[Node]) -> np.ndarray:
    """(N, G) free milli per GPU of live nodes, padded with 0 to the widest node."""
    width = max((n.gpu_count for n in nodes), default=0)
    out = np.zeros((len(nodes), width), dtype=np.int64)
    for i, node in enumerate(nodes):
        out[i, : node.gpu_count] = node.free
    return out


def demand_groups(spec: JobSpec, nodes: Sequence[Node]) -> dict[int, list[Node]]:
    """Eligible nodes grouped by the milli the job takes per GPU there.

    A job sized by GPU memory takes a different fraction on each GPU model, so each
    group is scored with its own demand; every other job forms one group.
    """
    groups: dict[int, list[Node]] = {}
    for node in nodes:
        if eligible(spec, node):
            milli = spec.milli_on(node.gpu_memory_mib) if spec.fractional else MILLI
            groups.setdefault(milli, []).append(node)
    return groups


def spec_demand(spec: JobSpec, milli: int) -> Demand:
    """A live job as a Demand: no CPU request, one shared GPU or `whole_gpus` whole ones."""
    models = frozenset(spec.gpu_model.split(MODEL_SEP)) if spec.gpu_model is not None else None
    return Demand(cpu=0, milli=milli, count=1 if spec.fractional else spec.whole_gpus, models=models)


def to_placement(node: Node, demand: Demand) -> Placement:
    gpus = bestfit_gpus(node.free, demand)
    return Placement(((node.name, gpus),), milli=demand.milli)


class BestFit:
    """Tightest fit: the node left with the least free GPU (and CPU, where tracked)."""

    name = "bestfit"

    def place(self, spec: JobSpec, nodes: Sequence[Node]) -> Placement | None:
        best: tuple[int, Node, Demand] | None = None
        for milli, group in demand_groups(spec, nodes).items():
            demand = spec_demand(spec, milli)
            gpu = gpu_matrix(group)
            fits = np.flatnonzero(gpu_fits(gpu, demand))
            if fits.size == 0:
                continue
            scores = bestfit_scores(np.zeros(fits.size), gpu[fits].sum(axis=1), demand)
            i = int(np.argmax(scores))  # first maximum: ties to the earliest node
            if best is None or scores[i] > best[0]:
                best = (int(scores[i]), group[int(fits[i])], demand)
        if best is not None:
            return to_placement(best[1], best[2])
        return gang(spec, nodes) if spec.multi_node else None
