"""The Ray executor through the real HTTP server, on a `ray.cluster_utils.Cluster` kept on
127.0.0.1: a head with no GPUs and two nodes declaring 4 GPUs each (labels n1, n2)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aifactory.live.api.launch import ServerProcess

from .conftest import RAY_LOOPBACK as LOOPBACK
from .conftest import ray_cluster

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.xdist_group("ray")  # one cluster, on one test worker
TERMINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with ray_cluster({"n1": 4, "n2": 4}) as c:
        yield c


@pytest.fixture(scope="module")
def server(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("ray") / "home"
    with ServerProcess(home, "--executor", "ray", "--ray-address", cluster.address, env=LOOPBACK) as srv:
        yield srv


def run(http: httpx.Client, command: list[str], **fields: Any) -> dict[str, Any]:
    r = http.post("/api/jobs", json={"command": command, "workdir": "/", **fields})
    assert r.status_code == 201, r.text
    return wait(http, r.json()["id"], TERMINAL)


def wait(http: httpx.Client, job_id: int, states: set[str], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (job := http.get(f"/api/jobs/{job_id}").json())["state"] not in states:
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    return job


def test_nodes_come_from_the_cluster(server: ServerProcess) -> None:
    with server.client() as http:
        nodes = {n["name"]: n for n in http.get("/api/nodes").json()}
    assert set(nodes) == {"n1", "n2"} and all(n["gpu_count"] == 4 for n in nodes.values())


def test_a_job_runs_where_our_scheduler_put_it(server: ServerProcess) -> None:
    script = 'echo "gpus=$CUDA_VISIBLE_DEVICES placement=$AIFACTORY_PLACEMENT"; exit 3'
    with server.client() as http:
        job = run(http, ["/bin/sh", "-c", script], gpus=2)
        log = http.get(f"/api/jobs/{job['id']}/logs").text
        missing = run(http, ["/no/such/program"], gpus=1)
    assert (job["state"], job["exit_code"]) == ("failed", 3)
    node, idx = job["placement"].split(":")
    assert node in {"n1", "n2"} and log == f"gpus={idx} placement={job['placement']}\n"
    assert missing["state"] == "failed" and "not found" in missing["reason"], missing


def test_a_gang_across_two_nodes_and_its_first_failure(server: ServerProcess) -> None:
    show = 'echo "$NODE_RANK/$NNODES world=$WORLD_SIZE gpus=$CUDA_VISIBLE_DEVICES master=$MASTER_ADDR:$MASTER_PORT"'
    with server.client() as http:
        job = run(http, ["/bin/sh", "-c", show], gpus=8, multi_node=True)
        ranks = [http.get(f"/api/jobs/{job['id']}/logs", params={"rank": k}).text.split() for k in (0, 1)]
        failing = '[ "$NODE_RANK" = 1 ] && { sleep 1; exit 7; }; trap "echo TERM; exit 143" TERM; sleep 60 & wait'
        gang = run(http, ["/bin/sh", "-c", failing], gpus=8, multi_node=True)
        log = http.get(f"/api/jobs/{gang['id']}/logs").text
    assert job["state"] == "succeeded"
    assert ranks[0][:3] == ["0/2", "world=8", "gpus=0,1,2,3"] and ranks[1][:3] == ["1/2", "world=8", "gpus=0,1,2,3"]
    assert ranks[0][3] == ranks[1][3] and ranks[0][3].startswith("master=127.0.0.1:")
    assert gang["state"] == "failed" and gang["exit_code"] == 7 and gang["reason"].startswith("rank 1"), gang
    assert "[rank 0] TERM" in log


def test_cancel_with_grace_runs_on_the_node(server: ServerProcess) -> None:
    script = 'trap "echo TERM; exit 143" TERM; echo up; sleep 60 & wait'
    with server.client() as http:
        job_id = http.post("/api/jobs", json={"command": ["/bin/sh", "-c", script], "gpus": 1}).json()["id"]
        wait(http, job_id, {"running"})
        deadline = time.monotonic() + 30
        while "up" not in http.get(f"/api/jobs/{job_id}/logs").text:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        http.post(f"/api/jobs/{job_id}/cancel")
        job = wait(http, job_id, TERMINAL)
        log = http.get(f"/api/jobs/{job_id}/logs").text
    assert job["state"] == "cancelled" and job["exit_code"] == 143 and "TERM" in log, (job, log)


def test_a_restarted_server_reattaches_a_running_job(cluster: Any, tmp_path: Path) -> None:
    args = ("--executor", "ray", "--ray-address", cluster.address)
    srv = ServerProcess(tmp_path / "home", *args, env=LOOPBACK).start()
    script = "for i in 1 2 3 4 5 6; do echo tick $i; sleep 0.5; done"
    try:
        with srv.client() as http:
            job_id = http.post("/api/jobs", json={"command": ["/bin/sh", "-c", script], "gpus": 1}).json()["id"]
            wait(http, job_id, {"running"})
        time.sleep(0.8)
        srv.stop()  # the actor and its job run on
        srv.start()
        with srv.client() as http:
            job = wait(http, job_id, TERMINAL)
            log = http.get(f"/api/jobs/{job_id}/logs").text
        assert job["state"] == "succeeded" and job["attempts"] == 1, job
        assert log.splitlines() == [f"tick {i}" for i in range(1, 7)]  # the mirror went on where it was
    finally:
        srv.stop()


def test_a_checkpoint_report_on_the_node_reaches_the_core(server: ServerProcess) -> None:
    script = 'sleep 0.5; python3 -c "from aifactory.checkpoint import report; report()" || touch "$AIFACTORY_CHECKPOINT_FILE"; sleep 30'
    with server.client() as http:
        job_id = http.post("/api/jobs", json={"command": ["/bin/sh", "-c", script], "gpus": 1}).json()["id"]
        wait(http, job_id, {"running"})
        deadline = time.monotonic() + 30
        while (job := http.get(f"/api/jobs/{job_id}").json())["checkpoint_at"] is None:
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        http.post(f"/api/jobs/{job_id}/cancel")
        wait(http, job_id, TERMINAL)
    assert job["checkpoint_at"] > job["started_at"]


def test_y_a_node_that_joins_later_takes_work(server: ServerProcess, cluster: Any) -> None:
    """(Late in the module: it adds a node.) Probed on the node (no NVML here: its labels say
    what its GPUs are), it joins the floor and a job for its GPU model runs there."""
    small = {"node_ip_address": "127.0.0.1", "object_store_memory": 80 << 20}
    labels = {"aifactory/node": "n3", "aifactory/gpu-model": "T4", "aifactory/gpu-memory-mib": "15360"}
    cluster.add_node(num_cpus=1, num_gpus=2, labels=labels, **small)
    with server.client() as http:
        deadline = time.monotonic() + 60
        while "n3" not in (nodes := {n["name"]: n for n in http.get("/api/nodes").json()}):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        job = run(http, ["/bin/sh", "-c", 'echo "on $AIFACTORY_PLACEMENT"'], gpus=2, gpu_model="T4")
        log = http.get(f"/api/jobs/{job['id']}/logs").text
    assert (nodes["n3"]["gpu_count"], nodes["n3"]["gpu_model"], nodes["n3"]["gpu_memory_mib"]) == (2, "T4", 15360)
    assert job["state"] == "succeeded" and log == "on n3:0,1\n", (job, log)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("useradd"), reason="full isolation needs root and useradd")
def test_full_isolation_on_a_ray_node(cluster: Any, tmp_path: Path) -> None:
    """The node (its Ray runs as root here) runs the job as the user's own account, in its cgroup."""
    args = ("--executor", "ray", "--ray-address", cluster.address, "--isolation", "full")
    with ServerProcess(tmp_path / "home", *args, env={**LOOPBACK, "AIFACTORY_ISOLATION": ""}) as srv:
        with srv.client() as admin:
            r = admin.post("/api/tokens", json={"user": "carol", "projects": ["default"]})
            assert r.status_code == 201, r.text
            token = r.json()["token"]
        with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as carol:
            script = 'id -un; echo "home=$HOME"; grep -c "job-" /proc/self/cgroup'
            job = run(carol, ["/bin/sh", "-c", script], gpus=1)
            lines = carol.get(f"/api/jobs/{job['id']}/logs").text.split()
    assert job["state"] == "succeeded", job
    assert lines[0] == "aif-carol" and lines[1].endswith(f"/job-{job['id']}") and int(lines[2]) >= 1, lines


