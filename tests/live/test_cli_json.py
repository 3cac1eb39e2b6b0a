"""Scripts read the floor as JSON (`--json` on every list and show command), tables fit the
terminal (80 columns: GPU indices as ranges, long text cut), and `events` gives the history."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import pytest

from aifactory.cli.columns import gpu_ranges, render
from aifactory.live.api.launch import ServerProcess

from .test_cli import cli, ok, refused, wait_state

PY = sys.executable


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("json") / "home", "--gpus", "4") as srv:
        yield srv


def test_gpu_indices_as_ranges() -> None:
    assert gpu_ranges("node0:0,1,2,3,5") == "node0:0-3,5"
    assert gpu_ranges("n1:0,1,2,3,4,5,6,7 n2:0,1,2,3,4,5,6,7") == "n1:0-7 n2:0-7"
    assert gpu_ranges("node0:2@0.50") == "node0:2@0.50" and gpu_ranges("node0:cpu") == "node0:cpu"
    assert gpu_ranges("node0:0,1") == "node0:0,1"


def test_a_wide_table_is_cut_to_the_width() -> None:
    rows = [("1", "x" * 50, "running", "why " * 20)]
    text = render(("ID", "NAME", "STATE", "NOTE"), rows, width=60, shrink=("NOTE", "NAME"), color=False)
    assert all(len(line) <= 60 for line in text.splitlines()), text
    assert "…" in text and "running" in text


def test_json_of_the_floors_commands(server: ServerProcess) -> None:
    job_id = int(ok(cli(server, "submit", "-q", "--gpus", "4", "--name", "n" * 70, "--", PY, "-c", "print(1)")))
    wait_state(server, job_id, {"succeeded"})
    jobs = json.loads(ok(cli(server, "jobs", "--all", "--json")))
    assert any(j["id"] == job_id and j["state"] == "succeeded" for j in jobs)
    shown = json.loads(ok(cli(server, "show", str(job_id), "--json")))
    assert shown["id"] == job_id and [h["new"] for h in shown["history"]] == ["queued", "running", "succeeded"]
    nodes = json.loads(ok(cli(server, "nodes", "--json")))
    assert nodes[0]["gpu_count"] == 4
    projects = json.loads(ok(cli(server, "projects", "--json")))
    assert "default" in [p["name"] for p in projects["projects"]]
    assert json.loads(ok(cli(server, "token", "list", "--json")))[0]["user"]
    events = json.loads(ok(cli(server, "events", "--job", str(job_id), "--json")))
    assert [e["new"] for e in events["jobs"]] == ["queued", "running", "succeeded"] and events["nodes"] == []
    # The table fits 80 columns: the long name is cut, the placement written as a range.
    table = ok(cli(server, "jobs", "--all", env={"COLUMNS": "80"}))
    assert all(len(line) <= 80 for line in table.splitlines()), table
    (row,) = [line for line in table.splitlines() if line.split()[:1] == [str(job_id)]]
    assert "node0:0-3" in row and "…" in row
    history = ok(cli(server, "events", "--since", "1h"))
    assert f"{job_id}" in history and "running -> succeeded" in history
    refused(cli(server, "events", "--since", "whenever"), "since")


def test_the_servers_log_has_one_line_per_decision(server: ServerProcess) -> None:
    job_id = int(ok(cli(server, "submit", "-q", "--", "true")))
    wait_state(server, job_id, {"succeeded"})
    lines = [line for line in server.log_path.read_text().splitlines() if f"decision job={job_id} " in line]
    assert len(lines) == 3 and "to=running" in lines[1] and 'project="default"' in lines[0], lines
