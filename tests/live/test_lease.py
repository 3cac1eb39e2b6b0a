"""One active server per store: the leader lease on SQLite and PostgreSQL, a standby that takes
over when the leader is killed (its running job re-attached, run once), and --no-wait."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from aifactory.live.api.launch import ServerProcess
from aifactory.live.lease import LEASE
from aifactory.live.store import Store


def test_the_lease_goes_to_one_holder_at_a_time(store_url: str) -> None:
    with Store(store_url) as store:
        assert store.take_lease(LEASE, "a", 10, now=100) == 1
        assert store.take_lease(LEASE, "b", 10, now=105) is None  # a leads until 110
        assert store.take_lease(LEASE, "a", 10, now=108) == 1  # renewed: the same term
        assert store.take_lease(LEASE, "b", 10, now=117) is None
        assert store.take_lease(LEASE, "b", 10, now=118.5) == 2  # a stalled past its lease: b takes over
        assert store.take_lease(LEASE, "a", 10, now=119) is None  # a finds it lost the lease
        store.release_lease(LEASE, "a")  # not a's to release: nothing changes
        assert store.lease(LEASE) == ("b", 128.5, 2)
        store.release_lease(LEASE, "b")
        assert store.take_lease(LEASE, "a", 10, now=120) == 3  # released: at once
        assert store.take_lease(LEASE, "c", 10, now=121, replacing="b") is None  # b is not the holder
        assert store.take_lease(LEASE, "c", 10, now=121, replacing="a") == 4  # a is known dead: at once


def test_a_standby_takes_over_when_the_leader_is_killed(tmp_path: Path, store_url: str, no_leftovers: None) -> None:
    db = store_url if not store_url.startswith("sqlite") else f"sqlite:///{tmp_path / 'shared.db'}"
    args = ["--gpus", "2", "--db", db, "--lease-ttl", "3"]
    leader = ServerProcess(tmp_path / "a", *args).start()
    ledger = tmp_path / "ledger"
    with leader.client() as http:
        script = f"echo run >> {ledger}; sleep 4; echo done"
        job = http.post("/api/jobs", json={"command": ["/bin/sh", "-c", script], "gpus": 1}).json()["id"]
        while http.get(f"/api/jobs/{job}").json()["state"] != "running":
            time.sleep(0.05)

    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "aifactory.live.api.server",
            "--home",
            str(tmp_path / "c"),
            "--port",
            "0",
            *args,
            "--no-wait",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "another server leads it" in refused.stderr, refused.stderr

    standby = ServerProcess(tmp_path / "b", *args)
    started = threading.Thread(target=standby.start, kwargs={"timeout": 90})
    started.start()
    deadline = time.monotonic() + 60
    while "standby" not in (standby.log_path.read_text() if standby.log_path.exists() else ""):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert not standby.url  # not serving while the leader leads
    killed_at = time.monotonic()
    leader.kill9()
    started.join()
    took_over = time.monotonic() - killed_at
    try:
        assert took_over < 15, took_over
        with standby.client() as http:
            deadline = time.monotonic() + 30
            while (got := http.get(f"/api/jobs/{job}").json())["state"] not in ("succeeded", "failed"):
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert got["state"] == "succeeded" and got["attempts"] == 1, got
        assert ledger.read_text() == "run\n"  # re-attached, not run again
        assert "now the leader (term 2)" in standby.log_path.read_text()
    finally:
        standby.stop()
