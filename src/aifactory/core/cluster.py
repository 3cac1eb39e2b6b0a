"""Nodes, their GPUs, and the fraction-aware allocation map.

Every GPU has 1000 milli-GPU of capacity. A whole-GPU job takes all 1000 of each
GPU it holds; a fractional job takes part of one GPU. The map never hands out more
than a GPU has: that is invariant 1, checked on every allocation.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields

from aifactory.core.errors import NotFound, SpecError
from aifactory.core.job import MILLI, Placement, model_allows


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """What a node is (its capacity), as the store, traces and scenarios carry it. The allocation
    state lives in `Node`, which the `Cluster` builds from a spec."""

    name: str
    gpu_count: int
    gpu_model: str = "virtual"
    gpu_memory_mib: int = 0  # per GPU (0: unknown)
    pool: str = "default"
    cpu_milli: int = 0  # host CPU, 1000 = one core (0: not tracked)
    memory_mib: int = 0  # host memory (0: not tracked)
    rack: str | None = None  # nodes in one rack share a fast network (topology placement)


NODE_FIELDS = tuple(f.name for f in fields(NodeSpec))


@dataclass(slots=True)
class Node:
    """A node's capacity (the fields of `NodeSpec`, flat: the scheduler reads them on every pass)
    and what of it is held now."""

    name: str
    gpu_count: int
    gpu_model: str = "virtual"
    gpu_memory_mib: int = 0
    pool: str = "default"
    cpu_milli: int = 0  # 0: not tracked
    memory_mib: int = 0
    free: list[int] = field(default_factory=list)  # milli free per GPU
    # job id -> milli held, per GPU: who holds each GPU.
    holders: list[dict[int, int]] = field(default_factory=list)
    free_whole: int = 0  # GPUs with all 1000 milli free
    up: bool = True  # alive and not drained: may take work (read on every pass; set by `set_state`)
    alive: bool = True  # False: the machine is gone (its jobs were lost)
    drained: bool = False  # an operator took it out of scheduling
    rack: str | None = None  # nodes in one rack share a fast network (topology placement)
    # Host resources not yet held (milli-cores, MiB); meaningful only where the capacity is tracked (> 0).
    cpu_free: int = field(default=0, init=False)
    memory_free: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.gpu_count < 0:
            raise SpecError("gpu_count", f"node {self.name}: negative GPU count {self.gpu_count}")
        if self.cpu_milli < 0 or self.memory_mib < 0:
            raise SpecError("cpus" if self.cpu_milli < 0 else "memory", f"node {self.name}: negative capacity")
        self.cpu_free = self.cpu_milli
        self.memory_free = self.memory_mib
        if not self.free:
            self.free = [MILLI] * self.gpu_count
            self.holders = [{} for _ in range(self.gpu_count)]
        self.free_whole = sum(1 for f in self.free if f == MILLI)

    @classmethod
    def of(cls, spec: NodeSpec) -> Node:
        """An empty node of this capacity."""
        return cls(**{name: getattr(spec, name) for name in NODE_FIELDS})

    @property
    def spec(self) -> NodeSpec:
        return NodeSpec(**{name: getattr(self, name) for name in NODE_FIELDS})

    def set_state(self, alive: bool | None = None, drained: bool | None = None) -> None:
        if alive is not None:
            self.alive = alive
        if drained is not None:
            self.drained = drained
        self.up = self.alive and not self.drained

    @property
    def state(self) -> str:
        """ "up", "drained", "down" or "down, drained" (what `nodes` shows)."""
        if self.up:
            return "up"
        return "drained" if self.alive else "down, drained" if self.drained else "down"

    @property
    def holds_nothing(self) -> bool:
        return (
            self.free_whole == self.gpu_count
            and self.cpu_free == self.cpu_milli
            and self.memory_free == self.memory_mib
        )

    @property
    def free_milli(self) -> int:
        return sum(self.free)

    def host_fits(self, cpu_milli: int, memory_mib: int) -> bool:
        """Is there this much CPU and memory free here? (An untracked resource always fits.)"""
        return (not self.cpu_milli or cpu_milli <= self.cpu_free) and (
            not self.memory_mib or memory_mib <= self.memory_free
        )


class Cluster:
    """The nodes of the floor and which job holds which part of which GPU."""

    def __init__(self, nodes: Iterable[Node | NodeSpec]) -> None:
        """The nodes as given, or empty new ones for specs (a scenario's nodes serve many replays)."""
        self.nodes: dict[str, Node] = {}
        for item in nodes:
            node = Node.of(item) if isinstance(item, NodeSpec) else item
            if node.name in self.nodes:
                raise SpecError("nodes", f"duplicate node name {node.name!r}")
            self.nodes[node.name] = node
        self.allocations: dict[int, Placement] = {}
        self._pools: dict[str, list[Node]] = {}
        self.slots: dict[str, int] = {}  # pool -> GPUs of its nodes, up or not (a pool's share of the base power)
        self.held_milli: dict[str, int] = {}  # pool -> milli-GPUs held on its nodes, by any job (its power draw)
        # (pool, model) -> nodes by number of fully free GPUs: level k holds the nodes with
        # k free whole GPUs (insertion-ordered, so ties break the same way every run).
        self._levels: dict[tuple[str, str], list[dict[str, Node]]] = {}
        # (pool, model) -> nodes with a partly used GPU (where fractions can share).
        self._partial: dict[tuple[str, str], dict[str, Node]] = {}
        # (pool, model) query -> the matching level lists; the (pool, model) keys are fixed
        # here and each level list is updated in place, so a query's answer never goes stale.
        self._groups: dict[tuple[str | None, str | None], list[list[dict[str, Node]]]] = {}
        for node in self.nodes.values():
            self._index(node)

    def _index(self, node: Node) -> None:
        self._pools.setdefault(node.pool, []).append(node)
        self.slots[node.pool] = self.slots.get(node.pool, 0) + node.gpu_count
        self.held_milli.setdefault(node.pool, 0)
        levels = self._levels.setdefault((node.pool, node.gpu_model), [])
        while len(levels) <= node.gpu_count:
            levels.append({})
        levels[node.free_whole][node.name] = node
        self._partial.setdefault((node.pool, node.gpu_model), {})
        self._repartial(node)

    def add(self, spec: NodeSpec) -> Node:
        """A node joins: a new, empty node of this capacity; or a known one's capacity changes,
        which it may only while it holds nothing (SpecError otherwise). Alive either way; a known
        node stays drained if it was."""
        old = self.nodes.get(spec.name)
        if old is not None:
            if old.spec == spec:
                old.set_state(alive=True)
                return old
            if not old.holds_nothing:
                raise SpecError("nodes", f"node {spec.name} changed capacity while jobs hold part of it")
            self._unindex(old)
        node = Node.of(spec)
        if old is not None:
            node.set_state(drained=old.drained)
        self.nodes[spec.name] = node
        self._groups.clear()  # a (pool, model) group may be new: queries are rebuilt
        self._index(node)
        return node

    def _unindex(self, node: Node) -> None:
        self._pools[node.pool].remove(node)
        self.slots[node.pool] -= node.gpu_count
        if not self._pools[node.pool]:
            del self._pools[node.pool], self.slots[node.pool], self.held_milli[node.pool]  # it held nothing
        self._levels[(node.pool, node.gpu_model)][node.free_whole].pop(node.name, None)
        self._partial[(node.pool, node.gpu_model)].pop(node.name, None)
        del self.nodes[node.name]

    @classmethod
    def virtual(
        cls,
        gpus: int,
        nodes: int = 1,
        model: str = "virtual",
        memory_mib: int = 0,
        cpu_milli: int = 0,
        host_memory_mib: int = 0,
    ) -> Cluster:
        """`nodes` nodes with `gpus` GPUs each (for `aifactory up --gpus N` and tests); `memory_mib` is
        per GPU, `cpu_milli`/`host_memory_mib` per node (0: not tracked)."""
        return cls(
            Node(
                name=f"node{i}",
                gpu_count=gpus,
                gpu_model=model,
                gpu_memory_mib=memory_mib,
                cpu_milli=cpu_milli,
                memory_mib=host_memory_mib,
            )
            for i in range(nodes)
        )

    # -- queries -----------------------------------------------------------------------

    def node(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise NotFound(f"unknown node {name!r}") from None

    def pool_nodes(self, pool: str | None) -> list[Node]:
        """Nodes a job bound to `pool` may use (all nodes when None)."""
        if pool is None:
            return list(self.nodes.values())
        return self._pools.get(pool, [])

    @property
    def pools(self) -> list[str]:
        return list(self._pools)

    def total_gpus(self, pool: str | None = None) -> int:
        return sum(n.gpu_count for n in self.pool_nodes(pool) if n.up)

    def free_gpus(self, pool: str | None = None) -> float:
        return sum(n.free_milli for n in self.pool_nodes(pool) if n.up) / MILLI

    def largest_node(self, pool: str | None = None, model: str | None = None) -> int:
        return max(
            (n.gpu_count for n in self.pool_nodes(pool) if n.up and model_allows(model, n.gpu_model)),
            default=0,
        )

    def groups(self, pool: str | None, model: str | None) -> list[list[dict[str, Node]]]:
        """The free-block levels of every (pool, model) group a job bound to `pool`/`model` may use."""
        found = self._groups.get((pool, model))
        if found is None:
            found = self._groups[(pool, model)] = [
                levels
                for (p, m), levels in sorted(self._levels.items())
                if (pool is None or p == pool) and model_allows(model, m)
            ]
        return found

    def max_block(self, pool: str | None, model: str | None = None) -> int:
        """Most fully free GPUs on one node (up or not: callers check `up`)."""
        best = 0
        for levels in self.groups(pool, model):
            for k in range(len(levels) - 1, best, -1):
                if levels[k]:
                    best = k
                    break
        return best

    def whole_free(self, pool: str | None, model: str | None = None) -> int:
        """Fully free GPUs in the pool (of the model)."""
        return sum(k * len(nodes) for levels in self.groups(pool, model) for k, nodes in enumerate(levels))

    def candidates(self, pool: str | None, model: str | None, floor: int) -> list[Node]:
        """Nodes with at least `floor` fully free GPUs, fewest free first (ties: longest at that level)."""
        out: list[Node] = []
        groups = self.groups(pool, model)
        top = max((len(levels) for levels in groups), default=0)
        for k in range(max(floor, 0), top):
            for levels in groups:
                if k < len(levels):
                    out.extend(levels[k].values())
        return out

    def partial_nodes(self, pool: str | None, model: str | None) -> list[Node]:
        """Nodes with a GPU that is partly used (0 < free < 1000 milli)."""
        return [
            n
            for (p, m), nodes in sorted(self._partial.items())
            if (pool is None or p == pool) and model_allows(model, m)
            for n in nodes.values()
        ]

    def has_partial(self, pool: str | None) -> bool:
        """Is any GPU of the pool partly used (room for a fraction without a whole free GPU)?"""
        return any(nodes for (p, _m), nodes in self._partial.items() if pool is None or p == pool)

    def first_at(self, pool: str | None, model: str | None, floor: int, fullest: bool) -> Node | None:
        """The first up node with at least `floor` free whole GPUs: of the fewest such (fullest) or the most."""
        groups = self.groups(pool, model)
        low = max(floor, 0)
        if len(groups) == 1:  # one (pool, model) group, the usual case: walk its levels directly
            levels = groups[0]
            for k in range(low, len(levels)) if fullest else range(len(levels) - 1, low - 1, -1):
                for node in levels[k].values():
                    if node.up:
                        return node
            return None
        top = max((len(levels) for levels in groups), default=0)
        order = range(low, top) if fullest else range(top - 1, low - 1, -1)
        for k in order:
            for levels in groups:
                if k < len(levels):
                    for node in levels[k].values():
                        if node.up:
                            return node
        return None

    def _relevel(self, node: Node, old: int, milli: int) -> None:
        if old != node.free_whole:
            levels = self._levels[(node.pool, node.gpu_model)]
            del levels[old][node.name]
            levels[node.free_whole][node.name] = node
        if milli < MILLI:  # whole GPUs go from all free to none and back: never partly used
            self._repartial(node)

    def _repartial(self, node: Node) -> None:
        partial = self._partial[(node.pool, node.gpu_model)]
        if any(0 < f < MILLI for f in node.free):
            partial[node.name] = node
        else:
            partial.pop(node.name, None)

    def models(self) -> set[str]:
        return {n.gpu_model for n in self.nodes.values()}

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    # -- the allocation map --------------------------------------------------------------

    def allocate(self, job_id: int, placement: Placement) -> None:
        """Give `placement` to `job_id`; refuse (and change nothing) if it over-commits."""
        if job_id in self.allocations:
            raise ValueError(f"job {job_id} already holds {self.allocations[job_id].describe()}")
        milli = placement.milli
        for name, idx in placement.parts:
            node = self.node(name)
            for g in idx:
                if not 0 <= g < node.gpu_count:
                    raise ValueError(f"node {name} has no GPU {g}")
                if node.free[g] < milli:
                    raise ValueError(f"GPU {name}:{g} has {node.free[g]} milli free, job {job_id} needs {milli}")
            if (placement.cpu_milli or placement.memory_mib) and not node.host_fits(
                placement.cpu_milli, placement.memory_mib
            ):
                raise ValueError(
                    f"node {name} has {node.cpu_free} milli-CPU and {node.memory_free} MiB free, job {job_id} needs "
                    f"{placement.cpu_milli} and {placement.memory_mib}"
                )
        cpu, mem = placement.cpu_milli, placement.memory_mib
        for name, idx in placement.parts:
            node = self.nodes[name]
            if cpu or mem:
                node.cpu_free -= cpu
                node.memory_free -= mem
            old = node.free_whole
            for g in idx:
                if node.free[g] == MILLI:
                    node.free_whole -= 1
                node.free[g] -= milli
                node.holders[g][job_id] = milli
            self.held_milli[node.pool] += milli * len(idx)
            self._relevel(node, old, milli)
        self.allocations[job_id] = placement

    def release(self, job_id: int) -> Placement | None:
        placement = self.allocations.pop(job_id, None)
        if placement is None:
            return None
        for name, idx in placement.parts:
            node = self.nodes[name]
            if placement.cpu_milli or placement.memory_mib:
                node.cpu_free += placement.cpu_milli
                node.memory_free += placement.memory_mib
            old = node.free_whole
            for g in idx:
                node.free[g] += placement.milli
                del node.holders[g][job_id]
                if node.free[g] == MILLI:
                    node.free_whole += 1
            self.held_milli[node.pool] -= placement.milli * len(idx)
            self._relevel(node, old, placement.milli)
        return placement
