"""kill -9 the real server while jobs run, start it again: every job is accounted for (invariant 3)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from aifactory.live.api.launch import ServerProcess

PY = sys.executable
TERMINAL = {"succeeded", "failed", "cancelled"}


def submit(http: httpx.Client, code: str, gpus: int = 1) -> int:
    r = http.post("/api/jobs", json={"command": [PY, "-c", code], "gpus": gpus})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def wait_for(http: httpx.Client, job_id: int, states: set[str], timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = http.get(f"/api/jobs/{job_id}").json()
        if job["state"] in states or time.monotonic() > deadline:
            assert job["state"] in states, job
            return job
        time.sleep(0.05)


def wait_file(path: Path, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while not path.is_file() or not path.read_text():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)
    return path.read_text()


def test_kill_9_and_restart_loses_no_job(tmp_path: Path) -> None:
    home, go, pid_file = tmp_path / "home", tmp_path / "go", tmp_path / "victim.pid"
    first = ServerProcess(home, "--gpus", "4").start()
    second = ServerProcess(home, "--gpus", "4")
    try:
        with first.client() as http:
            # Alive across the crash: waits for the `go` file, so it is still running after the restart.
            survivor = submit(
                http, f"import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.05)\nprint('survived')"
            )
            # Ends while the server is down: its real exit code must still be recorded.
            finisher = submit(http, "import time, sys; time.sleep(0.5); sys.exit(5)")
            # Killed while the server is down: must end failed, with a reason.
            victim = submit(
                http, f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
            )
            waiting = submit(http, "print('ran after the restart')", gpus=4)
            for job_id in (survivor, finisher, victim):
                wait_for(http, job_id, {"running"})
            assert http.get(f"/api/jobs/{waiting}").json()["state"] == "queued"
            victim_pid = int(wait_file(pid_file))
        first.kill9()
        os.killpg(os.getpgid(victim_pid), signal.SIGKILL)
        time.sleep(1.0)  # the finisher exits meanwhile
        second.start()
        with second.client() as http:
            assert http.get(f"/api/jobs/{survivor}").json()["state"] == "running"
            go.write_text("go")
            assert wait_for(http, survivor, TERMINAL)["exit_code"] == 0
            assert http.get(f"/api/jobs/{survivor}/logs").text == "survived\n"
            done = wait_for(http, finisher, TERMINAL)
            assert (done["state"], done["exit_code"]) == ("failed", 5)
            lost = wait_for(http, victim, TERMINAL)
            assert lost["state"] == "failed" and lost["reason"]
            assert wait_for(http, waiting, TERMINAL)["state"] == "succeeded"
            jobs = {j["id"]: j for j in http.get("/api/jobs").json()}
            assert set(jobs) == {survivor, finisher, victim, waiting}
            for job_id in jobs:
                history = http.get(f"/api/jobs/{job_id}").json()["history"]
                assert sum(e["new"] in TERMINAL for e in history) == 1
    finally:
        go.write_text("go")
        first.stop()
        second.stop()
