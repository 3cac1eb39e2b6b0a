"""The web dashboard in a real headless browser (Debian's chromium, driven by Playwright; no
browser download): sign in, see a running job on the GPU map, open its page, follow its log,
cancel it, see it cancelled; a tenant of another project sees the GPU only as in use and not the
job. GPUs from a fake NVML (the pynvml boundary), so the map shows utilisation."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aifactory.live.api.launch import ServerProcess

from .test_metrics import FAKES, write_gpus

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium (.ci/run installs it with apt-get)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    nvml = tmp_path_factory.mktemp("nvml") / "gpus.json"
    write_gpus(nvml, [37, 0])
    env = {"PYTHONPATH": f"{FAKES}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "AIFACTORY_FAKE_NVML": str(nvml)}
    with ServerProcess(tmp_path_factory.mktemp("web") / "home", "--telemetry", "0.2", env=env) as srv:
        with srv.client() as admin:
            assert admin.put("/api/projects/other", json={"quota": 0}).status_code == 200
        yield srv


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


def sign_in(browser: Any, server: ServerProcess, token: str) -> Any:
    page = browser.new_context().new_page()
    page.goto(f"{server.url}/")
    assert page.url.endswith("/login")  # no cookie: the sign-in form
    page.fill("#token", token)
    page.click("#sign-in")
    page.wait_for_url(f"{server.url}/")
    return page


def test_sign_in_follow_a_job_and_cancel_it(server: ServerProcess, browser: Any, tmp_path: Path) -> None:
    script = 'i=0; while true; do i=$((i+1)); echo "line $i"; sleep 0.3; done'
    with server.client() as http:
        job_id = http.post("/api/jobs", json={"command": ["/bin/sh", "-c", script], "gpus": 1, "workdir": "/"}).json()[
            "id"
        ]
    page = sign_in(browser, server, server.token)
    page.wait_for_selector("text=GPUs allocated")
    page.goto(f"{server.url}/nodes")
    link = page.wait_for_selector(f"a[href='/jobs/{job_id}']")  # on the GPU map
    row = page.locator(f"tr.gpu:has(a[href='/jobs/{job_id}'])")
    assert "job" in row.inner_text()
    link.click()
    page.wait_for_url(f"{server.url}/jobs/{job_id}")
    page.wait_for_selector("#log:has-text('line 3')", timeout=15000)  # the log follows
    assert page.inner_text("#job-state") == "running"
    page.screenshot(path=str(tmp_path / "job.png"), full_page=True)
    page.click("#cancel")
    page.wait_for_selector("#job-state:has-text('cancelled')", timeout=15000)
    assert (tmp_path / "job.png").stat().st_size > 0
    with server.client() as http:
        assert http.get(f"/api/jobs/{job_id}").json()["state"] == "cancelled"


def test_a_tenant_sees_only_its_own_projects_jobs(server: ServerProcess, browser: Any) -> None:
    with server.client() as admin:
        job_id = admin.post("/api/jobs", json={"command": ["sleep", "30"], "gpus": 1}).json()["id"]
        token = admin.post("/api/tokens", json={"user": "eve", "projects": ["other"]}).json()["token"]
    try:
        page = sign_in(browser, server, token)
        page.goto(f"{server.url}/nodes")
        page.wait_for_selector("text=in use")
        assert f"/jobs/{job_id}" not in page.content()
        page.goto(f"{server.url}/jobs")
        assert page.locator(f"tr.job[data-id='{job_id}']").count() == 0
        response = page.goto(f"{server.url}/jobs/{job_id}")
        assert response is not None and response.status == 404
        # Cancelling another tenant's job from the dashboard's own route is refused too.
        cookies = {c["name"]: c["value"] for c in page.context.cookies()}
        r = httpx.post(f"{server.url}/ui/jobs/{job_id}/cancel", cookies=cookies, headers={"HX-Request": "true"})
        assert r.status_code == 404
    finally:
        with server.client() as admin:
            admin.post(f"/api/jobs/{job_id}/cancel")


def test_pages_need_a_cookie_and_changes_need_the_dashboard(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/jobs", follow_redirects=False).headers["location"] == "/login"
    assert httpx.get(f"{server.url}/ui/overview.json").status_code == 401
    bad = httpx.post(f"{server.url}/login", data={"token": "nope"})
    assert "not known" in bad.text
    cookies = {"aifactory_token": server.token}
    assert httpx.post(f"{server.url}/ui/jobs/1/cancel", cookies=cookies).status_code == 403  # no HX-Request
    data = httpx.get(f"{server.url}/ui/overview.json", cookies=cookies).json()
    deadline = time.monotonic() + 10
    while data["gpus"][0]["utilization"] is None and time.monotonic() < deadline:
        time.sleep(0.2)
        data = httpx.get(f"{server.url}/ui/overview.json", cookies=cookies).json()
    assert data["gpus_total"] == 2 and data["gpus"][0]["utilization"] == 37


def test_the_api_docs_work_offline(server: ServerProcess, browser: Any) -> None:
    """/docs loads Swagger UI from the package, not a CDN (the browser may reach nothing else)."""
    page = browser.new_context().new_page()
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(server.url) else outside.append(r.url))
    page.goto(f"{server.url}/docs")
    page.wait_for_selector("[data-path='/api/jobs']", timeout=15000)  # the operations are listed
    assert not outside, outside


def test_twin_reports_are_linked_for_admins(server: ServerProcess) -> None:
    folder = server.home / "reports"
    folder.mkdir(exist_ok=True)
    (folder / "what-if.html").write_text("<html><body><h1>fifo vs fairshare</h1></body></html>")
    admin = {"aifactory_token": server.token}
    listing = httpx.get(f"{server.url}/reports", cookies=admin).text
    assert 'href="/reports/what-if.html"' in listing
    r = httpx.get(f"{server.url}/reports/what-if.html", cookies=admin)
    assert (
        r.status_code == 200
        and "fifo vs fairshare" in r.text
        and "default-src 'none'" in r.headers["content-security-policy"]
    )
    assert httpx.get(f"{server.url}/reports/..%2Ftoken", cookies=admin).status_code in (404, 422)
    with server.client() as http:
        token = http.post("/api/tokens", json={"user": "mo", "projects": ["other"]}).json()["token"]
    tenant = {"aifactory_token": token}
    assert "what-if.html" not in httpx.get(f"{server.url}/reports", cookies=tenant).text
    assert httpx.get(f"{server.url}/reports/what-if.html", cookies=tenant).status_code == 403
