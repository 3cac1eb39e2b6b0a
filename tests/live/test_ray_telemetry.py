"""GPU telemetry on Ray nodes: a sampler on each node reads its GPUs (a fake NVML on the nodes'
PYTHONPATH: the pynvml boundary) and the job's GPU process, found on the node by the job id the
factory put in its environment; the server's /metrics shows them with the job's labels."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from aifactory.live.api.launch import ServerProcess

from .conftest import RAY_LOOPBACK, ray_cluster
from .test_metrics import FAKES, write_gpus

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.xdist_group("ray")


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    nvml = tmp_path_factory.mktemp("nvml") / "gpus.json"
    write_gpus(nvml, [0, 0])
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "AIFACTORY_FAKE_NVML")}
    # The nodes' Ray processes (and so the probe and the samplers) inherit these.
    os.environ["PYTHONPATH"] = f"{FAKES}{os.pathsep}{saved['PYTHONPATH'] or ''}"
    os.environ["AIFACTORY_FAKE_NVML"] = str(nvml)
    try:
        with ray_cluster({"g1": 2}) as c:
            yield c, nvml
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_a_ray_nodes_gpus_are_read_on_the_node(nodes: tuple[Any, Path], tmp_path: Path) -> None:
    cluster, nvml = nodes
    args = ("--executor", "ray", "--ray-address", cluster.address, "--telemetry", "0.3")
    with ServerProcess(tmp_path / "home", *args, env=RAY_LOOPBACK) as srv, srv.client() as http:
        [node] = http.get("/api/nodes").json()
        assert (node["name"], node["gpu_count"], node["gpu_model"]) == ("g1", 2, "NVIDIA H100 80GB HBM3")  # probed
        # The job says it runs on its GPU at 70 % with 1234 MiB: the fake driver then answers so.
        gpus = [{"name": "NVIDIA H100 80GB HBM3", "uuid": f"GPU-{i}", "total_mib": 81559, "util": 0} for i in range(2)]
        script = (
            "import json, os, time\n"
            "g = int(os.environ['CUDA_VISIBLE_DEVICES'])\n"
            f"gpus = {gpus!r}\n"
            "gpus[g].update(util=70, procs=[[os.getpid(), 1234]])\n"
            f"open({str(nvml)!r} + '.tmp', 'w').write(json.dumps({{'gpus': gpus}}))\n"
            f"os.replace({str(nvml)!r} + '.tmp', {str(nvml)!r})\n"
            "time.sleep(60)\n"
        )
        job_id = http.post("/api/jobs", json={"command": ["python3", "-c", script], "gpus": 1, "workdir": "/"}).json()[
            "id"
        ]
        deadline = time.monotonic() + 60
        while True:
            samples = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(http.get("/metrics").text)
                for s in f.samples
            }
            util = [
                v
                for (n, lab), v in samples.items()
                if n == "aifactory_gpu_utilization_ratio" and ("job", str(job_id)) in lab
            ]
            memory = [
                v
                for (n, lab), v in samples.items()
                if n == "aifactory_job_gpu_memory_used_bytes" and ("job", str(job_id)) in lab
            ]
            if util == [0.7] and memory == [1234 * 1024 * 1024]:
                break
            assert time.monotonic() < deadline, (util, memory, http.get(f"/api/jobs/{job_id}").json())
            time.sleep(0.3)
        assert http.get(f"/api/jobs/{job_id}").json()["gpu_util_peak"] == 70
        http.post(f"/api/jobs/{job_id}/cancel")
        while http.get(f"/api/jobs/{job_id}").json()["state"] != "cancelled":
            assert time.monotonic() < deadline + 30
            time.sleep(0.1)
    write_gpus(nvml, [0, 0])
    assert json.loads(nvml.read_text())["gpus"][0]["util"] == 0
