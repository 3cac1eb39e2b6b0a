"""Choosing preemption victims: free exactly enough room for one waiting job, losing the least work.

The search is placement-aware. For a job that must sit on one node it looks node by
node, taking that node's candidates cheapest first until the job would fit there,
and keeps the cheapest node; a multi-node gang looks at the pool as a whole. GPUs
held by jobs already stopping count as free, so a job waiting on earlier victims
does not preempt more. Cost of a victim = GPU-seconds of work since its last
checkpoint (or start): the least progress lost; ties go to the shortest running.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from aifactory.core.cluster import Cluster, Node
from aifactory.core.job import MILLI, Job
from aifactory.core.placement import eligible


@dataclass(frozen=True, slots=True)
class Victims:
    jobs: tuple[Job, ...]  # to preempt now (empty: stopping jobs already make room; wait)
    node: str | None  # where the room will be (None: a multi-node gang)


def work_at_risk(job: Job, now: float) -> tuple[float, float]:
    """(GPU-seconds since the last checkpoint or start, seconds running): the sort key of victims."""
    started = job.started_at if job.started_at is not None else now
    since = max(started, job.checkpoint_at) if job.checkpoint_at is not None else started
    gpus = job.placement.gpus if job.placement is not None else 0.0
    return ((now - since) * gpus, now - started)


def _free_after(node: Node, leaving: set[int]) -> list[int]:
    """Milli free per GPU of `node` once every job in `leaving` is gone."""
    out = []
    for g, free in enumerate(node.free):
        for job_id, milli in node.holders[g].items():
            if job_id in leaving:
                free += milli
        out.append(free)
    return out


def _fits(job: Job, nodes: Sequence[Node], leaving: set[int]) -> bool:
    spec = job.spec
    if spec.fractional:
        return any(
            f >= spec.milli_on(n.gpu_memory_mib) for n in nodes if eligible(spec, n) for f in _free_after(n, leaving)
        )
    whole = [sum(1 for f in _free_after(n, leaving) if f == MILLI) for n in nodes if eligible(spec, n)]
    if spec.multi_node:
        return sum(whole) >= spec.whole_gpus
    return any(w >= spec.whole_gpus for w in whole)


def claim_stopping(job: Job, cluster: Cluster, pool: str | None, stopping: Sequence[Job]) -> list[Job] | None:
    """The fewest of the jobs already stopping whose exit makes room for `job` (None: they cannot)."""
    if not stopping:
        return None
    gone = {j.id for j in stopping}
    if job.spec.multi_node:
        nodes: Sequence[Node] = cluster.pool_nodes(pool)
    else:
        names = sorted({name for j in stopping if j.placement is not None for name in j.placement.nodes})
        nodes = [cluster.nodes[n] for n in names if pool is None or cluster.nodes[n].pool == pool]
    if not _fits(job, nodes, gone):
        return None
    return list(_prune(job, nodes, gone, list(stopping)))


def find_victims(
    job: Job,
    cluster: Cluster,
    pool: str | None,
    candidates: Iterable[Job],
    stopping: Sequence[Job],
    now: float,
    can_take: Callable[[Job, list[Job]], bool],
) -> Victims | None:
    """The cheapest set of `candidates` whose preemption lets `job` fit (None: no set does).

    `can_take(victim, taken)` says whether one more victim may be taken given those
    already taken (a project may only lose what it borrowed).
    """
    gone = {j.id for j in stopping}
    ranked = sorted(candidates, key=lambda j: (*work_at_risk(j, now), j.id))
    if job.spec.multi_node:
        return _search(job, cluster.pool_nodes(pool), ranked, gone, can_take, None)
    by_node: dict[str, list[Job]] = {}
    for victim in ranked:
        for name in victim.placement.nodes if victim.placement is not None else ():
            by_node.setdefault(name, []).append(victim)
    for stopper in stopping:
        for name in stopper.placement.nodes if stopper.placement is not None else ():
            by_node.setdefault(name, [])
    best: tuple[float, Victims] | None = None
    need = job.spec.whole_gpus
    for name in sorted(by_node):
        node = cluster.nodes[name]
        if (pool is not None and node.pool != pool) or not eligible(job.spec, node):
            continue
        if need and node.free_whole + _held_on(node.name, by_node[name], stopping) < need:
            continue  # even losing every candidate here would not free enough whole GPUs
        found = _search(job, [node], by_node[name], gone, can_take, name)
        if found is not None:
            cost = sum(work_at_risk(v, now)[0] for v in found.jobs)
            if best is None or cost < best[0]:
                best = (cost, found)
    return best[1] if best is not None else None


def _held_on(name: str, *groups: Iterable[Job]) -> int:
    """GPUs the given jobs hold on node `name` (an upper bound on what stopping them frees)."""
    return sum(len(idx) for jobs in groups for j in jobs if j.placement for n, idx in j.placement.parts if n == name)


def _search(
    job: Job,
    nodes: Sequence[Node],
    ranked: list[Job],
    stopping: set[int],
    can_take: Callable[[Job, list[Job]], bool],
    node: str | None,
) -> Victims | None:
    leaving = set(stopping)
    taken: list[Job] = []
    if _fits(job, nodes, leaving):
        return Victims((), node)
    for victim in ranked:
        if victim.id in leaving or not can_take(victim, taken):
            continue
        taken.append(victim)
        leaving.add(victim.id)
        if _fits(job, nodes, leaving):
            return Victims(_prune(job, nodes, leaving, taken), node)
    return None


def _prune(job: Job, nodes: Sequence[Node], leaving: set[int], taken: list[Job]) -> tuple[Job, ...]:
    """Drop victims the job does not need after all (most expensive first): preempt only what is needed."""
    kept = list(taken)
    for victim in reversed(taken):
        leaving.discard(victim.id)
        if _fits(job, nodes, leaving):
            kept.remove(victim)
        else:
            leaving.add(victim.id)
    return tuple(kept)
