"""The openb allocation-ratio experiment of the FGD paper (ATC'23, Fig. 9a) against its published numbers.

For each policy (the factory's bestfit and fgd, and the paper's four baselines), replays
the default openb workload grown to 130 % of the 6212 GPUs under seeds 42-51 (the
published protocol, our own PRNG) and prints the mean (min-max) over seeds of the GPU
allocation % at 100 % and 130 % arrived demand, next to the published figures, with
the wall time per run. The last line is one JSON object.

    .venv/bin/python benchmarks/openb_alloc.py [--seeds 42-51] [--policy fgd ...] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from aifactory.twin import openb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="42-51")
    parser.add_argument("--policy", action="append", help=f"repeatable; default all: {', '.join(openb.PUBLISHED)}")
    parser.add_argument("--data", type=Path, default=openb.DEFAULT_DIR)
    args = parser.parse_args()
    seeds = openb.parse_seeds(args.seeds)
    figures: dict[str, float | int | str] = {"seeds": args.seeds}
    start = time.perf_counter()
    print(f"openb default workload, tune 1.3, seeds {args.seeds}: GPU allocation %, mean (min-max) over seeds")
    for policy in args.policy or list(openb.PUBLISHED):
        summary = openb.experiment(policy, seeds, args.data)
        print(openb.describe(summary), flush=True)
        for x in (100, 130):
            figures[f"{policy}_alloc_{x}"] = round(summary.ours[x][0], 2)
            if summary.theirs:
                figures[f"published_{policy}_{x}"] = round(summary.theirs[x][0], 2)
        figures[f"{policy}_wall_s_per_run"] = round(summary.wall_s, 2)
        figures[f"{policy}_cpu_s_per_run"] = round(summary.cpu_s, 2)
    figures["wall_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
