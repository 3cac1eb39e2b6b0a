"""Where a job's GPUs go: placement policies, found by name in a registry.

A placement policy looks at the candidate nodes (already filtered to the job's
pool) and returns a Placement or None; it never changes the cluster. A node without
the CPU and memory the job asks for is not `eligible` (every policy checks it); the
view adds the host request to the placement it reserves. Multi-GPU
jobs stay on one node when one has room; a `multi_node` job that fits on no single
node is spread over the fewest nodes (largest free blocks first).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from aifactory.core.cluster import Node
from aifactory.core.errors import UnknownName
from aifactory.core.job import MILLI, JobSpec, Placement, model_allows


class PlacementPolicy(Protocol):
    name: str

    def place(self, spec: JobSpec, nodes: Sequence[Node]) -> Placement | None: ...


def eligible(spec: JobSpec, node: Node) -> bool:
    """Up, with GPUs of the job's model, and room for the CPU and memory it asks for on each node."""
    return (
        node.up
        and node.gpu_count > 0
        # The usual cases inline (this runs for every candidate node); `A|B` through model_allows.
        and (spec.gpu_model is None or spec.gpu_model == node.gpu_model or model_allows(spec.gpu_model, node.gpu_model))
        and (not (spec.cpu_milli or spec.memory_mib) or node.host_fits(spec.cpu_milli, spec.memory_mib))
    )


def place_host_only(spec: JobSpec, nodes: Sequence[Node]) -> Placement | None:
    """A job with no GPU: a node without GPUs first (GPU nodes keep their CPUs for GPU jobs), then
    the one with the least free CPU that fits (best fit, so big holes stay whole); ties to the first."""
    best: Node | None = None
    best_key: tuple[bool, int, int] | None = None
    for node in nodes:
        if not node.up or not node.host_fits(spec.cpu_milli, spec.memory_mib):
            continue
        key = (node.gpu_count > 0, node.cpu_free if node.cpu_milli else 1 << 62, node.memory_free)
        if best_key is None or key < best_key:
            best, best_key = node, key
    return None if best is None else Placement(((best.name, ()),))


def lowest_free(node: Node, count: int) -> tuple[int, ...]:
    """The `count` lowest-indexed fully free GPUs of a node."""
    out: list[int] = []
    for g, f in enumerate(node.free):
        if f == MILLI:
            out.append(g)
            if len(out) == count:
                break
    return tuple(out)


def gang(spec: JobSpec, nodes: Sequence[Node]) -> Placement | None:
    """A multi-node gang on the fewest nodes: largest free blocks first, all or nothing."""
    need = spec.whole_gpus
    chosen: list[tuple[str, tuple[int, ...]]] = []
    for node in sorted((n for n in nodes if eligible(spec, n)), key=lambda n: -n.free_whole):
        if node.free_whole == 0:
            break
        take = min(need, node.free_whole)
        chosen.append((node.name, lowest_free(node, take)))
        need -= take
        if need == 0:
            return Placement(tuple(chosen))
    return None


class _ScoredPlacement:
    """Best node by a score over (free whole GPUs) or (free milli on a GPU); ties to the first."""

    name = "base"

    def node_key(self, free_whole: int) -> int:
        raise NotImplementedError

    def gpu_key(self, free: int) -> int:
        raise NotImplementedError

    def place(self, spec: JobSpec, nodes: Sequence[Node]) -> Placement | None:
        if spec.fractional:
            return self._place_fraction(spec, nodes)
        need = spec.whole_gpus
        best: Node | None = None
        best_key = 0
        for node in nodes:
            if node.free_whole >= need and eligible(spec, node):
                key = self.node_key(node.free_whole)
                if best is None or key < best_key:
                    best, best_key = node, key
        if best is not None:
            return Placement(((best.name, lowest_free(best, need)),))
        if spec.multi_node:
            return gang(spec, nodes)
        return None

    def _place_fraction(self, spec: JobSpec, nodes: Sequence[Node]) -> Placement | None:
        best: tuple[str, int, int] | None = None  # node, gpu, milli
        best_key = 0
        for node in nodes:
            if not eligible(spec, node):
                continue
            milli = spec.milli_on(node.gpu_memory_mib)
            for g, free in enumerate(node.free):
                if free >= milli:
                    key = self.gpu_key(free)
                    if best is None or key < best_key:
                        best, best_key = (node.name, g, milli), key
        if best is None:
            return None
        return Placement(((best[0], (best[1],)),), milli=best[2])


