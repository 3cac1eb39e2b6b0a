"""The floor against a hostile tenant, a fuzzer, kill -9 and a long queue; last line one JSON object.

1. attacks (root with cgroups only): a tenant's jobs try to read the admin token, the database,
   another tenant's log and scratch, the server's environment, to signal another tenant's job,
   exceed their memory and open a GPU device they were not given (tests/live/test_hostile.py);
2. fuzz: schemathesis against the OpenAPI schema of a server whose jobs are isolated; 5xx
   answers, then jobs left stranded (tests/live/test_fuzz.py);
3. chaos: kill -9 the server at KILLS random moments of a JOBS-job run on SQLite (and
   PostgreSQL where it answers): acknowledged jobs lost, run twice, failed unrun
   (tests/live/test_chaos.py);
4. listing: 10,000 queued jobs; every page of GET /api/jobs (p99 over several walks) while a
   second client calls /api/health (its p99), and `aifactory jobs` end to end. With --base REV,
   the same on that commit's code (a worktree beside the repo, same venv) for the ratio: this
   machine is shared and noisy.

Run from the repository root: `.venv/bin/python benchmarks/floor_hostile.py [--base REV]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests' helpers: the attacks, the fuzzer and the chaos run

from aifactory.live.api.launch import ServerProcess  # noqa: E402
from aifactory.live.cgroups import detect  # noqa: E402

QUEUED = 10_000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def isolated() -> bool:
    return os.geteuid() == 0 and detect() is not None and shutil.which("useradd") is not None


def attacks(work: Path) -> dict[str, Any]:
    if not isolated():
        return {"attacks_tried": 0, "attacks_blocked": 0, "attacks_note": "needs root and cgroups"}
    from tests.live import test_hostile as hostile

    place = Path(f"/tmp/aif-hostile-{uuid.uuid4().hex[:8]}")
    place.mkdir(mode=0o755)
    os.chmod(place, 0o755)
    args = ["--gpus", "4", "--cpus-per-node", "8", "--memory-per-node", "8GiB", "--isolation", "full"]
    try:
        with ServerProcess(place / "home", *args, env={"PGPASSWORD": hostile.SECRET}) as srv:
            with srv.client() as admin:
                for project in ("a", "b"):
                    admin.put(f"/api/projects/{project}", json={"quota": 2}).raise_for_status()
            blocked = hostile.run_attacks(srv, place)
    finally:
        shutil.rmtree(place, ignore_errors=True)
    for name, ok in sorted(blocked.items()):
        print(f"  attack {name:32s} {'blocked' if ok else 'GOT THROUGH'}")
    return {"attacks_tried": len(blocked), "attacks_blocked": sum(blocked.values())}


def fuzzing(work: Path, examples: int) -> dict[str, Any]:
    if not isolated():
        return {"fuzz_requests": 0, "fuzz_5xx": 0, "fuzz_note": "fuzzed jobs run only fully isolated"}
    from tests.live import test_fuzz

    args = ["--gpus", "4", "--isolation", "full", "--kill-grace", "1"]
    with ServerProcess(work / "fuzz", *args) as srv:
        counts = test_fuzz.fuzz(srv, examples)
        left = test_fuzz.stranded(srv)
    print(f"  fuzz: {counts}")
    return {"fuzz_requests": counts["fuzz_requests"], "fuzz_5xx": counts["fuzz_5xx"], "fuzz_stranded": left}


def chaos(work: Path, jobs: int, kills: int) -> dict[str, Any]:
    from tests.live import test_chaos
    from tests.live.conftest import pg_schema_url

    out: dict[str, Any] = {}
    with pg_schema_url() as url:
        runs = [("sqlite", [])] + ([("postgresql", ["--db", url])] if url else [])
        for name, db in runs:
            got = test_chaos.run_chaos(work / f"chaos-{name}", work / f"ledger-{name}", db, jobs, kills, seed=11)
            print(f"  chaos on {name}: {got}")
            for key, value in got.items():
                out[key] = out.get(key, 0) + value
    return out


def fill(home: Path, python_path: str | None) -> ServerProcess:
    """A server with QUEUED jobs waiting behind one that holds the only GPU."""
    env = {"PYTHONPATH": python_path} if python_path else {}
    srv = ServerProcess(home, "--gpus", "1", env=env).start()
    srv.stop()
    # Written by the code under test (its own schema version), in a process of its own.
    subprocess.run(
        [sys.executable, "-c", FILL, str(home / "factory.db"), str(QUEUED + 1)], env={**os.environ, **env}, check=True
    )
    return srv.start(timeout=300)


FILL = """
import sys, time
from aifactory.core.job import JobSpec
from aifactory.live.store import Store
with Store(f"sqlite:///{sys.argv[1]}") as store:
    now = time.time()
    for i in range(int(sys.argv[2])):
        store.create_job(JobSpec(command=("sleep", "600"), gpus=1, name=f"q{i}", workdir="/"), now)
