"""The everyday verbs through the real CLI and server: hold keeps a job's place, update changes
a queued job and re-evaluates the queue, requeue sends a running job back, --dry-run stores
nothing, --after chains jobs (one that can never be met ends cancelled), each change in the
event log with who made it, and a restart keeps holds and waits."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from aifactory.live.api.launch import ServerProcess

from .test_cli import cli, ok, refused, wait_state


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("verbs") / "home", "--gpus", "2", "--preempt-grace", "1") as srv:
        yield srv


def submit(server: ServerProcess, *args: str) -> int:
    return int(ok(cli(server, "submit", "-q", *args)))


def test_hold_update_requeue_and_dry_run(server: ServerProcess) -> None:
    blocker = submit(server, "--gpus", "2", "--", "sleep", "60")
    wait_state(server, blocker, {"running"})
    first = submit(server, "--gpus", "2", "--", "true")
    second = submit(server, "--gpus", "1", "--", "true")
    assert "held" in ok(cli(server, "hold", str(first)))
    trial = ok(cli(server, "submit", "--dry-run", "--gpus", "1", "--", "true"))
    assert trial.startswith("would wait:"), trial
    jobs_before = json.loads(ok(cli(server, "jobs", "--all", "--json")))
    ok(cli(server, "update", str(second), "--gpus", "2", "--priority", "-1"))
    refused(cli(server, "update", str(blocker), "--gpus", "1"), "time limit")
    refused(cli(server, "hold", str(blocker)), "running")
    ok(cli(server, "update", str(blocker), "--time-limit", "2h"))  # a running job: its time limit
    assert "preempted" in ok(cli(server, "requeue", str(blocker)))  # stopping; then queued again
    # The blocker comes back to the queue ahead of the others (its submission order) and starts again.
    job = wait_state(server, blocker, {"running"}, timeout=30)
    assert job["attempts"] == 2
    ok(cli(server, "cancel", str(blocker)))
    wait_state(server, second, {"succeeded"}, timeout=30)  # the held one did not go first
    assert wait_state(server, first, {"queued"})["pending_reason"].startswith("held by")
    ok(cli(server, "release", str(first)))
    wait_state(server, first, {"succeeded"}, timeout=30)
    assert len(json.loads(ok(cli(server, "jobs", "--all", "--json")))) == len(jobs_before)  # the dry run stored nothing
    history = json.loads(ok(cli(server, "events", "--job", str(first), "--json")))["jobs"]
    notes = [e["reason"] for e in history if e["old"] == e["new"]]
    assert notes[0].startswith("held by ") and notes[1].startswith("released by ")
    updated = json.loads(ok(cli(server, "show", str(second), "--json")))
    assert updated["spec"]["gpus"] == 2 and updated["priority"] == -1
    assert ok(cli(server, "submit", "--dry-run", "--gpus", "2", "--", "true")).startswith("would run now on node0:")


def test_dependencies_and_a_restart(server: ServerProcess) -> None:
    first = submit(server, "--", "sh", "-c", "sleep 10; exit 3")
    ok_after = submit(server, "--after", f"{first}:ok", "--", "true")
    any_after = submit(server, "--after", f"{first}:any", "--", "true")
    held = submit(server, "--after", f"{any_after}", "--", "true")
    ok(cli(server, "hold", str(held)))
    waiting = wait_state(server, ok_after, {"queued"})
    assert waiting["pending_reason"] == f"waits for job {first} (afterok)"
    server.stop()
    server.start()  # the waits and the hold come back
    assert wait_state(server, first, {"failed"}, timeout=30)["exit_code"] == 3
    cancelled = wait_state(server, ok_after, {"cancelled"})
    assert cancelled["reason"] == f"dependency {first} ended failed: afterok can never be met"
    wait_state(server, any_after, {"succeeded"}, timeout=30)
    assert wait_state(server, held, {"queued"})["pending_reason"].startswith("held by")
    refused(cli(server, "submit", "--after", "999", "--", "true"), "after", "999")
    refused(cli(server, "submit", "--after", "1:sometimes", "--", "true"), "after")
    # After the restart the core forgot the finished ones: a new job waiting for one is settled from the store.
    late = submit(server, "--after", f"{first}:failed", "--", "true")
    wait_state(server, late, {"succeeded"}, timeout=30)