class Pack(_ScoredPlacement):
    """Least fragmentation: the fullest node (or GPU) that still fits the job."""

    name = "pack"
    scope = "fullest"  # the view may hand over only the fullest fitting node (see SchedulerView.room)

    def node_key(self, free_whole: int) -> int:
        return free_whole

    def gpu_key(self, free: int) -> int:
        return free


class Spread(_ScoredPlacement):
    """Balance load: the emptiest node (or GPU)."""

    name = "spread"
    scope = "emptiest"

    def node_key(self, free_whole: int) -> int:
        return -free_whole

    def gpu_key(self, free: int) -> int:
        return -free


def fewest_nodes(need: int, nodes: Sequence[Node]) -> list[tuple[Node, int]] | None:
    """(node, GPUs taken) on the fewest nodes: biggest blocks while the rest is bigger than any
    one block, then the smallest block that holds the rest (keeps big blocks whole)."""
    blocks = sorted((n for n in nodes if n.free_whole > 0), key=lambda n: -n.free_whole)
    chosen: list[tuple[Node, int]] = []
    while need > 0 and blocks:
        fits = [n for n in blocks if n.free_whole >= need]
        if fits:
            chosen.append((fits[-1], need))
            return chosen
        node = blocks.pop(0)
        chosen.append((node, node.free_whole))
        need -= node.free_whole
    return chosen if need == 0 else None


class Topology:
    """One node (fullest that fits), else the fewest nodes of one rack, else the fewest nodes anywhere."""

    name = "topology"
    scope = "fullest"  # a single node when one fits; all nodes with room for a gang otherwise

    def place(self, spec: JobSpec, nodes: Sequence[Node]) -> Placement | None:
        if spec.fractional or not spec.multi_node:
            return Pack().place(spec, nodes)
        need = spec.whole_gpus
        ok = [n for n in nodes if eligible(spec, n)]
        fit = [n for n in ok if n.free_whole >= need]
        if fit:
            node = min(fit, key=lambda n: n.free_whole)
            return Placement(((node.name, lowest_free(node, need)),))
        racks: dict[str, list[Node]] = {}
        for n in ok:
            if n.rack is not None:
                racks.setdefault(n.rack, []).append(n)
        best: list[tuple[Node, int]] | None = None
        for rack in sorted(racks):
            found = fewest_nodes(spec.whole_gpus, racks[rack])
            if found is not None and (best is None or len(found) < len(best)):
                best = found
        if best is None:
            best = fewest_nodes(spec.whole_gpus, ok)
        if best is None:
            return None
        return Placement(tuple((n.name, lowest_free(n, take)) for n, take in best))


PLACEMENTS: dict[str, Callable[[], PlacementPolicy]] = {"pack": Pack, "spread": Spread, "topology": Topology}
# NumPy-based, so imported when first asked for (keeps `aifactory --help` instant).
PLACEMENTS["bestfit"] = lambda: __import__("aifactory.core.placement_bestfit", fromlist=["BestFit"]).BestFit()
PLACEMENTS["fgd"] = lambda: __import__("aifactory.core.placement_fgd", fromlist=["FGD"]).FGD()


def register_placement(name: str, factory: Callable[[], PlacementPolicy]) -> None:
    PLACEMENTS[name] = factory


def get_placement(name: str) -> PlacementPolicy:
    try:
        return PLACEMENTS[name]()
    except KeyError:
        raise UnknownName("placement policy", name, PLACEMENTS) from None
