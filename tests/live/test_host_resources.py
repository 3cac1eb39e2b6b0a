"""CPU and memory on the live floor: wire fields, `up --cpus-per-node/--memory-per-node`, `submit --cpus/--memory`,
`nodes` showing what is free, and bad values refused with the field named (a real server, real processes)."""

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
from pydantic import ValidationError

from aifactory.live.api.launch import ServerProcess
from aifactory.live.service import build_cluster
from aifactory.live.settings import LiveSettings
from aifactory.live.store.models import placement_from_json, placement_to_json
from aifactory.live.wire import JobSubmit

PY = sys.executable
AIFACTORY = [PY, "-c", "from aifactory.cli import main; main()"]
SLEEP = [PY, "-c", "import time; time.sleep(30)"]


def test_wire_turns_cpus_and_memory_into_the_core_units() -> None:
    spec = JobSubmit.model_validate({"command": ["true"], "cpus": 2.5, "memory": "16GiB"}).to_spec("ann")
    assert (spec.cpu_milli, spec.memory_mib) == (2500, 16384)
    plain = JobSubmit.model_validate({"command": ["true"]}).to_spec("ann")
    assert (plain.cpu_milli, plain.memory_mib) == (0, 0)


@pytest.mark.parametrize(
    ("fields", "name"),
    [({"cpus": -1}, "cpus"), ({"cpus": "four"}, "cpus"), ({"cpus": True}, "cpus"), ({"memory": "lots"}, "memory")],
)
def test_wire_refuses_bad_cpus_and_memory_naming_the_field(fields: dict[str, Any], name: str) -> None:
    with pytest.raises(ValidationError) as err:
        JobSubmit.model_validate({"command": ["true"], **fields})
    assert [e["loc"] for e in err.value.errors()] == [(name,)]


def test_virtual_nodes_track_host_resources_only_when_told(tmp_path: Path) -> None:
    assert [n.cpu_milli for n in build_cluster(LiveSettings(home=tmp_path, gpus=2, nodes=2))] == [0, 0]
    told = LiveSettings(home=tmp_path, gpus=2, nodes=2, cpu_milli_per_node=8000, memory_mib_per_node=4096)
    assert [(n.cpu_free, n.memory_free) for n in build_cluster(told)] == [(8000, 4096), (8000, 4096)]


def test_a_placement_keeps_its_cpu_and_memory_in_the_store() -> None:
    from aifactory.core.job import Placement

    held = Placement((("node0", (0, 1)),), cpu_milli=4000, memory_mib=2048)
    assert placement_from_json(placement_to_json(held)) == held
    assert placement_from_json({"parts": [["node0", [0]]], "milli": 1000}).cpu_milli == 0  # rows written before


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("host") / "home"
    with ServerProcess(home, "--gpus", "2", "--cpus-per-node", "8", "--memory-per-node", "16GiB") as srv:
        yield srv


def cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("AIFACTORY_URL", "AIFACTORY_TOKEN")}
    env = {**base, "AIFACTORY_HOME": str(server.home), "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([*AIFACTORY, *args], env=env, capture_output=True, text=True, timeout=60)


def wait_state(http: httpx.Client, job_id: int, state: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = http.get(f"/api/jobs/{job_id}").json()
        if job["state"] == state or time.monotonic() > deadline:
            assert job["state"] == state, job
            return job
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("fields", "name", "text"),
    [
        ({"cpus": -2}, "cpus", "greater than or equal to 0"),
        ({"cpus": 9}, "cpus", "asks 9 CPUs per node, the largest node has 8"),
        ({"memory": "32GiB"}, "memory", "asks 32768 MiB per node, the largest node has 16384 MiB"),
        ({"memory": 0}, "memory", "must be positive"),
    ],
)
def test_api_refuses_bad_cpus_and_memory_naming_the_field(
    server: ServerProcess, fields: dict[str, Any], name: str, text: str
) -> None:
    with server.client() as http:
        before = [j["id"] for j in http.get("/api/jobs").json()]
        r = http.post("/api/jobs", json={"command": ["true"], **fields})
        assert r.status_code == 422, r.text
        (item,) = r.json()["detail"]
        assert name in item["loc"] and text in item["msg"], item
        assert [j["id"] for j in http.get("/api/jobs").json()] == before


def test_cli_submit_holds_cpu_and_memory_and_nodes_shows_what_is_free(server: ServerProcess) -> None:
    first = cli(server, "submit", "-q", "--cpus", "6", "--memory", "4GiB", "--", *SLEEP)
    assert first.returncode == 0, first.stderr
    second = cli(server, "submit", "-q", "--cpus", "4", "--", *SLEEP)  # 2 CPUs left beside the first: waits
    assert second.returncode == 0, second.stderr
    a, b = int(first.stdout), int(second.stdout)
    with server.client() as http:
        job = wait_state(http, a, "running")
        assert (job["spec"]["cpu_milli"], job["spec"]["memory_mib"]) == (6000, 4096)
        waiting = http.get(f"/api/jobs/{b}").json()
        assert waiting["state"] == "queued"
        assert waiting["pending_reason"] == "needs 4 CPUs (most free on a node: 2) per node beside its GPUs"
        (node,) = http.get("/api/nodes").json()
        assert (node["cpu_free_milli"], node["memory_free_mib"]) == (2000, 12288)
        table = cli(server, "nodes")
        assert table.returncode == 0, table.stderr
        assert "2/8" in table.stdout and "12/16 GiB" in table.stdout, table.stdout
        assert http.post(f"/api/jobs/{a}/cancel").status_code == 200
        wait_state(http, b, "running")  # the CPUs came back with the first job's end
        assert http.post(f"/api/jobs/{b}/cancel").status_code == 200
        wait_state(http, b, "cancelled")
        (node,) = http.get("/api/nodes").json()
        assert (node["cpu_free_milli"], node["memory_free_mib"]) == (8000, 16384)


def test_cli_refuses_bad_host_options_with_exit_2(server: ServerProcess, tmp_path: Path) -> None:
    result = cli(server, "submit", "--cpus", "100", "--", "true")
    assert result.returncode == 2 and "cpus" in result.stderr and "Traceback" not in result.stderr, result.stderr
    up = subprocess.run(
        [*AIFACTORY, "up", "--gpus", "1", "--memory-per-node", "lots"],
        env={**os.environ, "AIFACTORY_HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert up.returncode == 2 and "--memory-per-node" in up.stderr and "Traceback" not in up.stderr, up.stderr
