"""Projects and departments on the live floor: a projects file, the accounts, admin changes, fractions, estimates.

The CLI is run as a user runs it (`aifactory ...` subprocesses) against a real server.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aifactory.live.api.launch import ServerProcess
from aifactory.live.service import FactoryService
from aifactory.live.settings import LiveSettings

pytestmark = pytest.mark.usefixtures("no_leftovers")

AIFACTORY = [sys.executable, "-c", "from aifactory.cli import main; main()"]
TERMINAL = {"succeeded", "failed", "cancelled"}
PROJECTS = """
[[departments]]
name = "research"
quota = 3

[[projects]]
name = "vision"
department = "research"
quota = 2
limit = 4

[[projects]]
name = "speech"
department = "research"
quota = 1

[[projects]]
name = "ops"
quota = 1
limit = 1
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("projects")
    (root / "projects.toml").write_text(PROJECTS)
    with ServerProcess(root / "home", "--gpus", "4", "--projects", str(root / "projects.toml")) as srv:
        yield srv


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("AIFACTORY_URL", "AIFACTORY_TOKEN")}
    env = {**base, "AIFACTORY_HOME": str(home), "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([*AIFACTORY, *args], env=env, capture_output=True, text=True, timeout=60)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    line = result.stderr.strip()
    assert line.startswith("error:") and "\n" not in line and "Traceback" not in line, line
    assert all(w in line for w in words), line


def row(table: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is `first`."""
    (found,) = [line.split() for line in table.splitlines() if line.split()[:1] == [first]]
    return found


def wait_for(http: httpx.Client, job_id: int, states: set[str], timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = http.get(f"/api/jobs/{job_id}").json()
        if job["state"] in states or time.monotonic() > deadline:
            assert job["state"] in states, job
            return job
        time.sleep(0.05)


def submit(server: ServerProcess, *args: str) -> int:
    return int(ok(cli(server.home, "submit", "-q", *args)).strip())


def hold(gate: Path) -> list[str]:
    code = f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)"
    return ["--", sys.executable, "-c", code]


def test_up_refuses_a_bad_projects_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[projects]]\nname = "a"\nquota = -1\n')
    refused(cli(tmp_path / "home", "up", "--gpus", "2", "--port", "0", "--projects", str(bad)), "projects[0].quota")
    nopool = tmp_path / "pool.yaml"
    nopool.write_text("projects:\n  - {name: a, quota: 1, pool: gpu-h100}\n")
    refused(cli(tmp_path / "home", "up", "--gpus", "2", "--port", "0", "--projects", str(nopool)), "projects[0].pool")
    refused(cli(tmp_path / "home", "up", "--gpus", "2", "--projects", str(tmp_path / "missing.toml")), "missing.toml")
    assert not (tmp_path / "home" / "factory.db").exists()  # nothing stored


def test_projects_and_departments_from_the_file(server: ServerProcess) -> None:
    out = ok(cli(server.home, "projects"))
    assert row(out, "vision")[:5] == ["vision", "research", "2", "1", "4"]
    assert row(out, "ops")[:5] == ["ops", "-", "1", "1", "1"]
    assert "default" not in out  # a projects file replaces the first start's catch-all project
    assert row(out, "research")[-2:] == ["speech,", "vision"]
    with server.client() as http:
        (research,) = http.get("/api/departments").json()
        assert (research["quota"], research["projects"], research["in_use"]) == (3, ["speech", "vision"], 0)
    # Not preemptible, so within quota only: vision's guarantee is 2.
    refused(
        cli(server.home, "submit", "--project", "vision", "--gpus", "3", "--class", "interactive", "--", "true"),
        "priority_class",
        "quota of 2",
    )
    refused(
        cli(server.home, "submit", "--class", "batch", "--project", "vision", "--", "true"), "priority_class", "batch"
    )


def test_a_projects_file_is_stored_and_outlives_restarts(store_url: str, tmp_path: Path) -> None:
    file = tmp_path / "projects.yaml"
    file.write_text(
        "departments: [{name: research, quota: 2}]\nprojects: [{name: vision, department: research, quota: 2}]\n"
    )
    home = tmp_path / "home"

    async def main() -> None:
        first = LiveSettings(home=home, db_url=store_url, gpus=2, projects_file=file)
        async with await FactoryService.open(first) as svc:
            assert [(a.project, a.settings.quota, a.settings.department) for a in svc.projects()] == [
                ("vision", 2.0, "research")
            ]
        async with await FactoryService.open(LiveSettings(home=home, db_url=store_url, gpus=2)) as svc:
            assert [(a.project, a.settings.department) for a in svc.projects()] == [("vision", "research")]
            assert [(d.settings.name, d.settings.quota, d.projects) for d in svc.departments()] == [
                ("research", 2.0, ("vision",))
            ]

    asyncio.run(asyncio.wait_for(main(), 60))


def test_admin_changes_apply_at_run_time_and_others_get_403(server: ServerProcess, tmp_path: Path) -> None:
    gate = tmp_path / "go"
    with server.client() as http:
        first, second = submit(server, "--project", "ops", *hold(gate)), submit(server, "--project", "ops", *hold(gate))
        wait_for(http, first, {"running"})
        assert "limit" in http.get(f"/api/jobs/{second}").json()["pending_reason"]
        try:
            token = http.post("/api/tokens", json={"user": "alice", "projects": ["ops"]}).json()["token"]
            with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as alice:
                refusals = [
                    alice.put("/api/projects/ops", json={"quota": 4, "limit": 4}),
                    alice.put("/api/departments/infra", json={"quota": 1}),
                ]
                assert [r.status_code for r in refusals] == [403, 403]
                assert alice.get("/api/departments").json() == []  # ops is in no department
            assert http.put("/api/departments/infra", json={"quota": -1}).json()["detail"][0]["loc"][-1] == "quota"
            assert ok(cli(server.home, "department", "set", "infra", "--quota", "2")).startswith("department infra")
            ok(cli(server.home, "project", "set", "ops", "--quota", "1", "--limit", "2", "--department", "infra"))
            wait_for(http, second, {"running"})  # the raised limit lets the queued job start at once
            out = ok(cli(server.home, "projects"))
            assert row(out, "ops")[:6] == ["ops", "infra", "1", "1", "2", "2"]
            assert row(out, "ops")[6:8] == ["1", "0"]  # borrowed 1 over its quota, lent 0
            assert row(out, "infra")[-1] == "ops"
        finally:
            gate.touch()
            for job_id in (first, second):
                wait_for(http, job_id, TERMINAL)


def test_half_gpu_jobs_share_one_gpu(server: ServerProcess, tmp_path: Path) -> None:
    gate = tmp_path / "go"
    code = "import os, time\nprint('fraction', os.environ['AIFACTORY_GPU_FRACTION'], flush=True)\n"
    code += f"while not os.path.exists({str(gate)!r}): time.sleep(0.02)"
    ids = [submit(server, "--project", "vision", "--gpus", "0.5", "--", sys.executable, "-c", code) for _ in range(2)]
    with server.client() as http:
        try:
            for job_id in ids:
                wait_for(http, job_id, {"running"})
            out = ok(cli(server.home, "nodes"))
            shared = [line for line in out.splitlines() if all(f"job {i} " in line for i in ids)]
            assert len(shared) == 1 and shared[0].count("(0.50)") == 2, out
        finally:
            gate.touch()
        for job_id in ids:
            assert wait_for(http, job_id, TERMINAL)["state"] == "succeeded"
            assert "fraction 0.5\n" in http.get(f"/api/jobs/{job_id}/logs").text


def test_jobs_and_show_say_why_a_job_waits_and_when_it_may_start(server: ServerProcess, tmp_path: Path) -> None:
    gate = tmp_path / "go"
    with server.client() as http:
        big = submit(server, "--project", "vision", "--gpus", "4", "--time-limit", "1h", *hold(gate))
        small = submit(server, "--project", "vision", "--gpus", "1", *hold(gate))
        try:
            started = wait_for(http, big, {"running"})["started_at"]
            job = http.get(f"/api/jobs/{small}").json()
            assert job["state"] == "queued" and "at its limit" in job["pending_reason"]
            assert abs(job["estimated_start"] - (started + 3600)) < 1  # when the big job's time limit frees its GPUs
            assert http.get(f"/api/jobs/{big}").json()["estimated_start"] is None  # running: nothing to estimate
            note = row(ok(cli(server.home, "jobs")), str(small))
            assert "limit" in note and "~in" in note and ("59m" in " ".join(note) or "1h00m" in " ".join(note))
            shown = ok(cli(server.home, "show", str(small)))
            assert "pending" in shown and "estimated start" in shown
        finally:
            ok(cli(server.home, "cancel", str(big)))
            ok(cli(server.home, "cancel", str(small)))
            gate.touch()
            for job_id in (big, small):
                wait_for(http, job_id, TERMINAL)
