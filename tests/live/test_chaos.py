"""Chaos: kill -9 the server at 20+ random moments of a 300-job run, on SQLite and PostgreSQL.
Every acknowledged job ends exactly once: none lost, none run twice, none failed without having
run. Each job appends a line to its own ledger file as it starts: the count of lines is the
count of times it really ran."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aifactory.live.api.launch import ServerProcess

from .conftest import pg_schema_url

JOBS = 300
KILLS = 22


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=["sqlite", "postgresql"])
def db_args(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    if request.param == "sqlite":
        yield []
        return
    with pg_schema_url() as url:
        if url is None:
            pytest.skip("PostgreSQL does not answer at 127.0.0.1:5432")
        yield ["--db", url]


def run_chaos(home: Path, ledger: Path, db: list[str], jobs: int, kills: int, seed: int) -> dict[str, int]:
    """The run; returns what it measured (also used by benchmarks/floor_hostile.py)."""
    rng = random.Random(seed)
    ledger.mkdir(parents=True, exist_ok=True)
    port = free_port()
    srv = ServerProcess(home, "--gpus", "4", "--port", str(port), "--kill-grace", "1", *db).start()
    acked: dict[int, float] = {}
    stop = threading.Event()
    script = f"echo run >> {ledger}/$AIFACTORY_JOB_ID; sleep 0.$(( $AIFACTORY_JOB_ID % 4 ))"

    def submitter() -> None:
        while len(acked) < jobs and not stop.is_set():
            body = {"command": ["/bin/sh", "-c", script], "gpus": rng.choice([0.25, 0.5, 1])}
            try:
                with httpx.Client(base_url=srv.url, headers=srv.headers, timeout=5) as http:
                    r = http.post("/api/jobs", json=body)
                if r.status_code == 201:
                    acked[int(r.json()["id"])] = time.monotonic()
            except httpx.HTTPError:
                time.sleep(0.05)  # the server is down: this one was not acknowledged

    thread = threading.Thread(target=submitter, daemon=True)
    thread.start()
    try:
        for _ in range(kills):
            time.sleep(rng.uniform(0.2, 1.2))
            srv.kill9()
            srv.start()
        thread.join(timeout=300)
        deadline = time.monotonic() + 300
        with srv.client() as http:
            while True:
                listed = {j["id"]: j for j in _all_jobs(http)}
                if all(listed.get(i, {}).get("state") in ("succeeded", "failed", "cancelled") for i in acked):
                    break
                assert time.monotonic() < deadline, "jobs did not all end"
                time.sleep(0.2)
    finally:
        stop.set()
        srv.stop()
    runs = {int(p.name): len(p.read_text().splitlines()) for p in ledger.iterdir()}
    lost = sum(1 for i in acked if i not in listed)
    twice = sum(1 for i in listed if runs.get(i, 0) > 1)
    failed_unrun = sum(1 for i, j in listed.items() if j["state"] == "failed" and runs.get(i, 0) == 0)
    not_ok = sum(1 for i in acked if listed.get(i, {}).get("state") != "succeeded")
    return {
        "chaos_kills": kills,
        "jobs_acknowledged": len(acked),
        "jobs_lost": lost,
        "jobs_run_twice": twice,
        "jobs_failed_unrun": failed_unrun,
        "jobs_not_succeeded": not_ok,
    }


def _all_jobs(http: httpx.Client) -> list[dict]:
    out: list[dict] = []
    r = http.get("/api/jobs")
    out += r.json()
    while "next" in r.links:
        r = http.get(r.links["next"]["url"])
        out += r.json()
    return out


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_nothing_and_runs_nothing_twice(
    tmp_path: Path, db_args: list[str], no_leftovers: None
) -> None:
    got = run_chaos(tmp_path / "home", tmp_path / "ledger", db_args, JOBS, KILLS, seed=7)
    assert got["jobs_acknowledged"] == JOBS
    assert got["jobs_lost"] == got["jobs_run_twice"] == got["jobs_failed_unrun"] == 0, got
    assert got["jobs_not_succeeded"] == 0, got
