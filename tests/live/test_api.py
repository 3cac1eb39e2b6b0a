"""The HTTP API against a real server (uvicorn in a subprocess, 4 virtual GPUs, SQLite) running real jobs."""

from __future__ import annotations

import os
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aifactory.live.api.launch import ServerProcess

PY = sys.executable
TERMINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("api") / "home", "--gpus", "4") as srv:
        yield srv


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def submit(http: httpx.Client, code: str, **fields: Any) -> dict[str, Any]:
    r = http.post("/api/jobs", json={"command": [PY, "-c", code], **fields})
    assert r.status_code == 201, r.text
    return r.json()


def job_ids(http: httpx.Client) -> list[int]:
    return [j["id"] for j in http.get("/api/jobs").json()]


def wait_for(http: httpx.Client, job_id: int, states: set[str], timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = http.get(f"/api/jobs/{job_id}").json()
        if job["state"] in states or time.monotonic() > deadline:
            assert job["state"] in states, job
            return job
        time.sleep(0.05)


def wait_log(http: httpx.Client, job_id: int, text: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not http.get(f"/api/jobs/{job_id}/logs").text.startswith(text):
        assert time.monotonic() < deadline, f"job {job_id} never logged {text!r}"
        time.sleep(0.05)


def test_health_needs_no_token_and_tells_nothing(server: ServerProcess) -> None:
    r = httpx.get(f"{server.url}/api/health")
    assert r.status_code == 200
    assert set(r.json()) == {"status", "version"}


def test_openapi_schema_lists_the_routes(server: ServerProcess) -> None:
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    assert {"/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/cancel", "/api/nodes"} <= set(paths)


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic abc", "Bearer"])
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/jobs"), ("POST", "/api/jobs"), ("GET", "/api/jobs/1"), ("GET", "/api/nodes")],
)
def test_requests_without_a_valid_token_get_401(
    server: ServerProcess, header: str | None, method: str, path: str
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    r = httpx.request(method, f"{server.url}{path}", headers=headers, json={"command": ["true"]})
    assert r.status_code == 401
    assert "token" in r.json()["detail"].lower() or "authorization" in r.json()["detail"].lower()


def test_token_file_is_private(server: ServerProcess) -> None:
    mode = stat.S_IMODE(os.stat(server.home / "token").st_mode)
    assert mode == 0o600


def test_submit_run_show_and_logs(http: httpx.Client) -> None:
    code = "import os; print('hello'); print('gpus', os.environ['CUDA_VISIBLE_DEVICES']); print('bye')"
    job = submit(http, code, gpus=2, name="hello", env={"GREETING": "hi"})
    assert job["state"] in {"queued", "running"}
    assert job["user"] and job["project"] == "default"
    done = wait_for(http, job["id"], TERMINAL)
    assert done["state"] == "succeeded" and done["exit_code"] == 0
    assert [(e["old"], e["new"]) for e in done["history"]] == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "succeeded"),
    ]
    times = [e["at"] for e in done["history"]]
    assert times == sorted(times)
    assert done["started_at"] <= done["finished_at"] and done["runtime_s"] >= 0
    assert done["placement"].startswith("node0:") and done["name"] == "hello"
    log = http.get(f"/api/jobs/{job['id']}/logs").text
    indices = done["placement"].split(":")[1]
    assert log.splitlines() == ["hello", f"gpus {indices}", "bye"]
    assert http.get(f"/api/jobs/{job['id']}/logs", params={"tail": 1}).text == "bye\n"
    listed = http.get("/api/jobs", params={"state": "succeeded"}).json()
    assert job["id"] in [j["id"] for j in listed]
    assert all(j["state"] == "succeeded" for j in listed)


def test_failing_job_records_its_exit_code(http: httpx.Client) -> None:
    job = submit(http, "import sys; sys.exit(3)")
    done = wait_for(http, job["id"], TERMINAL)
    assert done["state"] == "failed" and done["exit_code"] == 3 and "3" in done["reason"]


def test_follow_streams_until_the_job_ends(http: httpx.Client, server: ServerProcess) -> None:
    code = "import time\nfor i in range(5):\n    print('line', i, flush=True); time.sleep(0.2)"
    job = submit(http, code)
    started = time.monotonic()
    with server.client() as c, c.stream("GET", f"/api/jobs/{job['id']}/logs", params={"follow": "true"}) as r:
        assert r.status_code == 200
        text = "".join(r.iter_text())
    assert text.splitlines() == [f"line {i}" for i in range(5)]
    assert time.monotonic() - started >= 0.8  # it streamed while the job ran, not after
    assert http.get(f"/api/jobs/{job['id']}").json()["state"] == "succeeded"


