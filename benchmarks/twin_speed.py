"""Replay speed of the twin on the Philly study window (68,503 jobs, 11 pools, 2,816 GPUs).

Two replays, one process: `fifo` with strict node pools (each VC on its own nodes) and
`fairshare` with borrowing over the same GPUs (one shared pool, VC quotas guaranteed,
idle GPUs lent and reclaimed). Prints wall time, jobs/s and events/s of each, the
peak RSS, and the headline: mean wait and JCT under strict pools against fair share.
Targets on the 2-core CI box: fifo <= 3 s, fairshare <= 10 s. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from dataclasses import replace

from aifactory.core.factory import FactorySettings
from aifactory.twin.replay import RunResult, TwinSettings, replay
from aifactory.twin.traces import philly
from aifactory.twin.traces.format import Scenario


def run(scenario: Scenario, policy: str, use_pools: bool) -> tuple[RunResult, float]:
    """One replay; returns it with the CPU seconds it took (the box is shared: CPU time is the steadier figure)."""
    settings = TwinSettings(replace(FactorySettings(), policy=policy, use_pools=use_pools))
    cpu = time.process_time()
    result = replay(scenario, settings)
    cpu = time.process_time() - cpu
    s = result.summary
    print(
        f"{policy:>9} pools={use_pools!s:5}  wall {result.wall_s:6.2f} s  cpu {cpu:6.2f} s  "
        f"{len(scenario.jobs) / result.wall_s:9,.0f} jobs/s  {result.events / result.wall_s:9,.0f} events/s  "
        f"mean wait to first start {s['first_wait_s_mean']:9,.0f} s  mean JCT {s['jct_s_mean']:9,.0f} s  "
        f"p99 wait {s['first_wait_s_p99']:9,.0f} s  preemptions {s['preemptions']}"
    )
    return result, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="replay only the first N jobs")
    args = parser.parse_args()
    t0 = time.perf_counter()
    scenario = philly.load(limit=args.limit)
    load_s = time.perf_counter() - t0
    gpus = sum(n.gpu_count for n in scenario.nodes)
    print(f"philly: {len(scenario.jobs):,} jobs, {len(scenario.nodes)} nodes, {gpus:,} GPUs, loaded in {load_s:.2f} s")
    fifo, fifo_cpu = run(scenario, "fifo", use_pools=True)
    fair, fair_cpu = run(scenario, "fairshare", use_pools=False)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    f, g = fifo.summary, fair.summary
    print(
        f"headline: strict pools (fifo) mean wait {f['first_wait_s_mean'] / 3600:.2f} h, mean JCT {f['jct_s_mean'] / 3600:.2f} h"
        f" | fairshare with borrowing mean wait {g['first_wait_s_mean'] / 3600:.2f} h, mean JCT {g['jct_s_mean'] / 3600:.2f} h"
    )
    print(f"peak RSS {peak_mb:.0f} MB")
    out = {
        "jobs": len(scenario.jobs),
        "gpus": gpus,
        "load_s": round(load_s, 3),
        "fifo_wall_s": round(fifo.wall_s, 3),
        "fifo_cpu_s": round(fifo_cpu, 3),
        "fifo_jobs_per_s": round(len(scenario.jobs) / fifo.wall_s),
        "fifo_events_per_s": round(fifo.events / fifo.wall_s),
        "fairshare_wall_s": round(fair.wall_s, 3),
        "fairshare_cpu_s": round(fair_cpu, 3),
        "fairshare_jobs_per_s": round(len(scenario.jobs) / fair.wall_s),
        "fairshare_events_per_s": round(fair.events / fair.wall_s),
        "peak_rss_mb": round(peak_mb, 1),
        "pools_mean_wait_s": round(f["first_wait_s_mean"], 1),
        "pools_mean_jct_s": round(f["jct_s_mean"], 1),
        "fairshare_mean_wait_s": round(g["first_wait_s_mean"], 1),
        "fairshare_mean_jct_s": round(g["jct_s_mean"], 1),
        "fairshare_preemptions": g["preemptions"],
        "fairshare_lost_gpu_hours": round(g["lost_gpu_hours"], 1),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
