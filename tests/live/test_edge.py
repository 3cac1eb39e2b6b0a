"""Input at the edge, on SQLite and PostgreSQL: bad input is a 422 naming the field (or a 404),
never a 500, and changes nothing; a job whose launch fails ends, holding nothing; lists are pages
filtered by tenant before the limit; nodes show a tenant only its own jobs."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aifactory.live.api.launch import ServerProcess
from aifactory.live.wire import MAX_ID

from .conftest import pg_schema_url

PY = sys.executable
TERMINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("edge") / "home"
    with pg_schema_url() if request.param == "postgresql" else contextlib.nullcontext("") as url:
        if url is None:
            pytest.skip("PostgreSQL does not answer at 127.0.0.1:5432")
        with ServerProcess(home, "--gpus", "2", *(["--db", url] if url else [])) as srv:
            yield srv


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def ids(http: httpx.Client) -> list[int]:
    return [j["id"] for j in http.get("/api/jobs").json()]


def wait(http: httpx.Client, job_id: int, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (job := http.get(f"/api/jobs/{job_id}").json())["state"] not in TERMINAL:
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    return job


GOOD: dict[str, Any] = {"command": ["true"]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"command": ["echo", "a\x00b"]}, "command"),
        ({"command": ["echo", "\x1b]0;pwned\x07"]}, "command"),
        ({**GOOD, "env": {"X": "a\x00b"}}, "env"),
        ({**GOOD, "workdir": "/tmp/\x00"}, "workdir"),
        ({**GOOD, "workdir": "/tmp/\n"}, "workdir"),
        ({**GOOD, "name": "\x1b[2J"}, "name"),
        ({**GOOD, "project": "def\x00ault"}, "project"),
        ({**GOOD, "gpu_model": "A100\r"}, "gpu_model"),
        ({**GOOD, "time_limit": "1e999"}, "time_limit"),
        ({**GOOD, "time_limit": 1e300}, "time_limit"),
        ({**GOOD, "memory": "99999999999999999999GiB"}, "memory"),
        ({**GOOD, "priority": 2**63}, "priority"),
    ],
)
def test_bad_submissions_are_422_naming_the_field(http: httpx.Client, body: dict[str, Any], field: str) -> None:
    before = ids(http)
    r = http.post("/api/jobs", json=body)
    assert r.status_code == 422, r.text
    assert field in [str(p) for p in r.json()["detail"][0]["loc"]], r.json()
    assert ids(http) == before


def test_non_finite_numbers_are_refused(http: httpx.Client) -> None:
    for raw in ('{"command": ["true"], "gpus": NaN}', '{"command": ["true"], "time_limit": 1e999}'):
        r = http.post("/api/jobs", content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 422, r.text
    r = http.put(
        "/api/projects/p-inf",
        content='{"quota_by_model": {"A100": 1e999}}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 422 and "quota_by_model" in json.dumps(r.json())
    assert "p-inf" not in [p["name"] for p in http.get("/api/projects").json()]


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("GET", f"/api/jobs/{2**63}", None),
        ("GET", f"/api/jobs/{2**64}/logs", None),
        ("POST", f"/api/jobs/{2**63}/cancel", None),
        ("GET", "/api/jobs/-1", None),
        ("GET", "/api/jobs", {"project": "\x00"}),
        ("GET", "/api/jobs", {"user": "a\x1b"}),
        ("GET", "/api/jobs", {"before": str(2**63)}),
        ("GET", "/api/jobs", {"limit": "0"}),
    ],
)
def test_ids_and_queries_out_of_range_are_4xx(
    http: httpx.Client, method: str, path: str, params: dict[str, str] | None
) -> None:
    r = http.request(method, path, params=params)
    assert r.status_code in (404, 422), (r.status_code, r.text)
    assert http.get(f"/api/jobs/{MAX_ID}").status_code == 404  # the largest valid id: simply not there
    assert http.get(f"/api/jobs/{MAX_ID + 1}").status_code == 422


def test_a_job_whose_launch_fails_ends_and_frees_its_gpus(http: httpx.Client, tmp_path: Path) -> None:
    missing = http.post("/api/jobs", json={"command": ["/no/such/program"], "gpus": 2})
    nowhere = http.post("/api/jobs", json={"command": ["true"], "gpus": 2, "workdir": str(tmp_path / "absent")})
    for r, why in ((missing, "not found"), (nowhere, "workdir")):
        assert r.status_code == 201
        job = wait(http, r.json()["id"])
        assert job["state"] == "failed" and why in job["reason"], job
    after = http.post("/api/jobs", json={"command": ["true"], "gpus": 2})
    assert wait(http, after.json()["id"])["state"] == "succeeded"  # both GPUs were free again


def test_cancel_always_ends_a_job_it_answered_for(http: httpx.Client) -> None:
    jobs = [
        http.post("/api/jobs", json={"command": [PY, "-c", "import time; time.sleep(30)"], "gpus": 0.5})
        for _ in range(3)
    ]
    for r in jobs:
        assert http.post(f"/api/jobs/{r.json()['id']}/cancel").status_code == 200
    assert {wait(http, r.json()["id"])["state"] for r in jobs} == {"cancelled"}


def test_lists_are_pages_filtered_before_the_limit(http: httpx.Client, server: ServerProcess) -> None:
    http.put("/api/projects/mine", json={"quota": 0})
    http.put("/api/projects/theirs", json={"quota": 0})
    token = http.post("/api/tokens", json={"user": "pat", "projects": ["mine"]}).json()["token"]
    for _ in range(3):
        http.post("/api/jobs", json={"command": ["true"], "project": "mine", "gpus": 0.01})
    for _ in range(5):  # newer jobs of another tenant: a limit applied before the filter would show none
        http.post("/api/jobs", json={"command": ["true"], "project": "theirs", "gpus": 0.01})
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as pat:
        first = pat.get("/api/jobs", params={"limit": 2})
        assert [j["project"] for j in first.json()] == ["mine", "mine"]
        nxt = first.links["next"]["url"]
        rest = pat.get(nxt).json()
        assert [j["project"] for j in rest] == ["mine"] and rest[0]["id"] < first.json()[-1]["id"]
        assert "next" not in pat.get(nxt).links
    whole = http.get("/api/jobs", params={"limit": 3})
    paged = whole.json()
    while "next" in whole.links:
        whole = http.get(whole.links["next"]["url"])
        paged += whole.json()
    assert [j["id"] for j in paged] == sorted({j["id"] for j in paged}, reverse=True) == ids(http)


def test_nodes_show_a_tenant_only_its_own_jobs(http: httpx.Client, server: ServerProcess) -> None:
    http.put("/api/projects/n1", json={"quota": 1})
    http.put("/api/projects/n2", json={"quota": 1})
    t1 = http.post("/api/tokens", json={"user": "una", "projects": ["n1"]}).json()["token"]
    code = "import time; time.sleep(30)"
    mine = http.post("/api/jobs", json={"command": [PY, "-c", code], "project": "n1", "gpus": 1}).json()["id"]
    theirs = http.post("/api/jobs", json={"command": [PY, "-c", code], "project": "n2", "gpus": 1}).json()["id"]
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {t1}"}) as una:
            holders = [h for n in una.get("/api/nodes").json() for g in n["gpus"] for h in g["holders"]]
        assert {h["job_id"] for h in holders} == {mine, None}
        hidden = next(h for h in holders if h["job_id"] is None)
        assert hidden["user"] is None and hidden["project"] is None and hidden["milli"] == 1000
    finally:
        for job_id in (mine, theirs):
            http.post(f"/api/jobs/{job_id}/cancel")


def test_the_client_follows_every_page_with_its_filters(
    http: httpx.Client, server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aifactory.live import client as client_module

    http.put("/api/projects/paged", json={"quota": 0})
    made = [
        http.post("/api/jobs", json={"command": ["true"], "project": "paged", "gpus": 0.01}).json()["id"]
        for _ in range(5)
    ]
    http.post("/api/jobs", json={"command": ["true"], "gpus": 0.01})  # another project: filtered out on every page
    monkeypatch.setattr(client_module, "PAGE_MAX", 2)  # pages of 2: three requests, each keeping the filter
    with client_module.Client(server.url, server.token) as c:
        assert [j.id for j in c.jobs(project="paged")] == sorted(made, reverse=True)
        assert [j.id for j in c.jobs(project="paged", limit=3)] == sorted(made, reverse=True)[:3]
