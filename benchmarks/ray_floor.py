"""The floor on Ray against the floor on one box, and the leader's failover; last line one JSON object.

1. A `ray.cluster_utils.Cluster` on 127.0.0.1 (a head and NODES nodes of 4 logical GPUs) and a
   server with `--executor ray`; JOBS trivial jobs (`date +%s.%N`, 1 GPU), one after another:
   submit (the POST sent) to the job's process running (the time it prints), p50 and p99. The
   same on a local-executor server with the same virtual nodes, in the same run: the peer.
   Every job must end succeeded, exactly once (each appends to a ledger). Then a node is
   removed under a running job: seconds until the job runs on another node.
2. Failover: two servers on one store (SQLite file) with the default lease; the leader is
   killed with SIGKILL while a job runs; seconds until the standby serves, and the job ends once.

3. The peer on Ray itself: Ray's Jobs API (`JobSubmissionClient`, the head's dashboard) on the
   same cluster, API_JOBS jobs whose entrypoint prints the time as ours do: submit (the call
   made) to the entrypoint's process running. It needs Ray's dashboard: install the `bench` extra
   (`.venv/bin/pip install -c constraints.txt -e '.[bench]'`); without it the figure is null.

Run from the repository root: `.venv/bin/python benchmarks/ray_floor.py [--jobs 200]`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from aifactory.live.api.launch import ServerProcess
from aifactory.live.executors.node import free_port

LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
TERMINAL = {"succeeded", "failed", "cancelled"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def wait(http: httpx.Client, job_id: int, states: set[str], timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (job := http.get(f"/api/jobs/{job_id}").json())["state"] not in states:
        assert time.monotonic() < deadline, job
        time.sleep(0.005)
    return job


def latencies(srv: ServerProcess, jobs: int, ledger: Path) -> dict[str, Any]:
    ledger.mkdir(parents=True, exist_ok=True)
    script = f"date +%s.%N; echo x >> {ledger}/$AIFACTORY_JOB_ID"
    out: list[float] = []
    with srv.client() as http:
        for _ in range(jobs):
            sent = time.time()
            r = http.post("/api/jobs", json={"command": ["/bin/sh", "-c", script], "gpus": 1, "workdir": "/"})
            r.raise_for_status()
            job = wait(http, r.json()["id"], TERMINAL)
            assert job["state"] == "succeeded", job
            deadline = time.monotonic() + 10
            while not (text := http.get(f"/api/jobs/{job['id']}/logs").text).strip():  # the mirror's last copy
                assert time.monotonic() < deadline
                time.sleep(0.01)
            out.append((float(text.split()[0]) - sent) * 1000)
    runs = [len(p.read_text().splitlines()) for p in ledger.iterdir()]
    return {
        "p50_ms": round(statistics.median(out), 1),
        "p99_ms": round(percentile(out, 99), 1),
        "jobs": len(out),
        "lost": jobs - len(runs),
        "twice": sum(1 for n in runs if n > 1),
    }


def jobs_api(address: str, jobs: int) -> dict[str, Any]:
    """Ray's own Jobs API on the same cluster: submit to the entrypoint's process running (ms)."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(address)
    out: list[float] = []
    for _ in range(jobs):
        sent = time.time()
        job = client.submit_job(entrypoint="date +%s.%N")
        deadline = time.monotonic() + 120
        while (status := client.get_job_status(job)) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            assert time.monotonic() < deadline, status
            time.sleep(0.01)
        assert status == JobStatus.SUCCEEDED, client.get_job_logs(job)
        # Ray's own lines come first in a job's log: the entrypoint's is the one that is a time.
        stamp = next(line for line in client.get_job_logs(job).splitlines() if re.fullmatch(r"\d+\.\d+", line))
        out.append((float(stamp) - sent) * 1000)
    return {"p50_ms": round(statistics.median(out), 1), "p99_ms": round(percentile(out, 99), 1), "jobs": len(out)}


def has_dashboard() -> bool:
    try:
        import aiohttp  # noqa: F401  (one of ray[default]'s; Ray's dashboard does not start without them)
        import ray.dashboard  # noqa: F401
    except ImportError:
        return False
    return True