"""


def listing(home: Path, python_path: str | None, paged: bool, rounds: int) -> dict[str, float]:
    srv = fill(home, python_path)
    health: list[float] = []
    pages: list[float] = []
    stop = threading.Event()

    def poll_health() -> None:
        with httpx.Client(base_url=srv.url, timeout=30) as anyone:
            while not stop.is_set():
                t0 = time.perf_counter()
                anyone.get("/api/health").raise_for_status()
                health.append((time.perf_counter() - t0) * 1000)
                time.sleep(0.005)

    try:
        with srv.client(timeout=120) as http:
            http.get("/api/jobs", params={"state": "queued", "limit": 1})  # warm
            poller = threading.Thread(target=poll_health, daemon=True)
            poller.start()
            total = 0
            for _ in range(rounds):
                url: str | None = "/api/jobs?state=queued"
                while url is not None:
                    t0 = time.perf_counter()
                    r = http.get(url)  # the next page's URL carries the filter and the cursor
                    pages.append((time.perf_counter() - t0) * 1000)
                    total += len(r.json())
                    url = r.links.get("next", {}).get("url") if paged else None
            stop.set()
            poller.join()
        assert total >= rounds * QUEUED, total
        env = {**os.environ, "AIFACTORY_HOME": str(home), "COLUMNS": "200"}
        env.pop("AIFACTORY_URL", None)
        env.pop("AIFACTORY_TOKEN", None)
        if python_path:
            env["PYTHONPATH"] = python_path
        cli: list[float] = []
        for _ in range(3):
            t0 = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", "from aifactory.cli import main; main()", "jobs"],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            cli.append(time.perf_counter() - t0)
            assert done.returncode == 0 and done.stdout.count("\n") > QUEUED, done.stderr[-500:]
    finally:
        stop.set()
        with srv.client() as http:
            for j in http.get("/api/jobs", params={"state": "running"}).json():
                http.post(f"/api/jobs/{j['id']}/cancel")
        srv.stop()
    return {
        "list_p99_ms": percentile(pages, 99),
        "list_pages": len(pages),
        "page_jobs": total / len(pages),
        "health_p99_ms": percentile(health, 99),
        "health_median_ms": statistics.median(health),
        "cli_jobs_s": min(cli),
    }


def base_tree(rev: str) -> Path:
    tree = ROOT.parent / ".bench-base"
    if tree.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev], check=True)
    return tree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=None, help="commit to compare the listing against (e.g. HEAD~20)")
    parser.add_argument("--jobs", type=int, default=300, help="jobs of each chaos run")
    parser.add_argument("--kills", type=int, default=22, help="kill -9 of each chaos run")
    parser.add_argument("--examples", type=int, default=200, help="fuzz cases per operation and mode")
    parser.add_argument("--rounds", type=int, default=5, help="walks over the 10,000 queued jobs")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: attacks,fuzz,chaos,list")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    os.environ.setdefault("AIFACTORY_ISOLATION", "none")  # the listing and chaos servers: jobs as this user
    out: dict[str, Any] = {"machine": f"{os.cpu_count()} CPUs, {os.uname().machine}, root={os.geteuid() == 0}"}
    with tempfile.TemporaryDirectory(prefix="aif-bench-") as tmp:
        work = Path(tmp)
        if "attacks" not in skip:
            print("attacks")
            out |= attacks(work)
        if "fuzz" not in skip:
            print("fuzz")
            out |= fuzzing(work, args.examples)
        if "chaos" not in skip:
            print("chaos")
            out |= chaos(work, args.jobs, args.kills)
        if "list" not in skip:
            print(f"listing {QUEUED} queued jobs")
            now = listing(work / "list-now", None, True, args.rounds)
            print(f"  now: {now}")
            out |= {
                "list_10k_p99_ms": round(now["list_p99_ms"], 1),
                "health_p99_ms_during_list": round(now["health_p99_ms"], 1),
                "cli_jobs_10k_s": round(now["cli_jobs_s"], 2),
                "list_page_jobs": now["page_jobs"],
            }
            if args.base:
                tree = base_tree(args.base)
                try:
                    base = listing(work / "list-base", str(tree / "src"), False, args.rounds)
                finally:
                    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
                print(f"  base {args.base}: {base}")
                out |= {
                    "base": args.base,
                    "base_list_all_p99_ms": round(base["list_p99_ms"], 1),
                    "base_health_p99_ms_during_list": round(base["health_p99_ms"], 1),
                    "base_cli_jobs_10k_s": round(base["cli_jobs_s"], 2),
                    "health_p99_ratio_base_over_now": round(base["health_p99_ms"] / now["health_p99_ms"], 1),
                    "cli_ratio_base_over_now": round(base["cli_jobs_s"] / now["cli_jobs_s"], 1),
                }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
