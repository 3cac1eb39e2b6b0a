"""The openb GPU-allocation experiment of the FGD paper (ATC'23, Fig. 9a), on our placement scoring.

The published protocol (see `../shared/data/traces/openb/README.md`): the 8152 pods of
the default workload, shuffled, then random clones appended until the GPU demand is
130 % of the 6212 GPUs; pods arrive one after another, never leave, and each is tried
once on the 1213 nodes. After every pod we record the demand that has arrived and the
GPU milli allocated; the curve is the mean allocation % per arrived-demand % bucket.

The experiment keeps its own state in NumPy arrays (free CPU, memory, per-GPU milli),
with nodes in the per-seed random rank order so that "first maximum" is the simulator's
tie-break, and scores nodes with the very functions the factory's `bestfit` and `fgd`
placement policies use. Any PRNG reproduces the distribution (per-seed parity with the
Go original is impossible); we use NumPy's default generator.

    python -m aifactory.twin.openb --policy bestfit --policy fgd --seeds 42-51
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aifactory.core.errors import AifactoryError, SpecError, UnknownName
from aifactory.core.job import MILLI
from aifactory.core.placement_bestfit import MAXCPU, MAXGPU, Demand, bestfit_gpus, bestfit_scores
from aifactory.core.placement_fgd import FragModel, fgd_scores, typical_pods

# ../shared/data next to the checkout, wherever the command runs from
DEFAULT_DIR = Path(__file__).resolve().parents[4] / "shared" / "data" / "traces" / "openb"
NODES_CSV = "openb_node_list_gpu_node.csv"
PODS_CSV = "openb_pod_list_default.csv"
EXPECTED_CSV = "expected_alloc_default.csv"
TUNE = 1.3  # arrived GPU demand is grown to 130 % of capacity
XS = 131  # curve points x = 0..130 (% of GPU capacity arrived)
WIDTH = 8  # GPUs of the widest node: state arrays are (N, 8), padded with 0
PUBLISHED = {
    "random": "01-Random",
    "dotprod": "02-DotProd",
    "gpuclustering": "03-GpuClustering",
    "gpupacking": "04-GpuPacking",
    "bestfit": "05-BestFit",
    "fgd": "06-FGD",
}


@dataclass(frozen=True, slots=True)
class Nodes:
    """The node list, sorted by name: CPU (millicores), memory (MiB), GPU count and model, per node."""

    names: tuple[str, ...]
    cpu: np.ndarray
    memory: np.ndarray
    gpus: np.ndarray
    models: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))  # (N,) GPU model names

    @property
    def capacity(self) -> int:
        """GPU capacity in milli-GPU."""
        return int(self.gpus.sum()) * MILLI


@dataclass(frozen=True, slots=True)
class Pods:
    """The original pods, sorted by name: CPU, memory, GPU count and per-GPU milli per pod."""

    names: tuple[str, ...]
    cpu: np.ndarray
    memory: np.ndarray
    count: np.ndarray
    milli: np.ndarray  # 0 for CPU-only pods
    specs: tuple[frozenset[str] | None, ...] = ()  # per pod: the GPU models it accepts (None: any)

    def demand(self, i: int) -> Demand:
        spec = self.specs[i] if self.specs else None
        return Demand(int(self.cpu[i]), int(self.milli[i]), int(self.count[i]), spec if self.count[i] else None)

    @property
    def total(self) -> np.ndarray:
        """(P,) GPU milli each pod asks for (count * milli)."""
        return self.count * self.milli


def _read_csv(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    if not path.is_file():
        raise SpecError("data", f"missing file {path}")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    missing = [c for c in columns if rows and c not in rows[0]]
    if not rows or missing:
        raise SpecError("data", f"{path.name}: no rows or missing columns {missing}")
    return sorted(rows, key=lambda r: r[columns[0]])


def _ints(rows: list[dict[str, str]], column: str, path: Path) -> np.ndarray:
    try:
        return np.array([int(r[column]) for r in rows], dtype=np.int64)
    except ValueError as e:
        raise SpecError(column, f"{path.name}: not an integer ({e})") from None


def load_nodes(folder: Path = DEFAULT_DIR) -> Nodes:
    path = folder / NODES_CSV
    rows = _read_csv(path, ("sn", "cpu_milli", "memory_mib", "gpu"))
    gpus = _ints(rows, "gpu", path)
    if gpus.min() < 1 or gpus.max() > WIDTH:
        raise SpecError("gpu", f"{path.name}: GPUs per node must be 1..{WIDTH}")
    names = tuple(r["sn"] for r in rows)
    models = np.array([r.get("model") or "" for r in rows], dtype=object)
    return Nodes(names, _ints(rows, "cpu_milli", path), _ints(rows, "memory_mib", path), gpus, models)


def load_pods(folder: Path = DEFAULT_DIR) -> Pods:
    path = folder / PODS_CSV
    rows = _read_csv(path, ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli"))
    count = _ints(rows, "num_gpu", path)
    milli = np.where(count > 0, np.clip(_ints(rows, "gpu_milli", path), 0, MILLI), 0)
    names = tuple(r["name"] for r in rows)
    specs = tuple(frozenset(s.split("|")) if (s := (r.get("gpu_spec") or "").strip()) else None for r in rows)
    pods = Pods(names, _ints(rows, "cpu_milli", path), _ints(rows, "memory_mib", path), count, milli, specs)
    for i in range(len(names)):
        pods.demand(i)  # raises SpecError on a shape the experiment cannot place
    return pods


def typical_model(pods: Pods) -> FragModel:
    """FGD's target workload: the original pods' shapes with the 95 % popularity cut."""
    return FragModel(typical_pods(Counter(pods.demand(i) for i in range(len(pods.names)))))


def arrivals(pods: Pods, nodes: Nodes, seed: int, tune: float = TUNE) -> tuple[np.ndarray, np.ndarray]:
    """The arrival sequence (indices into `pods`) and the node rank of one seed.

    Originals in a uniformly random order, then clones drawn with replacement until
    adding a clone's *per-GPU* milli would pass `tune` x capacity (the simulator's stop
    rule, first failing draw ends it). A workload that already asks more than the target
    is sampled down instead, as the simulator does: random originals are dropped until its
    demand is within it. The rank is a uniform permutation of the nodes: score ties go to
    the smallest rank.
    """
    if not tune > 0:
        raise SpecError("tune", f"must be positive, got {tune}")
    demand, target = int(pods.total.sum()), tune * nodes.capacity
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pods.names))
    if demand > target:
        keep = np.ones(order.size, dtype=bool)
        for j in rng.permutation(order.size).tolist():  # the pods to drop, in a random order
            if demand <= target:
                break
            keep[j] = False
            demand -= int(pods.total[order[j]])
        return order[keep], rng.permutation(len(nodes.names))
    clones: list[int] = []
    stopped = False
    while not stopped:
        for j in rng.integers(0, len(pods.names), size=1024).tolist():
            if demand + int(pods.milli[j]) > target:
                stopped = True
                break
            clones.append(j)
            demand += int(pods.total[j])
    return np.concatenate([order, np.array(clones, dtype=np.int64)]), rng.permutation(len(nodes.names))


class State:
    """Free resources of every node, in rank order (position 0 = rank 0): the experiment's cluster."""

    def __init__(self, nodes: Nodes, rank: np.ndarray) -> None:
        order = np.argsort(rank)  # node indices by rank
        self.names = [nodes.names[i] for i in order]
        self.cpu = nodes.cpu[order].astype(np.float64)  # (N,) free millicores
        self.memory = nodes.memory[order].copy()  # (N,) free MiB
        self.gpu = np.zeros((len(order), WIDTH), dtype=np.int64)  # (N, 8) free milli per GPU
        for pos, i in enumerate(order):
            self.gpu[pos, : nodes.gpus[i]] = MILLI
        self.total = self.gpu.sum(axis=1)  # (N,) free milli per node
        self.whole = (self.gpu == MILLI).sum(axis=1)  # (N,) fully free GPUs
        self.largest = self.gpu.max(axis=1)  # (N,) most free milli on one GPU
        self.gpus = nodes.gpus[order].copy()  # (N,) GPUs per node
        self.models = nodes.models[order] if nodes.models.size else np.full(len(order), "", dtype=object)
        self._allowed: dict[frozenset[str], np.ndarray] = {}  # a gpu_spec -> (N,) nodes of its models
        # (N, 9) GPU pod kinds on each node, for GpuClustering: 0 shared, k a k-GPU pod
        self.kinds = np.zeros((len(order), WIDTH + 1), dtype=bool)
        self.version = np.zeros(len(order), dtype=np.int64)  # (N,) pods placed on the node so far

    def feasible(self, demand: Demand, memory: int) -> np.ndarray:
        """Positions of the nodes that can take the pod (CPU, memory and GPU filters)."""
        ok = (self.cpu >= demand.cpu) & (self.memory >= memory)
        if demand.models is not None and not demand.gpu_free:
            allowed = self._allowed.get(demand.models)
            if allowed is None:
                allowed = self._allowed[demand.models] = np.isin(self.models, list(demand.models))
            ok &= allowed
        if demand.sharing:
            ok &= self.largest >= demand.milli
        elif not demand.gpu_free:
            ok &= self.whole >= demand.count
        return np.flatnonzero(ok)

    def commit(self, pos: int, demand: Demand, memory: int, gpus: tuple[int, ...]) -> None:
        self.cpu[pos] -= demand.cpu
        self.memory[pos] -= memory
        row = self.gpu[pos]
        for k in gpus:
            row[k] -= demand.milli
        self.total[pos] = row.sum()
        self.whole[pos] = (row == MILLI).sum()
        self.largest[pos] = row.max()
        self.version[pos] += 1
        if not demand.gpu_free:
            self.kinds[pos, kind(demand)] = True