def node_loss(srv: ServerProcess, cluster: Any) -> float:
    """Seconds from removing the node under a running 4-GPU job to that job running on another node."""
    with srv.client() as http:
        r = http.post("/api/jobs", json={"command": ["/bin/sh", "-c", "echo up; sleep 30"], "gpus": 4, "workdir": "/"})
        job_id = r.json()["id"]
        node = wait(http, job_id, {"running"})["placement"].split(":")[0]
        while "up" not in http.get(f"/api/jobs/{job_id}/logs").text:
            time.sleep(0.05)
        victim = next(n for n in cluster.worker_nodes if n._ray_params.labels.get("aifactory/node") == node)
        removed = time.monotonic()
        cluster.remove_node(victim)
        while True:
            job = http.get(f"/api/jobs/{job_id}").json()
            if job["state"] == "running" and job["attempts"] >= 2:
                took = time.monotonic() - removed
                break
            assert job["state"] not in TERMINAL and time.monotonic() - removed < 120, job
            time.sleep(0.05)
        http.post(f"/api/jobs/{job_id}/cancel")
        wait(http, job_id, TERMINAL)
    return took


def failover(work: Path) -> dict[str, Any]:
    args = ["--gpus", "2", "--db", f"sqlite:///{work / 'shared.db'}"]
    leader = ServerProcess(work / "a", *args).start()
    ledger = work / "failover-ledger"
    with leader.client() as http:
        script = f"echo run >> {ledger}; sleep 3"
        job_id = http.post("/api/jobs", json={"command": ["/bin/sh", "-c", script], "gpus": 1}).json()["id"]
        wait(http, job_id, {"running"})
    standby = ServerProcess(work / "b", *args)
    started = threading.Thread(target=standby.start, kwargs={"timeout": 120})
    started.start()
    while "standby" not in (standby.log_path.read_text() if standby.log_path.exists() else ""):
        time.sleep(0.05)
    killed = time.monotonic()
    leader.kill9()
    started.join()
    took = time.monotonic() - killed
    try:
        with standby.client() as http:
            job = wait(http, job_id, TERMINAL)
    finally:
        standby.stop()
    return {
        "failover_s": round(took, 2),
        "failover_job_ok": job["state"] == "succeeded" and ledger.read_text() == "run\n",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--api-jobs", type=int, default=50, help="jobs through Ray's Jobs API (0: none)")
    args = parser.parse_args()
    os.environ.setdefault("AIFACTORY_ISOLATION", "none")
    os.environ.update(LOOPBACK)
    out: dict[str, Any] = {"machine": f"{os.cpu_count()} CPUs, {os.uname().machine}", "jobs": args.jobs}
    with tempfile.TemporaryDirectory(prefix="aif-ray-") as tmp:
        work = Path(tmp)
        from ray.cluster_utils import Cluster

        small = {"node_ip_address": "127.0.0.1", "object_store_memory": 80 << 20}
        dashboard = has_dashboard() and args.api_jobs > 0
        head = {"num_cpus": 1, "include_dashboard": dashboard, **small}
        if dashboard:
            head |= {"dashboard_host": "127.0.0.1", "dashboard_port": free_port()}
        cluster = Cluster(initialize_head=True, head_node_args=head)
        for i in range(args.nodes):
            cluster.add_node(num_cpus=1, num_gpus=4, labels={"aifactory/node": f"n{i}"}, **small)
        cluster.wait_for_nodes()
        try:
            with ServerProcess(
                work / "ray", "--executor", "ray", "--ray-address", cluster.address, env=LOOPBACK
            ) as srv:
                ray_run = latencies(srv, args.jobs, work / "ledger-ray")
                api = jobs_api(f"http://127.0.0.1:{head['dashboard_port']}", args.api_jobs) if dashboard else None
                lost_s = node_loss(srv, cluster)
        finally:
            cluster.shutdown()
        print(f"ray:   {ray_run}; node lost -> running elsewhere {lost_s:.2f} s")
        print(f"ray jobs api: {api or 'not measured (no ray[default]: install the bench extra)'}")
        with ServerProcess(work / "local", "--gpus", "4", "--nodes", str(args.nodes)) as srv:
            local_run = latencies(srv, args.jobs, work / "ledger-local")
        print(f"local: {local_run}")
        fail = failover(work)
        print(f"failover: {fail}")
    out |= {
        "ray_submit_to_process_p50_ms": ray_run["p50_ms"],
        "ray_submit_to_process_p99_ms": ray_run["p99_ms"],
        "local_submit_to_process_p50_ms": local_run["p50_ms"],
        "ray_over_local_p50": round(ray_run["p50_ms"] / local_run["p50_ms"], 1),
        "ray_jobs_api_submit_to_running_p50_ms": api["p50_ms"] if api else None,
        "ray_over_jobs_api_p50": round(ray_run["p50_ms"] / api["p50_ms"], 2) if api else None,
        "node_loss_to_running_elsewhere_s": round(lost_s, 2),
        **fail,
        "jobs_lost": ray_run["lost"] + local_run["lost"],
        "jobs_run_twice": ray_run["twice"] + local_run["twice"],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
