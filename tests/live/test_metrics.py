"""/metrics and job telemetry through the real server, on a fake NVML of two GPUs (the pynvml
boundary: tests/fakes/pynvml.py on the server's PYTHONPATH): names, labels, and values that
match what the API says."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aifactory.live.api.launch import ServerProcess

FAKES = Path(__file__).resolve().parents[1] / "fakes"


def write_gpus(path: Path, utils: list[float]) -> None:
    gpus = [
        {
            "name": "NVIDIA H100 80GB HBM3",
            "uuid": f"GPU-{i}",
            "total_mib": 81559,
            "used_mib": 1000 + i,
            "util": u,
            "power_mw": 300_000,
            "temp": 55,
        }
        for i, u in enumerate(utils)
    ]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"gpus": gpus}))
    os.replace(tmp, path)  # the server reads it whole, never half-written


@pytest.fixture(scope="module")
def nvml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("nvml") / "gpus.json"
    write_gpus(path, [0, 0])
    return path


@pytest.fixture(scope="module")
def server(nvml: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"PYTHONPATH": f"{FAKES}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "AIFACTORY_FAKE_NVML": str(nvml)}
    with ServerProcess(tmp_path_factory.mktemp("metrics") / "home", "--telemetry", "0.2", env=env) as srv:
        with srv.client() as admin:
            assert admin.put("/api/projects/other", json={"quota": 0}).status_code == 200
        yield srv


def scrape(http: httpx.Client) -> dict[str, list[tuple[dict[str, str], float]]]:
    r = http.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def one(metrics: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    found = [v for lab, v in metrics.get(name, []) if all(lab.get(k) == w for k, w in labels.items())]
    assert len(found) == 1, (name, labels, metrics.get(name))
    return found[0]


def wait_for(check: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return value


def test_metrics_need_a_token(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/metrics").status_code == 401


def test_a_busy_job_shows_in_metrics_and_on_its_page(server: ServerProcess, nvml: Path) -> None:
    with server.client() as http:
        nodes = http.get("/api/nodes").json()
        assert [(n["gpu_count"], n["gpu_model"]) for n in nodes] == [(2, "NVIDIA H100 80GB HBM3")]  # found by NVML
        job_id = http.post("/api/jobs", json={"command": ["sleep", "30"], "gpus": 1}).json()["id"]
        job = wait_for(lambda: (j := http.get(f"/api/jobs/{job_id}").json())["state"] == "running" and j)
        gpu = int(job["placement"].split(":")[1])
        write_gpus(nvml, [80 if i == gpu else 0 for i in range(2)])
        busy = wait_for(lambda: (j := http.get(f"/api/jobs/{job_id}").json())["gpu_util_peak"] == 80 and j)
        m = scrape(http)
        project = {p["name"]: p for p in http.get("/api/projects").json()}["default"]
        assert one(m, "aifactory_gpu_utilization_ratio", gpu=str(gpu), job=str(job_id), project="default") == 0.8
        assert one(m, "aifactory_gpu_utilization_ratio", gpu=str(1 - gpu), job="") == 0
        assert one(m, "aifactory_gpu_memory_total_bytes", gpu=str(gpu)) == 81559 * 1024 * 1024
        assert one(m, "aifactory_gpu_power_watts", gpu=str(gpu), uuid=f"GPU-{gpu}") == 300
        assert one(m, "aifactory_jobs", state="running", project="default") == 1
        assert one(m, "aifactory_project_in_use_gpus", project="default") == project["in_use"] == 1
        assert one(m, "aifactory_project_quota_gpus", project="default") == project["quota"]
        assert one(m, "aifactory_node_gpus_allocated", node=nodes[0]["name"]) == 1
        assert one(m, "aifactory_jobs_submitted_total", project="default") >= 1
        assert one(m, "aifactory_job_wait_seconds_count", project="default") >= 1
        assert busy["gpu_util_mean"] > 0 and busy["idle_since"] is None
        # A tenant of another project: the GPU is in use, but whose it is is not theirs to see.
        r = http.post("/api/tokens", json={"user": "eve", "projects": ["other"]})
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {r.json()['token']}"}) as eve:
            seen = scrape(eve)
        assert one(seen, "aifactory_gpu_utilization_ratio", gpu=str(gpu)) == 0.8
        assert all(lab["job"] == "" for lab, _ in seen["aifactory_gpu_utilization_ratio"])
        assert all(lab["project"] != "default" for lab, _ in seen.get("aifactory_project_quota_gpus", []))
        assert "aifactory_job_gpu_energy_joules_total" not in seen or not seen["aifactory_job_gpu_energy_joules_total"]
        # Idle: the GPU drops to 0 and the job says since when.
        write_gpus(nvml, [0, 0])
        idle = wait_for(lambda: (j := http.get(f"/api/jobs/{job_id}").json())["idle_since"] and j)
        assert idle["idle_since"] >= busy["started_at"]
        http.post(f"/api/jobs/{job_id}/cancel")
        wait_for(lambda: http.get(f"/api/jobs/{job_id}").json()["state"] == "cancelled")
        done = http.get(f"/api/jobs/{job_id}").json()  # its usage, stored when it ended
        assert done["gpu_util_peak"] == 80 and done["energy_wh"] > 0
        m = scrape(http)
        assert one(m, "aifactory_jobs_finished_total", project="default", state="cancelled") >= 1


def test_usage_report_through_the_cli(server: ServerProcess, nvml: Path) -> None:
    """A job that ran busy: its GPU-hours, the busy part measured and its energy, by project."""
    import csv
    import io

    from .test_cli import cli, ok, refused

    with server.client() as http:
        job_id = http.post("/api/jobs", json={"command": ["sleep", "30"], "gpus": 1}).json()["id"]
        job = wait_for(lambda: (j := http.get(f"/api/jobs/{job_id}").json())["state"] == "running" and j)
        gpu = int(job["placement"].split(":")[1])
        write_gpus(nvml, [90 if i == gpu else 0 for i in range(2)])
        wait_for(lambda: (http.get(f"/api/jobs/{job_id}").json()["gpu_util_peak"] or 0) >= 90)
        time.sleep(0.5)
        http.post(f"/api/jobs/{job_id}/cancel")
        wait_for(lambda: http.get(f"/api/jobs/{job_id}").json()["state"] == "cancelled")
    write_gpus(nvml, [0, 0])
    report = json.loads(ok(cli(server, "usage", "--since", "1h", "--json")))
    row = {r["key"]: r for r in report["rows"]}["default"]
    assert row["jobs"] >= 1 and row["gpu_hours"] > 0 and 0 < row["busy_gpu_hours"] <= row["gpu_hours"]
    assert row["energy_kwh"] > 0 and row["cost"] == 0  # no price set
    table = list(csv.DictReader(io.StringIO(ok(cli(server, "usage", "--by", "user", "--csv")))))
    assert table[0]["user"] and float(table[0]["gpu_hours"]) > 0
    refused(cli(server, "usage", "--by", "team"), "by")
    refused(cli(server, "usage", "--since", "yesterday"), "since")


def test_an_idle_interactive_job_is_stopped_by_its_projects_idle_timeout(server: ServerProcess, nvml: Path) -> None:
    write_gpus(nvml, [0, 0])
    with server.client() as http:
        r = http.put("/api/projects/lab", json={"quota": 1, "idle_timeout_s": 1})
        assert r.status_code == 200 and r.json()["idle_timeout_s"] == 1, r.text
        body = {"command": ["sleep", "60"], "gpus": 1, "project": "lab", "priority_class": "interactive"}
        job_id = http.post("/api/jobs", json=body).json()["id"]
        job = wait_for(lambda: (j := http.get(f"/api/jobs/{job_id}").json())["state"] == "cancelled" and j)
        assert "idle GPUs" in job["reason"] and "lab" in job["reason"], job
        assert http.put("/api/projects/lab", json={"quota": 1, "idle_timeout_s": -1}).status_code == 422


def test_the_grafana_dashboard_asks_only_for_metrics_the_floor_exports(server: ServerProcess) -> None:
    import re

    dashboard = json.loads(
        (Path(__file__).resolve().parents[2] / "docs" / "grafana" / "aifactory-floor.json").read_text()
    )
    with server.client() as http:
        text = http.get("/metrics").text
    exported = set()
    for family in text_string_to_metric_families(text):  # every family, with samples now or not
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
        exported |= {family.name + suffix for suffix in suffixes}
    asked = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\baifactory_[a-z_]+", target["expr"])
    }
    assert asked and asked <= exported, asked - exported