def test_cancel_running_then_queued(http: httpx.Client) -> None:
    runner = submit(http, "import time; print('up', flush=True); time.sleep(60)", gpus=4)
    wait_for(http, runner["id"], {"running"})
    wait_log(http, runner["id"], "up\n")  # its process has started: the cancel meets a live job
    waiting = submit(http, "print('never')", gpus=4)
    queued = http.get(f"/api/jobs/{waiting['id']}").json()
    assert queued["state"] == "queued" and "4" in queued["pending_reason"]
    r = http.post(f"/api/jobs/{waiting['id']}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert http.post(f"/api/jobs/{runner['id']}/cancel").status_code == 200
    done = wait_for(http, runner["id"], TERMINAL)
    assert (done["state"], done["exit_code"]) == ("cancelled", -15), done  # SIGTERM was enough
    again = http.post(f"/api/jobs/{runner['id']}/cancel")
    assert again.status_code == 409 and "cancelled" in again.json()["detail"]
    assert http.get(f"/api/jobs/{waiting['id']}/logs").text == ""


def test_unknown_job_is_404(http: httpx.Client) -> None:
    for r in (http.get("/api/jobs/987654"), http.post("/api/jobs/987654/cancel"), http.get("/api/jobs/987654/logs")):
        assert r.status_code == 404 and "987654" in r.json()["detail"]


def test_nodes_show_gpus_and_holders(http: httpx.Client) -> None:
    job = submit(http, "import time; time.sleep(30)", gpus=3)
    wait_for(http, job["id"], {"running"})
    try:
        (node,) = http.get("/api/nodes").json()
        assert node["name"] == "node0" and node["gpu_count"] == 4 and len(node["gpus"]) == 4
        held = [g for g in node["gpus"] if any(h["job_id"] == job["id"] for h in g["holders"])]
        assert len(held) == 3 and held[0]["holders"][0]["milli"] == 1000
        (default,) = [p for p in http.get("/api/projects").json() if p["name"] == "default"]
        assert default["in_use"] >= 3 and default["running"] >= 1
    finally:
        http.post(f"/api/jobs/{job['id']}/cancel")
        wait_for(http, job["id"], TERMINAL)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"command": ["true"], "gpus": 0}, "gpus"),
        ({"command": ["true"], "gpus": -2}, "gpus"),
        ({"command": ["true"], "gpus": "two"}, "gpus"),
        ({"command": ["true"], "gpus": 5}, "gpus"),
        ({"command": ["true"], "gpus": 1.5}, "gpus"),
        ({"command": ["true"], "project": "nosuch"}, "project"),
        ({"command": []}, "command"),
        ({"command": [""]}, "command"),
        ({}, "command"),
        ({"command": ["true"], "time_limit": "soon"}, "time_limit"),
        ({"command": ["true"], "gpu_memory": "lots"}, "gpu_memory"),
        ({"command": ["true"], "env": {"1BAD": "x"}}, "env"),
        ({"command": ["true"], "colour": "blue"}, "colour"),
    ],
)
def test_bad_input_is_422_naming_the_field_and_stores_nothing(
    http: httpx.Client, body: dict[str, Any], field: str
) -> None:
    before = job_ids(http)
    r = http.post("/api/jobs", json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert any(field in item["loc"] for item in detail), detail
    assert "Traceback" not in r.text
    assert job_ids(http) == before


def test_malformed_json_is_422(http: httpx.Client) -> None:
    before = job_ids(http)
    r = http.post("/api/jobs", content=b'{"command": [', headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "body" in r.json()["detail"][0]["loc"]
    assert job_ids(http) == before


def test_oversized_bodies_are_refused_and_not_stored(http: httpx.Client) -> None:
    before = job_ids(http)
    huge = b'{"command": ["true"], "name": "' + b"x" * (10 << 20) + b'"}'
    r = http.post("/api/jobs", content=huge, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "too large" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the streamed size is what counts
        yield b'{"command": ["true"], "name": "'
        for _ in range(32):
            yield b"y" * (64 << 10)
        yield b'"}'

    r = http.post("/api/jobs", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert job_ids(http) == before
    assert http.get("/api/health").status_code == 200


def test_project_tokens_confine_a_user_to_their_projects(http: httpx.Client, server: ServerProcess) -> None:
    r = http.put("/api/projects/vision", json={"quota": 1, "weight": 2})
    assert r.status_code == 200 and r.json()["quota"] == 1
    r = http.post("/api/tokens", json={"user": "alice", "projects": ["default"]})
    assert r.status_code == 201
    alice = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {r.json()['token']}"})
    theirs = submit(http, "print('vision work')", project="vision")
    their_array = submit(http, "print('vision sweep')", project="vision", array="0-1")["array_id"]
    with alice:
        mine = alice.post("/api/jobs", json={"command": ["true"]})
        assert mine.status_code == 201 and mine.json()["user"] == "alice"
        before = job_ids(http)
        # Another tenant's job answers exactly as a job that does not exist: ids are not probed.
        for path in ("/api/jobs/{}", "/api/jobs/{}/logs"):
            hidden, missing = alice.get(path.format(theirs["id"])), alice.get(path.format(10**9))
            assert hidden.status_code == missing.status_code == 404
            assert hidden.json()["detail"].replace(str(theirs["id"]), "N") == missing.json()["detail"].replace(
                str(10**9), "N"
            )
        assert alice.post(f"/api/jobs/{theirs['id']}/cancel").status_code == 404
        hidden, missing = alice.get(f"/api/arrays/{their_array}"), alice.get(f"/api/arrays/{10**9}")
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json()["detail"].replace(str(their_array), "N") == missing.json()["detail"].replace(
            str(10**9), "N"
        )
        assert [e["array_index"] for e in http.get(f"/api/arrays/{their_array}").json()] == [0, 1]
        refusals = [
            alice.post("/api/jobs", json={"command": ["true"], "project": "vision"}),
            alice.get("/api/jobs", params={"project": "vision"}),
            alice.post("/api/tokens", json={"user": "mallory", "projects": ["vision"]}),
            alice.put("/api/projects/vision", json={"quota": 4}),
        ]
        assert [r.status_code for r in refusals] == [403] * len(refusals)
        assert job_ids(http) == before
        assert {j["project"] for j in alice.get("/api/jobs").json()} == {"default"}
        assert [p["name"] for p in alice.get("/api/projects").json()] == ["default"]
        assert wait_for(alice, mine.json()["id"], TERMINAL)["state"] == "succeeded"
    assert wait_for(http, theirs["id"], TERMINAL)["state"] == "succeeded"


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/api/tokens", {"user": "bob", "projects": ["nosuch"]}, "projects"),
        ("POST", "/api/tokens", {"user": "", "projects": ["default"]}, "user"),
        ("PUT", "/api/projects/bad%20name", {}, "name"),
        ("PUT", "/api/projects/ok", {"pool": "nowhere"}, "pool"),
        ("PUT", "/api/projects/ok", {"quota": -1}, "quota"),
    ],
)
def test_bad_admin_input_is_422(http: httpx.Client, method: str, path: str, body: dict[str, Any], field: str) -> None:
    r = http.request(method, path, json=body)
    assert r.status_code == 422 and any(field in item["loc"] for item in r.json()["detail"]), r.text
    assert "ok" not in [p["name"] for p in http.get("/api/projects").json()]


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_server_on_postgresql(store_url: str, tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "home", "--gpus", "2", "--db", store_url) as pg, pg.client() as http:
        job = submit(http, "print('on postgres')", gpus=2)
        assert wait_for(http, job["id"], TERMINAL)["state"] == "succeeded"
        assert http.get(f"/api/jobs/{job['id']}/logs").text == "on postgres\n"
        assert http.post("/api/jobs", json={"command": ["true"], "gpus": 3}).status_code == 422
        assert job_ids(http) == [job["id"]]
        assert httpx.get(f"{pg.url}/api/jobs").status_code == 401


def test_big_log_streams_whole_and_tails(http: httpx.Client) -> None:
    # 200,000 numbered lines (~1.3 MB: many chunks), the last one without a newline.
    job = submit(http, "import sys; sys.stdout.write('\\n'.join(str(i) for i in range(200000)))")
    assert wait_for(http, job["id"], TERMINAL)["state"] == "succeeded"
    whole = http.get(f"/api/jobs/{job['id']}/logs").text
    assert whole.split("\n") == [str(i) for i in range(200000)]
    assert http.get(f"/api/jobs/{job['id']}/logs", params={"tail": 3}).text == "199997\n199998\n199999"
    assert http.get(f"/api/jobs/{job['id']}/logs", params={"tail": 0}).text == ""
    assert http.get(f"/api/jobs/{job['id']}/logs", params={"tail": 10**6}).text == whole