def kind(demand: Demand) -> int:
    """GpuClustering's tag of a GPU pod: 0 for a shared GPU, else its GPU count."""
    return 0 if demand.sharing else demand.count


# A policy of the experiment: (state, feasible positions (F,) with F >= 1, demand) -> (position, GPUs).
Chooser = Callable[[State, np.ndarray, Demand], tuple[int, tuple[int, ...]]]


def choose_bestfit(st: State, idx: np.ndarray, demand: Demand) -> tuple[int, tuple[int, ...]]:
    pos = int(idx[0])
    if idx.size > 1:
        pos = int(idx[np.argmax(bestfit_scores(st.cpu[idx], st.total[idx], demand))])
    return pos, bestfit_gpus(st.gpu[pos], demand)


class ChooseFgd:
    """FGD over the typical workload of the original pods, with a per-node score cache.

    A node's score for a pod shape depends on that node's state alone, and a state
    changes only when a pod lands there (`State.version`), so each (node, shape) score
    is computed once per change, by the factory's `fgd_scores`.
    """

    def __init__(self, model: FragModel) -> None:
        self.model = model
        self.columns: dict[Demand, int] = {}  # pod shape -> cache column
        self.at = np.zeros((0, 0), dtype=np.int64)  # (N, K) node version each score was computed at
        self.scores = self.at.copy()  # (N, K)
        self.device = self.at.copy()  # (N, K) device of a shared pod

    def column(self, st: State, demand: Demand) -> int:
        col = self.columns.setdefault(demand, len(self.columns))
        if col >= self.at.shape[1]:  # grow by doubling; -1: never computed
            grow = max(8, self.at.shape[1])
            n = st.version.size
            self.at = np.hstack([self.at.reshape(n, -1), np.full((n, grow), -1)])
            self.scores = np.hstack([self.scores.reshape(n, -1), np.zeros((n, grow), dtype=np.int64)])
            self.device = np.hstack([self.device.reshape(n, -1), np.zeros((n, grow), dtype=np.int64)])
        return col

    def __call__(self, st: State, idx: np.ndarray, demand: Demand) -> tuple[int, tuple[int, ...]]:
        if idx.size == 1 and not demand.sharing:  # a single feasible node is taken unscored
            pos = int(idx[0])
            return pos, bestfit_gpus(st.gpu[pos], demand)
        col = self.column(st, demand)
        stale = idx[self.at[idx, col] != st.version[idx]]
        if stale.size:
            models = st.models[stale] if self.model.bound else None
            scores, device = fgd_scores(self.model, st.cpu[stale], st.gpu[stale], demand, models)
            self.scores[stale, col], self.device[stale, col], self.at[stale, col] = scores, device, st.version[stale]
        best = int(idx[np.argmax(self.scores[idx, col])])  # first maximum = smallest rank
        return best, ((int(self.device[best, col]),) if demand.sharing else bestfit_gpus(st.gpu[best], demand))


