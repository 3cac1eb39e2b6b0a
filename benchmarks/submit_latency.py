"""Submit latency and API throughput of a real server (uvicorn subprocess, virtual GPUs, SQLite).

1. latency: JOBS trivial jobs (`date`) submitted one after another, each while a GPU
   is free; submit -> running measured from the client (POST sent until the API
   shows the job running) and to the moment the job's process runs (the time it
   prints, minus the server's submitted_at);
2. throughput: CLIENTS processes submit concurrently while one job holds every GPU, so
   the submits only queue: jobs/s the API accepts; then the same on an idle floor,
   where a submit may also launch its job (bounded by process spawning);
3. the blocker is cancelled, the queue drains, and every job must reach a terminal
   state: the ones that do not are lost.

Last line: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from aifactory.live.api.launch import ServerProcess

TERMINAL = {"succeeded", "failed", "cancelled"}
BODY = {"command": ["true"], "gpus": 1}
# The latency jobs print the wall time their process began: submit -> process start, same clock.
STAMP = {"command": ["date", "+%s.%N"], "gpus": 1}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def wait_running(http: httpx.Client, job: dict[str, Any]) -> None:
    while job["state"] == "queued":
        time.sleep(0.002)
        job = http.get(f"/api/jobs/{job['id']}").json()


def latency_phase(http: httpx.Client, jobs: int, gpus: int) -> tuple[list[int], list[float]]:
    """Client-observed submit -> running, ms; at most gpus-1 jobs in flight, so none has to queue."""
    ids: list[int] = []
    observed: list[float] = []
    for _ in range(jobs):
        in_flight = http.get("/api/jobs", params={"state": ["queued", "running"]}).json()
        while len(in_flight) >= gpus - 1:
            time.sleep(0.005)
            in_flight = http.get("/api/jobs", params={"state": ["queued", "running"]}).json()
        t0 = time.perf_counter()
        r = http.post("/api/jobs", json=STAMP)
        r.raise_for_status()
        wait_running(http, r.json())
        observed.append((time.perf_counter() - t0) * 1000)
        ids.append(r.json()["id"])
    return ids, observed


def _client_proc(url: str, token: str, count: int, barrier: Any, out: Any) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        http.get("/api/health")
        barrier.wait()
        t0 = time.perf_counter()
        ids = []
        for _ in range(count):
            r = http.post("/api/jobs", json=BODY)
            r.raise_for_status()
            ids.append(r.json()["id"])
        out.put((t0, time.perf_counter(), ids))


def throughput_phase(server: ServerProcess, clients: int, per_client: int) -> tuple[list[int], float]:
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(clients), ctx.Queue()
    procs = [
        ctx.Process(target=_client_proc, args=(server.url, server.token, per_client, barrier, out))
        for _ in range(clients)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    start = min(r[0] for r in results)
    end = max(r[1] for r in results)
    ids = [i for r in results for i in r[2]]
    return ids, len(ids) / (end - start)


def block_floor(http: httpx.Client, gpus: int) -> int:
    """A job holding every GPU, so that what is submitted next queues."""
    r = http.post("/api/jobs", json={"command": ["sleep", "3600"], "gpus": gpus, "name": "blocker"})
    r.raise_for_status()
    wait_running(http, r.json())
    return r.json()["id"]


def count_lost(http: httpx.Client, ids: list[int], timeout: float) -> tuple[int, dict[str, int]]:
    """Jobs not in a terminal state once the queue has drained (or `timeout` has passed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not http.get("/api/jobs", params={"state": ["queued", "running", "preempted"], "limit": 1}).json():
            break
        time.sleep(0.2)
    states = {j["id"]: j["state"] for j in http.get("/api/jobs").json()}
    tally: dict[str, int] = {}
    for i in ids:
        tally[states.get(i, "missing")] = tally.get(states.get(i, "missing"), 0) + 1
    return sum(1 for i in ids if states.get(i) not in TERMINAL), tally


def process_start_ms(http: httpx.Client, ids: list[int]) -> list[float]:
    """Submit (the server's record) -> the job's process running (its own clock reading), ms."""
    out = []
    for i in ids:
        submitted = http.get(f"/api/jobs/{i}").json()["submitted_at"]
        out.append((float(http.get(f"/api/jobs/{i}/logs").text) - submitted) * 1000)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=200, help="jobs in the latency phase")
    p.add_argument("--gpus", type=int, default=8)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--per-client", type=int, default=100, help="jobs each client submits in the throughput phase")
    a = p.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="aifactory-bench-") as tmp,
        ServerProcess(Path(tmp) / "home", "--gpus", str(a.gpus)) as server,
        server.client(timeout=60) as http,
    ):
        lat_ids, observed = latency_phase(http, a.jobs, a.gpus)
        process = process_start_ms(http, lat_ids)
        blocker = block_floor(http, a.gpus)
        tp_ids, rate = throughput_phase(server, a.clients, a.per_client)
        http.post(f"/api/jobs/{blocker}/cancel").raise_for_status()
        t0 = time.perf_counter()
        lost, tally = count_lost(http, [*lat_ids, blocker, *tp_ids], timeout=600)
        drain_s = time.perf_counter() - t0
        idle_ids, idle_rate = throughput_phase(server, a.clients, a.per_client // 4)
        idle_lost, idle_tally = count_lost(http, idle_ids, timeout=600)
    figures = {
        "jobs": len(lat_ids) + 1 + len(tp_ids) + len(idle_ids),
        "gpus": a.gpus,
        "submit_to_running_p50_ms": round(statistics.median(observed), 2),
        "submit_to_running_p99_ms": round(percentile(observed, 99), 2),
        "submit_to_process_p50_ms": round(statistics.median(process), 2),
        "submit_to_process_p99_ms": round(percentile(process, 99), 2),
        "clients": a.clients,
        "submits_per_s": round(rate, 1),
        "submits_per_s_idle_floor": round(idle_rate, 1),
        "drain_s": round(drain_s, 1),
        "drained_jobs_per_s": round(len(tp_ids) / drain_s, 1),
        "final_states": {k: tally.get(k, 0) + idle_tally.get(k, 0) for k in {*tally, *idle_tally}},
        "jobs_lost": lost + idle_lost,
    }
    print(
        f"submit -> running, client-observed over {len(observed)} jobs: p50 {figures['submit_to_running_p50_ms']} ms,"
    )
    print(f"  p99 {figures['submit_to_running_p99_ms']} ms; submit -> the job's process running: p50")
    print(f"  {figures['submit_to_process_p50_ms']} ms, p99 {figures['submit_to_process_p99_ms']} ms")
    print(f"throughput, {a.clients} concurrent clients x {a.per_client} submits, floor full (jobs queue):")
    print(f"  {figures['submits_per_s']} jobs/s accepted; drained at {figures['drained_jobs_per_s']} jobs/s")
    print(
        f"  idle floor ({a.clients} x {a.per_client // 4}, submits launch): {figures['submits_per_s_idle_floor']} jobs/s"
    )
    print(f"all {figures['jobs']} jobs: {figures['final_states']}; lost: {figures['jobs_lost']}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
