"""What-if: nodes fail at a published rate and come back after a repair; jobs resume from checkpoints.

Failures arrive per node as a Poisson process (seeded, so a replay repeats) at `per_gpu_day`
failures per GPU-day times the node's GPUs; each takes the node down (its jobs are lost back to
their last checkpoint, `--checkpoint-every`) for `repair_s`. The default rate is Llama 3 405B's:
419 unexpected interruptions in a 54-day snapshot on 16,384 H100s (Dubey et al. 2024, section
3.3.4), 4.7e-4 per GPU-day. The repair time is an assumption. Goodput is the share of GPU time
held that was not lost.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from aifactory.core.errors import SpecError
from aifactory.core.events import NodeEvent, NodeState
from aifactory.twin.traces.format import Scenario

LLAMA3_PER_GPU_DAY = 419 / (54 * 16_384)
LLAMA3_SOURCE = "Llama 3 405B: 419 unexpected interruptions in 54 days on 16,384 H100 (Dubey et al. 2024, 3.3.4)"
REPAIR_SOURCE = "assumed: a node swapped or repaired and back in service"


def parse_rate(text: str) -> float:
    """`llama3` (the published rate) or failures per GPU-day as a number."""
    if text.strip().lower() == "llama3":
        return LLAMA3_PER_GPU_DAY
    try:
        rate = float(text)
    except ValueError:
        rate = -1.0
    if not 0 < rate < 1:
        raise SpecError("failures", f"{text!r}: expected llama3, or failures per GPU-day between 0 and 1")
    return rate


def with_failures(scenario: Scenario, per_gpu_day: float, repair_s: float, seed: int = 0) -> Scenario:
    """`scenario` with node failures and repairs added to its node events, over its arrivals' span."""
    if not scenario.jobs or per_gpu_day <= 0:
        return scenario
    if not repair_s > 0:
        raise SpecError("repair", f"must be longer than 0, got {repair_s}")
    start = min(j.submit_time for j in scenario.jobs)
    end = max(j.submit_time for j in scenario.jobs)
    rng = np.random.default_rng(seed)
    events: list[tuple[float, NodeEvent]] = []
    for node in scenario.nodes:
        rate_s = per_gpu_day * node.gpu_count / 86400  # failures per second of this node
        if rate_s <= 0:
            continue
        t = start + rng.exponential(1 / rate_s)
        while t < end:
            events.append((t, NodeState(node.name, up=False)))
            events.append((t + repair_s, NodeState(node.name, up=True)))
            t += repair_s + rng.exponential(1 / rate_s)
    merged = sorted([*scenario.node_events, *events], key=lambda e: e[0])
    return replace(scenario, node_events=merged)