def by_score(score: Callable[[State, np.ndarray, Demand], np.ndarray]) -> Chooser:
    """A chooser from an integer score over feasible nodes; GPUs by best fit (the simulator's §3.0)."""

    def choose(st: State, idx: np.ndarray, demand: Demand) -> tuple[int, tuple[int, ...]]:
        pos = int(idx[0]) if idx.size == 1 else int(idx[np.argmax(score(st, idx, demand))])
        return pos, bestfit_gpus(st.gpu[pos], demand)

    return choose


def dotprod_score(st: State, idx: np.ndarray, demand: Demand) -> np.ndarray:
    """The smallest dot product of free (CPU, GPU) and the demand wins (max-normalised)."""
    dot = (st.cpu[idx] / MAXCPU) * (demand.cpu / MAXCPU) + (st.total[idx] / MAXGPU) * (demand.total / MAXGPU)
    return np.floor(100 * (1 - dot / 2)).astype(np.int64)


def gpupacking_score(st: State, idx: np.ndarray, demand: Demand) -> np.ndarray:
    """Tightest partly used GPU (50..100), then opening a free GPU on a used node (33..49), then empty nodes."""
    if demand.gpu_free:
        return np.zeros(idx.size, dtype=np.int64)
    whole = st.whole[idx]
    empty_node = np.maximum(33 - whole, whole)
    if demand.sharing:
        gpu = st.gpu[idx]
        tightest = np.where(gpu >= demand.milli, gpu, 10 * MILLI).min(axis=1)
        used = np.where(tightest == MILLI, 49, np.maximum(100 - tightest // 100, 50))
    else:
        used = np.full(idx.size, max(50 - demand.count, 33))
    return np.where(whole == st.gpus[idx], empty_node, used)


def gpuclustering_score(st: State, idx: np.ndarray, demand: Demand) -> np.ndarray:
    """Nodes already holding only pods of the same kind first, then mixed, then empty, then others."""
    if demand.gpu_free:
        return np.zeros(idx.size, dtype=np.int64)
    kinds = st.kinds[idx]
    same, count = kinds[:, kind(demand)], kinds.sum(axis=1)
    bonus = np.where(same & (count == 1), 75, np.where(same, 50, np.where(count == 0, 25, 0)))
    return (25 * (MAXGPU - st.total[idx])) // MAXGPU + bonus


class ChooseRandom:
    """A uniformly random feasible node; a shared pod on a random device with room."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng([seed, 1])  # its own stream: the arrivals stay the same

    def __call__(self, st: State, idx: np.ndarray, demand: Demand) -> tuple[int, tuple[int, ...]]:
        pos = int(idx[self.rng.integers(idx.size)])
        if demand.sharing:
            room = np.flatnonzero(st.gpu[pos] >= demand.milli)
            return pos, (int(room[self.rng.integers(room.size)]),)
        return pos, bestfit_gpus(st.gpu[pos], demand)


CHOOSERS: dict[str, Callable[[Pods, int], Chooser]] = {
    "random": lambda pods, seed: ChooseRandom(seed),
    "dotprod": lambda pods, seed: by_score(dotprod_score),
    "gpuclustering": lambda pods, seed: by_score(gpuclustering_score),
    "gpupacking": lambda pods, seed: by_score(gpupacking_score),
    "bestfit": lambda pods, seed: choose_bestfit,
    "fgd": lambda pods, seed: ChooseFgd(typical_model(pods)),
}


def chooser(policy: str, pods: Pods, seed: int = 0) -> Chooser:
    """The experiment's policy by name: bestfit and fgd are the factory's; the others the paper's baselines."""
    try:
        return CHOOSERS[policy](pods, seed)
    except KeyError:
        raise UnknownName("openb policy", policy, CHOOSERS) from None


@dataclass(frozen=True, slots=True)
class Run:
    """One replay: per arrival event, cumulative arrived and allocated GPU milli."""

    policy: str
    seed: int
    arrived: np.ndarray  # (E,) milli, failed pods included
    used: np.ndarray  # (E,) milli allocated after the event
    failed: int
    wall_s: float
    cpu_s: float  # process CPU time: the fairer figure on a shared machine

    def curve(self, capacity: int) -> np.ndarray:
        return alloc_curve(self.arrived, self.used, capacity)


def run(policy: str, nodes: Nodes, pods: Pods, seed: int, tune: float = TUNE) -> Run:
    """Replay the seeded arrival sequence of the published protocol under one policy."""
    start, cpu = time.perf_counter(), time.process_time()
    sequence, rank = arrivals(pods, nodes, seed, tune)
    used, failed = replay(chooser(policy, pods, seed), nodes, pods, sequence, rank)
    arrived = np.cumsum(pods.total[sequence])
    return Run(policy, seed, arrived, used, failed, time.perf_counter() - start, time.process_time() - cpu)


def replay(choose: Chooser, nodes: Nodes, pods: Pods, sequence: np.ndarray, rank: np.ndarray) -> tuple[np.ndarray, int]:
    """Try each pod of `sequence` once, in order; none departs, a failed one is dropped.

    Returns the GPU milli allocated after every event (E,) and the number of failed pods.
    """
    st = State(nodes, rank)
    demands = [pods.demand(i) for i in range(len(pods.names))]
    used = np.zeros(sequence.size, dtype=np.int64)
    allocated, failed = 0, 0
    for e, i in enumerate(sequence.tolist()):
        demand, memory = demands[i], int(pods.memory[i])
        idx = st.feasible(demand, memory)
        if idx.size == 0:
            failed += 1
        else:
            pos, gpus = choose(st, idx, demand)
            st.commit(pos, demand, memory, gpus)
            allocated += demand.total
        used[e] = allocated
    return used, failed


def alloc_curve(arrived: np.ndarray, used: np.ndarray, capacity: int) -> np.ndarray:
    """(131,) mean allocation % over the events whose arrived demand rounds to x % (x = 0..130).

    Python's round (halves to even) as the original analysis; an empty bucket takes the
    events of x-1..x+1, and NaN where even those are empty.
    """
    x_of = [round(a / capacity * 100) for a in arrived.tolist()]
    pct = [round(u / capacity * 100, 2) for u in used.tolist()]
    buckets: dict[int, list[float]] = {}
    for x, p in zip(x_of, pct, strict=True):
        buckets.setdefault(x, []).append(p)
    out = np.full(XS, np.nan)
    for x in range(XS):
        vals = buckets.get(x) or [p for d in (-1, 0, 1) for p in buckets.get(x + d, [])]
        if vals:
            out[x] = round(sum(vals) / len(vals), 2)
    return out


def published(folder: Path = DEFAULT_DIR) -> dict[str, dict[int, np.ndarray]]:
    """The published curves: our policy name -> seed -> (131,) allocation %."""
    path = folder / EXPECTED_CSV
    rows = _read_csv(path, ("sc_policy", "seed"))
    names = {v: k for k, v in PUBLISHED.items()}
    out: dict[str, dict[int, np.ndarray]] = {}
    for r in rows:
        if r["sc_policy"] in names:
            curve = np.array([float(r[str(x)]) for x in range(XS)])
            out.setdefault(names[r["sc_policy"]], {})[int(r["seed"])] = curve
    return out


def parse_seeds(text: str) -> list[int]:
    """`42-51` or `42,44,50` -> seeds."""
    try:
        if "-" in text:
            lo, hi = (int(p) for p in text.split("-", 1))
            seeds = list(range(lo, hi + 1))
        else:
            seeds = [int(p) for p in text.split(",")]
    except ValueError:
        raise SpecError("seeds", f"expected 42-51 or 42,43, got {text!r}") from None
    if not seeds:
        raise SpecError("seeds", f"empty range {text!r}")
    return seeds


@dataclass(frozen=True, slots=True)
class Summary:
    """Mean (min, max) over seeds of the allocation % at x = 100 and 130, ours and published."""

    policy: str
    ours: dict[int, tuple[float, float, float]]
    theirs: dict[int, tuple[float, float, float]]
    wall_s: float  # mean per run
    cpu_s: float  # mean process CPU time per run


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    return float(np.mean(values)), float(np.min(values)), float(np.max(values))


def experiment(policy: str, seeds: Sequence[int], folder: Path = DEFAULT_DIR) -> Summary:
    """Run one policy over `seeds` and set it next to the published curves."""
    nodes, pods = load_nodes(folder), load_pods(folder)
    runs = [run(policy, nodes, pods, s) for s in seeds]
    curves = [r.curve(nodes.capacity) for r in runs]
    theirs = published(folder).get(policy, {}) if (folder / EXPECTED_CSV).is_file() else {}
    pub = list(theirs.values())
    return Summary(
        policy,
        {x: spread([c[x] for c in curves]) for x in (100, 130)},
        {x: spread([c[x] for c in pub]) for x in (100, 130)} if pub else {},
        float(np.mean([r.wall_s for r in runs])),
        float(np.mean([r.cpu_s for r in runs])),
    )


def describe(s: Summary) -> str:
    def cell(v: tuple[float, float, float] | None) -> str:
        return f"{v[0]:6.2f} ({v[1]:.2f}-{v[2]:.2f})" if v else "   n/a"

    return (
        f"{s.policy:13} x=100 {cell(s.ours[100])} published {cell(s.theirs.get(100))}   "
        f"x=130 {cell(s.ours[130])} published {cell(s.theirs.get(130))}   {s.wall_s:5.1f} s/run ({s.cpu_s:.1f} s CPU)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aifactory.twin.openb", description=__doc__.splitlines()[0])
    parser.add_argument("--policy", action="append", help=f"{', '.join(CHOOSERS)} (repeatable; default bestfit, fgd)")
    parser.add_argument("--seeds", default="42-51", help="42-51 or 42,43 (default 42-51)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DIR, help="folder of the openb CSV files")
    args = parser.parse_args(argv)
    try:
        seeds = parse_seeds(args.seeds)
        for policy in args.policy or ["bestfit", "fgd"]:
            print(describe(experiment(policy, seeds, args.data)), flush=True)
    except AifactoryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
