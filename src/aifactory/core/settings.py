"""The core's settings and the capacity figures it caches: plain values, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FactorySettings:
    policy: str = "fairshare"
    placement: str = "pack"
    kill_grace_s: float = 10.0  # SIGTERM -> SIGKILL on cancel and time limit
    preempt_grace_s: float = 30.0  # time a victim gets to checkpoint
    use_pools: bool = True  # False: ignore projects' node pools (the twin's --no-pools)
    min_runtime_s: float = 60.0  # a job this young is never a preemption victim
    reclaim_retry_s: float = 10.0  # a reclaim that found no victims is searched again after this long
    half_life_s: float = 86400.0  # fair-share usage history half-life (0: no history)
    history_weight: float = 1.0  # how much recent over-quota use counts against a project
    backfill_depth: int = 200  # pending jobs the backfill policy looks at past the blocked head
    max_attempts: int = 3  # a job whose node died is requeued until it has started this many times
    # Tiresias LAS: attained-service thresholds (GPU-seconds) between its priority queues.
    las_thresholds_gpu_s: tuple[float, ...] = (3600.0, 36000.0)
    # A facility power budget: a job whose start would push the estimated IT draw past it waits.
    # Estimated draw = power_base_w (the floor with nothing held) + GPUs held x power_per_gpu_w.
    power_budget_w: float | None = None
    power_base_w: float = 0.0
    power_per_gpu_w: float = 700.0
    # Budgets of node pools (pool, W): a pool's base is its share of power_base_w by GPU slots.
    pool_power_budgets_w: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Capacity:
    nodes: int
    largest: int  # GPUs on the biggest node
    total: int
    biggest_mib: int  # memory of the biggest GPU
    # Host resources of the nodes that track them (0: none does): totals and the biggest node's.
    cpu_milli: int = 0
    memory_mib: int = 0
    largest_cpu: int = 0
    largest_memory: int = 0
