"""Issue 3's live reclaim: through the real HTTP server, real processes get SIGTERM and run again.

4 virtual GPUs, projects `a` and `b` with a guarantee of 2 each (from a projects file),
no minimum runtime: `a` takes all 4 GPUs (borrowing `b`'s 2); when `b` asks for 2, one of
`a`'s jobs is SIGTERMed, requeued with its attempt count, and runs again once `b` is done.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aifactory.live.api.launch import ServerProcess

pytestmark = pytest.mark.usefixtures("no_leftovers")

TERMINAL = {"succeeded", "failed", "cancelled"}
PROJECTS = """
[[projects]]
name = "a"
quota = 2

[[projects]]
name = "b"
quota = 2
"""


def trapping_job(gate: Path) -> str:
    """Prints `start`, then waits for `gate`; on SIGTERM prints `got SIGTERM` and exits 143."""
    return (
        "import os, signal, sys, time\n"
        "def stop(*_):\n"
        "    print('got SIGTERM', flush=True)\n"
        "    sys.exit(143)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "print('start', flush=True)\n"
        f"while not os.path.exists({str(gate)!r}): time.sleep(0.02)\n"
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    projects = tmp_path / "projects.toml"
    projects.write_text(PROJECTS)
    args = ("--gpus", "4", "--projects", str(projects), "--min-runtime", "0", "--preempt-grace", "5")
    with ServerProcess(tmp_path / "home", *args) as srv:
        yield srv


def submit(http: httpx.Client, project: str, code: str, gpus: float = 2, **fields: Any) -> dict[str, Any]:
    r = http.post(
        "/api/jobs", json={"command": [sys.executable, "-c", code], "project": project, "gpus": gpus, **fields}
    )
    assert r.status_code == 201, r.text
    return r.json()


def wait_for(http: httpx.Client, job_id: int, check: Any, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = http.get(f"/api/jobs/{job_id}").json()
        if check(job) or time.monotonic() > deadline:
            assert check(job), job
            return job
        time.sleep(0.05)


def log_of(http: httpx.Client, job_id: int) -> str:
    return http.get(f"/api/jobs/{job_id}/logs").text


def accounts(http: httpx.Client) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in http.get("/api/projects").json()}


def test_owner_reclaims_borrowed_gpus_from_a_running_job(server: ServerProcess, tmp_path: Path) -> None:
    a_gate, b_gate = tmp_path / "a-go", tmp_path / "b-go"
    with server.client() as http:
        a1, a2 = (submit(http, "a", trapping_job(a_gate)) for _ in range(2))
        for job in (a1, a2):
            wait_for(http, job["id"], lambda j: j["state"] == "running")
            wait_for(http, job["id"], lambda j: "start" in log_of(http, j["id"]))
        acc = accounts(http)
        assert (acc["a"]["in_use"], acc["a"]["borrowed"], acc["b"]["lent"]) == (4, 2, 2)

        # Not preemptible, so only within quota: 3 GPUs is more than a's guarantee.
        r = http.post(
            "/api/jobs", json={"command": ["true"], "project": "a", "gpus": 3, "priority_class": "interactive"}
        )
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "priority_class", r.text

        b1 = submit(http, "b", trapping_job(b_gate))
        b1 = wait_for(http, b1["id"], lambda j: j["state"] == "running")
        victims = [j for j in (a1, a2) if "got SIGTERM" in log_of(http, j["id"])]
        assert len(victims) == 1, [log_of(http, j["id"]) for j in (a1, a2)]
        victim = http.get(f"/api/jobs/{victims[0]['id']}").json()
        assert victim["state"] == "queued" and victim["attempts"] == 1
        assert [(e["old"], e["new"]) for e in victim["history"]][-2:] == [
            ("running", "preempted"),
            ("preempted", "queued"),
        ]
        assert victim["history"][-2]["reason"].startswith("preempted")
        acc = accounts(http)
        assert (acc["a"]["in_use"], acc["a"]["borrowed"], acc["b"]["in_use"], acc["a"]["queued"]) == (2, 0, 2, 1)

        b_gate.touch()  # b is done: the victim runs again, and this time is left alone
        assert wait_for(http, b1["id"], lambda j: j["state"] in TERMINAL)["state"] == "succeeded"
        wait_for(http, victim["id"], lambda j: j["state"] == "running" and j["attempts"] == 2)
        a_gate.touch()
        for job in (a1, a2):
            assert wait_for(http, job["id"], lambda j: j["state"] in TERMINAL)["state"] == "succeeded"
        again = http.get(f"/api/jobs/{victim['id']}").json()
        assert [e["new"] for e in again["history"]] == [
            "queued",
            "running",
            "preempted",
            "queued",
            "running",
            "succeeded",
        ]
        assert log_of(http, victim["id"]).count("start") == 2
