"""Fuzzing the floor's OpenAPI schema with schemathesis (bounded: a few thousand requests) against
a real server whose jobs cannot harm the machine (full isolation: an unprivileged account in a
cgroup). No request may get a 5xx, and afterwards no job is stranded: every job ends once
cancelled, and no GPU stays held."""

from __future__ import annotations

import itertools
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error

from aifactory.live.api.app import create_app
from aifactory.live.api.launch import ServerProcess
from aifactory.live.cgroups import detect

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or detect() is None or shutil.which("useradd") is None,
    reason="fuzzed jobs run only where they cannot harm the machine (full isolation: root, cgroups)",
)

EXAMPLES = int(os.environ.get("AIFACTORY_FUZZ_EXAMPLES", "200"))  # per operation and mode
SKIP = {
    ("GET", "/api/jobs/{job_id}/logs"),  # follow=true streams until the job ends: not a request-response
    ("POST", "/api/tokens/rotate-admin"),  # would take the fuzzer's own token away (tests/live/test_tokens.py)
}


def fuzz(server: ServerProcess, examples: int) -> dict[str, int]:
    """Every operation, `examples` cases each; the count of requests and of 5xx answers."""
    schema = schemathesis.openapi.from_dict(create_app(None).openapi())  # type: ignore[arg-type]
    counts = {"fuzz_requests": 0, "fuzz_5xx": 0}
    failures: list[str] = []
    operations = [r.ok() for r in schema.get_all_operations()]
    for operation, mode in itertools.product(operations, list(schemathesis.GenerationMode)):
        if (operation.method.upper(), operation.path) in SKIP:
            continue

        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(mode))
        def one(case: schemathesis.Case) -> None:
            response = case.call(base_url=server.url, headers=server.headers, timeout=30)
            counts["fuzz_requests"] += 1
            counts[f"status_{response.status_code}"] = counts.get(f"status_{response.status_code}", 0) + 1
            if response.status_code >= 500:
                counts["fuzz_5xx"] += 1
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}")
            case.validate_response(response, checks=[not_a_server_error])

        try:
            one()
        except Unsatisfiable:
            assert mode is schemathesis.GenerationMode.NEGATIVE  # no parameter to get wrong
        except Exception as exc:  # keep fuzzing the other operations; report all at the end
            failures.append(
                f"{operation.method} {operation.path} ({mode.value}): {type(exc).__name__}: {str(exc)[:300]}"
            )
    assert not failures, "\n".join(failures)
    return counts


def stranded(server: ServerProcess, timeout: float = 60) -> int:
    """Cancel every active job; the number that have not ended by `timeout` (should be 0)."""
    with server.client() as http:
        active = [j["id"] for j in http.get("/api/jobs", params={"state": ["queued", "running", "preempted"]}).json()]
        for job_id in active:
            http.post(f"/api/jobs/{job_id}/cancel")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = http.get("/api/jobs", params={"state": ["queued", "running", "preempted"]}).json()
            held = [h for n in http.get("/api/nodes").json() for g in n["gpus"] for h in g["holders"]]
            if not left and not held:
                return 0
            time.sleep(0.2)
        return len(left) + len(held)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    args = ["--gpus", "4", "--isolation", "full", "--kill-grace", "1"]
    with ServerProcess(tmp_path / "home", *args) as srv:
        yield srv


@pytest.mark.slow
def test_fuzzing_the_api_finds_no_server_error_and_strands_no_job(server: ServerProcess, no_leftovers: None) -> None:
    counts = fuzz(server, EXAMPLES)
    assert counts["fuzz_requests"] > 1000 and counts["fuzz_5xx"] == 0, counts
    assert counts.get("status_401", 0) < counts["fuzz_requests"] // 4, counts  # the fuzzer's token kept working
    print(counts)
    assert stranded(server) == 0
    with httpx.Client(base_url=server.url, timeout=10) as anyone:
        assert anyone.get("/api/health").status_code == 200
