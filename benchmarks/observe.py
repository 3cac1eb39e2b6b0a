"""Seeing the floor, measured: the GPU sampler's CPU, a /metrics scrape, the dashboard's jobs page
and a usage report, on a fake NVML of 8 GPUs (tests/fakes/pynvml.py: the pynvml boundary, the
only thing faked) with 10,000 jobs in the store. Last line: one JSON object.

1. sampler: the reader and the folding into jobs (8 GPUs, 8 one-GPU jobs, processes every third
   round, as the server runs it every 5 s), CPU seconds per round / 5 s = share of one core.
2. a real server (uvicorn subprocess) over a store holding 9,000 finished jobs (made in the store
   directly) and 1,000 submitted through the API (8 running, 992 queued): GET /metrics,
   GET /jobs (the dashboard's page: 200 rows) and, as the peer in the same run, GET /api/health
   (a round trip that does nothing); medians of ROUNDS requests.
3. GET /api/usage over 30 days with 1,000,000 GPU minutes in the store's history.

Targets (issue 11): sampler <= 1 % of one core; scrape <= 100 ms; jobs page <= 300 ms; a 30-day
usage report over a million samples <= 1 s.

Run from the repository root: `.venv/bin/python benchmarks/observe.py`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from aifactory.core.actions import StateChanged
from aifactory.core.cluster import Cluster, Node
from aifactory.core.job import Job, JobSpec, Placement
from aifactory.core.states import JobState
from aifactory.live.api.launch import ServerProcess
from aifactory.live.store import Store
from aifactory.live.telemetry import GpuSample, JobUsage, NvmlReader, Telemetry, holders_of

ROOT = Path(__file__).resolve().parents[1]
FAKES = ROOT / "tests" / "fakes"
GPUS = 8
PERIOD_S = 5.0


def fake_nvml(path: Path) -> None:
    gpus = [
        {
            "name": "NVIDIA H100 80GB HBM3",
            "uuid": f"GPU-{i}",
            "total_mib": 81559,
            "used_mib": 4000,
            "util": 60 + i,
            "power_mw": 400_000,
            "temp": 60,
            "procs": [[100_000 + i, 4000]],
        }
        for i in range(GPUS)
    ]
    path.write_text(json.dumps({"gpus": gpus}))


def sampler_cpu_pct(rounds: int) -> float:
    spec = importlib.util.spec_from_file_location("pynvml", FAKES / "pynvml.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["pynvml"] = module
    reader = NvmlReader("node0")
    assert reader.open(), "the fake NVML did not answer"
    cluster = Cluster([Node("node0", GPUS)])
    for j in range(GPUS):
        cluster.allocate(j, Placement((("node0", (j,)),)))
    holders = holders_of(cluster)
    t = Telemetry()
    start = time.process_time()
    for k in range(rounds):
        t.fold(reader.read(), k * PERIOD_S, holders, lambda j: "p")
        if k % 3 == 0:
            t.attribute_processes(reader.job_memory({}))
        t.take_samples()
    spent = time.process_time() - start
    return 100 * spent / (rounds * PERIOD_S)


def fill(url: str, finished: int, samples: int) -> None:
    now = time.time()
    with Store(url) as store:
        spec = JobSpec(("true",), project="default", gpus=1)
        changes: list[StateChanged] = []
        jobs: dict[int, Job] = {}
        usage: list[JobUsage] = []
        for k in range(finished):  # one a minute over 20 days, each on one GPU for 50 s
            at = now - 20 * 86400 + k * 60
            job_id = store.create_job(spec, at)
            changes += [
                StateChanged(job_id, JobState.QUEUED, JobState.RUNNING, at + 1),
                StateChanged(job_id, JobState.RUNNING, JobState.SUCCEEDED, at + 50),
            ]
            job = Job(id=job_id, spec=spec, submitted_at=at, queued_at=at, started_at=at + 1, attempts=1)
            job.state, job.finished_at, job.exit_code = JobState.SUCCEEDED, at + 50, 0
            job.placement = Placement((("node0", (k % GPUS,)),))
            jobs[job_id] = job
            usage.append(
                JobUsage(
                    job_id,
                    samples=10,
                    util_sum=550.0,
                    util_peak=60,
                    memory_peak_mib=4000,
                    energy_j=350.0 * 49,
                    busy_gpu_s=0.55 * 49,
                    gpu_s=49,
                )
            )
        store.apply(changes, jobs)
        store.save_job_usage(usage)
        # Every GPU minute of 30 days of a floor of 24 GPUs (three nodes of 8): about a million rows.
        batch: list[GpuSample] = []
        start = now - 30 * 86400
        for k in range(samples):
            minute, gpu = divmod(k, 3 * GPUS)
            batch.append(
                GpuSample(start + minute * 60, f"node{gpu // GPUS}", gpu % GPUS, 60, 55.0, 4000, 350.0, 60, None, None)
            )
            if len(batch) == 50_000:
                store.add_gpu_samples(batch)
                batch = []
        store.add_gpu_samples(batch)


def timed(http: httpx.Client, path: str, rounds: int, **params: Any) -> float:
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        r = http.get(path, params=params)
        out.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
    return round(statistics.median(out), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    out: dict[str, Any] = {"machine": f"{os.cpu_count()} CPUs, {os.uname().machine}"}
    with tempfile.TemporaryDirectory(prefix="aif-observe-") as tmp:
        work = Path(tmp)
        nvml = work / "gpus.json"
        fake_nvml(nvml)
        os.environ["AIFACTORY_FAKE_NVML"] = str(nvml)
        out["sampler_cpu_pct_8gpus"] = round(sampler_cpu_pct(2000), 4)
        print(f"sampler: {out['sampler_cpu_pct_8gpus']} % of one core")
        home = work / "home"
        url = f"sqlite:///{home / 'factory.db'}"
        home.mkdir(mode=0o700)
        t0 = time.perf_counter()
        finished_jobs = args.jobs - 1000
        fill(url, finished_jobs, args.samples)
        print(f"store filled: {args.jobs - 1000} jobs, {args.samples} GPU minutes in {time.perf_counter() - t0:.0f} s")
        env = {
            "PYTHONPATH": f"{FAKES}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "AIFACTORY_FAKE_NVML": str(nvml),
            "AIFACTORY_ISOLATION": "none",
        }
        with ServerProcess(home, "--telemetry", "5", env=env) as srv:
            with srv.client() as http:
                for _ in range(1000):
                    r = http.post("/api/jobs", json={"command": ["sleep", "600"], "gpus": 1, "workdir": "/"})
                    r.raise_for_status()
                cookies = {"aifactory_token": srv.token}
                page = httpx.Client(base_url=srv.url, cookies=cookies, timeout=60)
                out["health_ms"] = timed(http, "/api/health", args.rounds)
                out["metrics_scrape_ms_10k_jobs"] = timed(http, "/metrics", args.rounds)
                out["dashboard_jobs_page_ms_10k_jobs"] = timed(page, "/jobs", args.rounds, state="")
                out["dashboard_jobs_page_finished_ms"] = timed(page, "/jobs", args.rounds, state="succeeded")
                out["usage_report_ms_1m_samples"] = timed(http, "/api/usage", 5, since=time.time() - 30 * 86400)
                report = http.get("/api/usage", params={"since": time.time() - 30 * 86400}).json()
                print("usage:", report["rows"][:1])
                assert report["rows"][0]["jobs"] >= finished_jobs, report
                page.close()
            # Stop the 8 sleeping jobs with the server: they run on after it otherwise.
            with srv.client() as http:
                for j in http.get("/api/jobs", params={"state": "running"}).json():
                    http.post(f"/api/jobs/{j['id']}/cancel")
    targets = {
        "sampler_cpu_pct_8gpus": 1.0,
        "metrics_scrape_ms_10k_jobs": 100.0,
        "dashboard_jobs_page_ms_10k_jobs": 300.0,
        "usage_report_ms_1m_samples": 1000.0,
    }
    out["over_target"] = {k: round(out[k] / v, 3) for k, v in targets.items()}  # <= 1: met
    out["scrape_over_health"] = round(out["metrics_scrape_ms_10k_jobs"] / max(out["health_ms"], 0.01), 1)
    for k, v in out.items():
        print(f"{k}: {v}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
