"""Multi-node gangs on the local executor (virtual nodes): one process per node with torchrun's
rendezvous variables and its own GPUs; the first rank to fail stops the others and the gang ends
as one job; logs by rank or all together; a real torchrun DDP job (gloo on CPU) across two nodes."""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from aifactory.live.api.launch import ServerProcess

from .test_cli import cli, ok

TERMINAL = {"succeeded", "failed", "cancelled"}
SHOW = 'echo "$NODE_RANK/$NNODES world=$WORLD_SIZE local=$LOCAL_WORLD_SIZE gpus=$CUDA_VISIBLE_DEVICES '
SHOW += 'master=$MASTER_ADDR:$MASTER_PORT node=$AIFACTORY_NODE"'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("gang") / "home", "--gpus", "2", "--nodes", "2") as srv:
        yield srv


def run(http: httpx.Client, script: str, **fields: Any) -> dict[str, Any]:
    body = {"command": ["/bin/sh", "-c", script], "gpus": 4, "multi_node": True, **fields}
    r = http.post("/api/jobs", json=body)
    assert r.status_code == 201, r.text
    deadline = time.monotonic() + 60
    while (job := http.get(f"/api/jobs/{r.json()['id']}").json())["state"] not in TERMINAL:
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    return job


def test_one_process_per_node_with_its_rank_and_own_gpus(server: ServerProcess) -> None:
    with server.client() as http:
        job = run(http, SHOW)
        assert job["state"] == "succeeded" and job["placement"].count(":") == 2, job
        rank0 = http.get(f"/api/jobs/{job['id']}/logs", params={"rank": 0}).text.split()
        rank1 = http.get(f"/api/jobs/{job['id']}/logs", params={"rank": 1}).text.split()
        both = http.get(f"/api/jobs/{job['id']}/logs").text
        assert http.get(f"/api/jobs/{job['id']}/logs", params={"rank": 2}).status_code == 422
    assert rank0[:3] == ["0/2", "world=4", "local=2"] and rank1[:3] == ["1/2", "world=4", "local=2"]
    assert rank0[3] == "gpus=0,1" and rank1[3] == "gpus=0,1"  # each node's own two GPUs, not 0,1,0,1
    assert rank0[4] == rank1[4] and rank0[4].startswith("master=127.0.0.1:")  # one rendezvous
    assert {rank0[5], rank1[5]} == {"node=node0", "node=node1"}
    assert sorted(both.splitlines()) == sorted([f"[rank 0] {' '.join(rank0)}", f"[rank 1] {' '.join(rank1)}"])
    followed = ok(cli(server, "logs", "-f", "--rank", "1", str(job["id"])))
    assert followed.split() == rank1


def test_the_first_rank_to_fail_ends_the_gang(server: ServerProcess) -> None:
    script = '[ "$NODE_RANK" = 1 ] && { sleep 0.5; exit 7; }; trap "echo got TERM; exit 143" TERM; sleep 60 & wait'
    started = time.monotonic()
    with server.client() as http:
        job = run(http, script)
        log = http.get(f"/api/jobs/{job['id']}/logs").text
    assert job["state"] == "failed" and job["exit_code"] == 7 and job["reason"].startswith("rank 1"), job
    assert "[rank 0] got TERM" in log  # rank 0 was stopped, not left hanging
    assert time.monotonic() - started < 20


def test_cancel_stops_every_rank(server: ServerProcess) -> None:
    with server.client() as http:
        r = http.post("/api/jobs", json={"command": ["sleep", "60"], "gpus": 4, "multi_node": True})
        job_id = r.json()["id"]
        while http.get(f"/api/jobs/{job_id}").json()["state"] != "running":
            time.sleep(0.05)
        time.sleep(0.3)
        http.post(f"/api/jobs/{job_id}/cancel")
        deadline = time.monotonic() + 30
        while (job := http.get(f"/api/jobs/{job_id}").json())["state"] not in TERMINAL:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert job["state"] == "cancelled"


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")
def test_a_real_torchrun_ddp_job_across_two_nodes(server: ServerProcess, tmp_path: Any) -> None:
    """examples/ddp_gloo.py under torchrun on two virtual nodes: gloo on CPU, an all_reduce."""
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "ddp_gloo.py"
    torchrun = (
        f"exec {sys.executable} -m torch.distributed.run --nnodes=$NNODES --node_rank=$NODE_RANK "
        f"--nproc_per_node=$LOCAL_WORLD_SIZE --master_addr=$MASTER_ADDR --master_port=$MASTER_PORT {example}"
    )
    with server.client() as http:
        job = run(http, torchrun, env={"OMP_NUM_THREADS": "1"})
        log = http.get(f"/api/jobs/{job['id']}/logs").text
    assert job["state"] == "succeeded", (job, log[-3000:])
    sums = [line for line in log.splitlines() if "all_reduce" in line]
    assert len(sums) == 4 and all(line.endswith("sum=6.0 world=4") for line in sums), log[-3000:]


def test_drain_and_resume_a_node(server: ServerProcess) -> None:
    with server.client() as http:
        assert "drained" in ok(cli(server, "node", "drain", "node1"))
        nodes = {n["name"]: n for n in http.get("/api/nodes").json()}
        assert (nodes["node0"]["up"], nodes["node1"]["up"]) == (True, False)
        r = http.post("/api/jobs", json={"command": ["true"], "gpus": 4, "multi_node": True})
        job = r.json()["id"]
        time.sleep(0.5)
        assert http.get(f"/api/jobs/{job}").json()["state"] == "queued"  # needs both nodes
        assert "drained" in ok(cli(server, "nodes"))
        ok(cli(server, "node", "resume", "node1"))
        deadline = time.monotonic() + 20
        while http.get(f"/api/jobs/{job}").json()["state"] != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert http.post("/api/nodes/nodeX/drain").status_code == 404
        token = http.post("/api/tokens", json={"user": "u", "projects": ["default"]}).json()["token"]
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as user:
            assert user.post("/api/nodes/node0/drain").status_code == 403