def test_zz_a_lost_node_s_job_is_requeued_and_runs_elsewhere(server: ServerProcess, cluster: Any) -> None:
    """(Last in the module: it removes a node.) The job's node dies under it: no orphan process is
    left, the job is requeued with its attempt counted and runs on the other node."""
    marker = f"lost-node-{os.getpid()}"
    script = f'echo "on $AIFACTORY_PLACEMENT"; sleep 4 # {marker}'
    with server.client() as http:
        r = http.post("/api/jobs", json={"command": ["/bin/sh", "-c", script], "gpus": 4, "workdir": "/"})
        job_id = r.json()["id"]
        first = wait(http, job_id, {"running"})
        node = first["placement"].split(":")[0]
        deadline = time.monotonic() + 30
        while "on " not in http.get(f"/api/jobs/{job_id}/logs").text:  # its process runs on the node
            assert time.monotonic() < deadline
            time.sleep(0.1)
        victim = next(n for n in cluster.worker_nodes if n.all_processes and _label(n) == node)
        cluster.remove_node(victim)
        deadline = time.monotonic() + 30
        while (job := http.get(f"/api/jobs/{job_id}").json())["attempts"] < 2 or job["state"] != "running":
            assert job["state"] not in TERMINAL, (job["reason"], job["exit_code"], job["attempts"])
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        assert job["placement"].split(":")[0] != node
        done = wait(http, job_id, TERMINAL)
        nodes = {n["name"]: n["up"] for n in http.get("/api/nodes").json()}
    assert done["state"] == "succeeded" and done["attempts"] == 2, done
    assert nodes[node] is False
    # No orphan: nothing of the first attempt runs on (its wrapper died with the node's Ray processes).
    left = [p for p in Path("/proc").glob("[0-9]*") if _cmdline(p).count(marker) and "sleep" in _cmdline(p)]
    assert not left, left


def _label(node: Any) -> str:
    return str(getattr(node, "_ray_params", None) and node._ray_params.labels.get("aifactory/node"))


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
