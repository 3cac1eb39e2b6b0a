"""Jobs with no GPU on the live floor: `up --gpus 0` (CPU-only nodes), `submit --gpus 0 --cpus N`,
no GPU visible to such a job, and a factory with no GPU found and none declared refused at start."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aifactory.core.errors import SpecError
from aifactory.live import gpus
from aifactory.live.api.launch import ServerProcess
from aifactory.live.service import build_cluster
from aifactory.live.settings import LiveSettings

PY = sys.executable
AIFACTORY = [PY, "-c", "from aifactory.cli import main; main()"]
SHOW_GPUS = "import os; print('gpus=[' + os.environ['CUDA_VISIBLE_DEVICES'] + ']')"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("cpu") / "home"
    with ServerProcess(home, "--gpus", "0", "--nodes", "2", "--cpus-per-node", "2", "--memory-per-node", "4GiB") as srv:
        yield srv


def cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("AIFACTORY_URL", "AIFACTORY_TOKEN")}
    env = {**base, "AIFACTORY_HOME": str(server.home), "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([*AIFACTORY, *args], env=env, capture_output=True, text=True, timeout=60)


def wait_state(http: httpx.Client, job_id: int, states: set[str], timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (job := http.get(f"/api/jobs/{job_id}").json())["state"] not in states:
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    return job


def test_cpu_only_jobs_run_on_cpu_only_nodes_and_see_no_gpu(server: ServerProcess) -> None:
    done = cli(server, "submit", "-q", "--gpus", "0", "--cpus", "1", "--", PY, "-c", SHOW_GPUS)
    assert done.returncode == 0, done.stderr
    job_id = int(done.stdout)
    with server.client() as http:
        job = wait_state(http, job_id, {"succeeded", "failed"})
        assert job["state"] == "succeeded", job
        assert job["placement"] in ("node0:cpu", "node1:cpu")
        assert http.get(f"/api/jobs/{job_id}/logs").text.strip() == "gpus=[]"
        nodes = http.get("/api/nodes").json()
        assert [(n["gpu_count"], n["cpu_milli"]) for n in nodes] == [(0, 2000), (0, 2000)]


def test_cpu_only_jobs_queue_for_cpu_and_bad_ones_are_refused(server: ServerProcess) -> None:
    sleep = [PY, "-c", "import time; time.sleep(30)"]
    ids = [int(cli(server, "submit", "-q", "--gpus", "0", "--cpus", "2", "--", *sleep).stdout) for _ in range(3)]
    with server.client() as http:
        for job_id in ids[:2]:
            wait_state(http, job_id, {"running"})
        third = http.get(f"/api/jobs/{ids[2]}").json()
        assert third["state"] == "queued"
        assert third["pending_reason"] == "needs 2 CPUs (most free on a node: 0) per node"
        r = http.post("/api/jobs", json={"command": ["true"], "gpus": 0})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "gpus", r.text
        r = http.post("/api/jobs", json={"command": ["true"], "gpus": 1})
        assert r.status_code == 422 and "the largest node has 0" in r.text, r.text  # no node has a GPU
        for job_id in ids:
            http.post(f"/api/jobs/{job_id}/cancel")
        for job_id in ids:
            wait_state(http, job_id, {"cancelled"})


def test_no_gpu_found_and_none_declared_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(gpus, "discover", list)  # NVML finds nothing: the boundary
    with pytest.raises(SpecError) as err:
        build_cluster(LiveSettings(home=tmp_path))
    assert err.value.field == "gpus" and "--gpus 0 --cpus-per-node" in str(err.value)
    with pytest.raises(SpecError) as err:
        build_cluster(LiveSettings(home=tmp_path, gpus=0))  # CPU-only nodes with no CPU to ask for
    assert err.value.field == "gpus"
    cpu_only = build_cluster(LiveSettings(home=tmp_path, gpus=0, cpu_milli_per_node=4000))
    assert [(n.gpu_count, n.cpu_milli) for n in cpu_only] == [(0, 4000)]


def test_up_without_gpus_exits_2_with_one_line(tmp_path: Path) -> None:
    # This CI box has no GPU: NVML finds none, so `up` without --gpus must say so, not start empty.
    env = {**os.environ, "AIFACTORY_HOME": str(tmp_path / "home")}
    if gpus.discover():
        pytest.skip("this machine has GPUs")
    up = subprocess.run([*AIFACTORY, "up", "--port", "0"], env=env, capture_output=True, text=True, timeout=60)
    assert up.returncode == 2, up.stderr
    assert "no GPU found" in up.stderr and "Traceback" not in up.stderr and len(up.stderr.strip().splitlines()) == 1
