"""The twin's replay speed of this tree against another commit, side by side in one run.

This box is shared and noisy, so a figure alone says little: the base commit (checked out in a
temporary git worktree) and this working tree run `benchmarks/twin_speed.py` in turn, `--rounds`
times each, in fresh processes; the ratio new/old of the median CPU seconds of the fifo and
fairshare replays is the figure (target: <= 1.05). Last line: JSON.

    python benchmarks/twin_speed_compare.py --base HEAD~3 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ("fifo_cpu_s", "fairshare_cpu_s", "fifo_wall_s", "fairshare_wall_s")


def once(tree: Path, limit: int | None) -> dict[str, float]:
    """One run of the tree's own twin_speed.py on the tree's own package; its JSON line."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    cmd = [sys.executable, str(tree / "benchmarks" / "twin_speed.py")]
    if limit is not None:
        cmd += ["--limit", str(limit)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tree)
    if done.returncode != 0:
        sys.exit(f"error: {tree}: twin_speed.py exited {done.returncode}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD~1", help="the commit to compare against")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="replay only the first N jobs")
    args = parser.parse_args()
    base = subprocess.run(["git", "rev-parse", "--short", args.base], cwd=ROOT, capture_output=True, text=True)
    if base.returncode != 0:
        sys.exit(f"error: base: not a commit: {args.base!r}")
    # Beside this tree, not in /tmp: both trees find ../shared/data the same way.
    old_tree = ROOT.parent / f".twin-speed-base-{os.getpid()}"
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(old_tree), args.base], cwd=ROOT, check=True)
    runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    try:
        for i in range(args.rounds):
            for name, tree in (("old", old_tree), ("new", ROOT)):
                runs[name].append(once(tree, args.limit))
                figures = ", ".join(f"{k} {runs[name][-1][k]:.2f}" for k in FIGURES)
                print(f"round {i + 1} {name:>3}: {figures}", flush=True)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT, check=False)
    median = {name: {k: statistics.median(r[k] for r in rs) for k in FIGURES} for name, rs in runs.items()}
    out = {"base": base.stdout.strip(), "rounds": args.rounds, "jobs": runs["new"][0]["jobs"]}
    for k in FIGURES:
        out[f"old_{k}"] = round(median["old"][k], 3)
        out[f"new_{k}"] = round(median["new"][k], 3)
        out[f"ratio_{k}"] = round(median["new"][k] / median["old"][k], 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
