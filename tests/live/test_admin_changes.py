"""Admin changes change only what they name: `project set` and `department set` keep the fields
not given (--no-X clears one), an unknown department is refused, deleting refuses while jobs are
active unless --force cancels them, and an over-subscribed floor is said, through the real CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from aifactory.live.api.launch import ServerProcess

from .test_cli import cli, ok, refused, wait_state


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("admin") / "home", "--gpus", "4") as srv:
        yield srv


def project(server: ServerProcess, name: str) -> dict:
    return {p["name"]: p for p in json.loads(ok(cli(server, "projects", "--json")))["projects"]}[name]


def test_set_changes_only_what_it_names(server: ServerProcess) -> None:
    ok(cli(server, "department", "set", "research", "--quota", "3", "--limit", "4"))
    ok(cli(server, "project", "set", "vision", "--quota", "2", "--limit", "3", "--department", "research"))
    ok(cli(server, "project", "set", "vision", "--quota", "3"))  # the limit and department stay
    v = project(server, "vision")
    assert (v["quota"], v["limit"], v["department"], v["weight"]) == (3, 3, "research", 1)
    ok(cli(server, "project", "set", "vision", "--no-limit", "--idle-timeout", "30m"))
    v = project(server, "vision")
    assert (v["quota"], v["limit"], v["department"], v["idle_timeout_s"]) == (3, None, "research", 1800)
    refused(cli(server, "project", "set", "vision", "--limit", "4", "--no-limit"), "limit")
    refused(cli(server, "project", "set", "vision", "--department", "nowhere"), "department", "nowhere")
    assert project(server, "vision")["department"] == "research"  # nothing changed
    ok(cli(server, "department", "set", "research", "--weight", "2"))
    [d] = json.loads(ok(cli(server, "projects", "--json")))["departments"]
    assert (d["quota"], d["limit"], d["weight"]) == (3, 4, 2)


def test_delete_refuses_while_jobs_are_active_unless_forced(server: ServerProcess) -> None:
    ok(cli(server, "project", "set", "temp", "--quota", "0"))
    job_id = int(ok(cli(server, "submit", "-q", "--project", "temp", "--", "sleep", "60")))
    wait_state(server, job_id, {"running"})
    refused(cli(server, "project", "delete", "temp"), "force")
    assert "temp" in {p["name"] for p in json.loads(ok(cli(server, "projects", "--json")))["projects"]}
    out = ok(cli(server, "project", "delete", "temp", "--force"))
    assert f"cancelled jobs {job_id}" in out
    assert wait_state(server, job_id, {"cancelled"})["reason"] == "cancelled: project temp deleted"
    assert "temp" not in {p["name"] for p in json.loads(ok(cli(server, "projects", "--json")))["projects"]}
    refused(cli(server, "project", "delete", "temp"), "temp")
    ok(cli(server, "department", "set", "gone"))
    ok(cli(server, "project", "set", "member", "--department", "gone"))
    ok(cli(server, "department", "delete", "gone"))
    assert project(server, "member")["department"] is None  # stands alone now


def test_an_oversubscribed_floor_is_said(server: ServerProcess) -> None:
    out = ok(cli(server, "project", "set", "big", "--quota", "1000"))
    assert "over-subscribed" in out and "floor of 4" in out
    assert json.loads(ok(cli(server, "projects", "--json")))["quota"]["oversubscribed"] is True
    assert "over-subscribed" in ok(cli(server, "projects"))
    server.stop()
    server.start()  # `up` says so too
    assert "quotas add up to" in server.log_path.read_text() and "over-subscribed" in server.log_path.read_text()
    ok(cli(server, "project", "set", "big", "--quota", "0"))
