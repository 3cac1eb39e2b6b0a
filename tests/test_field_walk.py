"""Every field of a job, a node, a project and a department walks the whole way: the HTTP API, the
store, the event log exported as a trace with its floor file (`aifactory export-trace`), and the
twin's replay of it. A new field that some step drops fails here; so does a new field no walked
value sets (add one to the jobs, nodes or projects below)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import MISSING, Field, fields, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from aifactory.core.cluster import NodeSpec
from aifactory.core.factory import FactorySettings
from aifactory.core.job import JobSpec
from aifactory.core.project import Department, Project
from aifactory.live.api.launch import ServerProcess
from aifactory.live.store import Store
from aifactory.live.wire import DepartmentSet, NodeOut, ProjectSet
from aifactory.twin.replay import Twin, TwinSettings
from aifactory.twin.scenarios import from_file
from aifactory.twin.traces.format import NOT_IN_TRACE, SPEC_COLUMNS

PY = sys.executable
GIB = 1024
DEPARTMENT = Department("research", quota=4.0, weight=3.0, limit=6.0)
PROJECT = Project(
    "vision",
    quota=4.0,
    weight=2.0,
    limit=6.0,
    pool="default",
    department="research",
    quota_by_model={"virtual": 2.0},
    idle_timeout_s=1800.0,
)
# A node of the store with every field other than its default (the live nodes come from `up`).
SPARE = NodeSpec(
    "spare", 2, gpu_model="H100", gpu_memory_mib=81559, pool="spare", cpu_milli=64000, memory_mib=1 << 19, rack="r7"
)


def job_bodies(workdir: Path) -> list[dict[str, Any]]:
    """Two submissions between them giving every JobSpec field a value other than its default."""
    whole = {
        "command": [PY, "-c", "pass"],
        "project": "vision",
        "gpus": 2,
        "gpu_model": "virtual",
        "multi_node": True,
        "cpus": 1.5,
        "memory": "1GiB",
        "priority": 5,
        "priority_class": "interactive",
        "time_limit": "10m",
        "name": "walk",
        "workdir": str(workdir),
        "env": {"WALK": "1"},
    }
    # Submitted second on a fresh server: it waits for job 1 (whichever way it ends).
    fraction = {
        "command": [PY, "-c", "pass"],
        "project": "vision",
        "gpus": 0.5,
        "gpu_memory": "8GiB",
        "after": ["1:any"],
        "array": "0%1",  # an array of one element (its own id is the array's)
    }
    return [whole, fraction]


def expected_specs(workdir: Path) -> list[JobSpec]:
    """What the bodies above mean in the core's units, for the user the token names."""
    common = {"command": (PY, "-c", "pass"), "project": "vision", "user": "ada"}
    return [
        JobSpec(
            **common,  # type: ignore[arg-type]
            gpus=2.0,
            gpu_model="virtual",
            multi_node=True,
            cpu_milli=1500,
            memory_mib=GIB,
            priority=5,
            priority_class="interactive",
            time_limit_s=600.0,
            name="walk",
            workdir=str(workdir),
            env={"WALK": "1"},
        ),
        JobSpec(
            **common,  # type: ignore[arg-type]
            gpus=0.5,
            gpu_memory_mib=8 * GIB,
            after=((1, "any"),),
            array_id=2,
            array_index=0,
            array_cap=1,
        ),
    ]


def default(f: Field[Any]) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else f.default


def unset(cls: type, values: list[Any], besides: tuple[str, ...] = ()) -> set[str]:
    """Fields of dataclass `cls` that no value in `values` sets to other than its default."""
    out = set()
    for f in fields(cls):
        if f.name in besides or (f.default is MISSING and f.default_factory is MISSING):
            continue  # required (no default: always set) or set by a later step
        if all(getattr(v, f.name) == default(f) for v in values):
            out.add(f.name)
    return out


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    args = (
        "--gpus",
        "4",
        "--nodes",
        "2",
        "--gpu-memory",
        "16GiB",
        "--cpus-per-node",
        "8",
        "--memory-per-node",
        "32GiB",
    )
    args += ("--kill-grace", "3", "--min-runtime", "5", "--policy-opt", "half_life_s=7")  # settings travel too
    with ServerProcess(tmp_path / "home", *args) as srv:
        yield srv


def wait_ended(http: httpx.Client, job_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while (job := http.get(f"/api/jobs/{job_id}").json())["state"] not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    return job


def test_the_walked_values_set_every_field() -> None:
    specs = expected_specs(Path("/tmp"))
    assert unset(JobSpec, specs, besides=("duration_s",)) == set(), "give the new JobSpec field a value in job_bodies"
    assert unset(Project, [PROJECT]) == set() and unset(Department, [DEPARTMENT]) == set()
    assert unset(NodeSpec, [SPARE]) == set()
    # Each concept has one wire form: the API sets every field a project or department has.
    assert set(ProjectSet.model_fields) == {f.name for f in fields(Project)} - {"name"}
    assert set(DepartmentSet.model_fields) == {f.name for f in fields(Department)} - {"name"}
    assert {f.name for f in fields(NodeSpec)} <= set(NodeOut.model_fields)
    # A trace carries every JobSpec field but what runs the job on a real machine.
    assert set(SPEC_COLUMNS) | set(NOT_IN_TRACE) == {f.name for f in fields(JobSpec)}


def test_every_field_walks_from_the_api_through_the_store_and_the_event_log_into_the_twin(
    server: ServerProcess, tmp_path: Path
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    with server.client() as admin:
        for path, body in [
            ("/api/departments/research", {k: v for k, v in vars_of(DEPARTMENT).items() if k != "name"}),
            ("/api/projects/vision", {k: v for k, v in vars_of(PROJECT).items() if k != "name"}),
        ]:
            r = admin.put(path, json=body)
            assert r.status_code == 200, r.text
        shown = next(p for p in admin.get("/api/projects").json() if p["name"] == "vision")
        assert {k: shown[k] for k in vars_of(PROJECT)} == vars_of(PROJECT)
        token = admin.post("/api/tokens", json={"user": "ada", "projects": ["vision"]}).json()["token"]
        nodes = admin.get("/api/nodes").json()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as ada:
        ids = []
        for body in job_bodies(workdir):
            r = ada.post("/api/jobs", json=body)
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        assert [wait_ended(ada, i)["state"] for i in ids] == ["succeeded", "succeeded"]
    expected = expected_specs(workdir)
    url = f"sqlite:///{server.home / 'factory.db'}"
    with Store(url) as store:
        assert [store.get_job(i).spec for i in ids] == expected  # the API's meaning, stored whole
        live_nodes = store.load_nodes()
        assert [{k: n[k] for k in vars_of(live_nodes[0])} for n in nodes] == [vars_of(n) for n in live_nodes]
        store.save_nodes([*live_nodes, SPARE])
        assert PROJECT in store.load_projects() and store.load_departments() == [DEPARTMENT]

    out = tmp_path / "history.csv"
    cli = [PY, "-c", "from aifactory.cli import main; main()", "export-trace", str(out), "--store", url]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    scenario = from_file(out)
    # The settings the floor scheduled with travel too, options included.
    assert scenario.settings == FactorySettings(kill_grace_s=3.0, min_runtime_s=5.0, half_life_s=7.0)
    twin = Twin(scenario, TwinSettings(scenario.settings))
    twin.run()
    f = twin.factory
    assert [n.spec for n in f.cluster] == [*live_nodes, SPARE]
    assert f.projects["vision"] == PROJECT and list(f.departments.values()) == [DEPARTMENT]
    row = {job_id: k for k, job_id in enumerate(ids)}  # a trace names jobs by row
    for i, spec in enumerate(expected):
        replayed = f.jobs[i].spec
        assert replayed.duration_s is not None and replayed.duration_s > 0  # its run time on the floor
        in_trace = replace(
            spec,
            after=tuple((row[d], kind) for d, kind in spec.after),
            array_id=None if spec.array_id is None else row[spec.array_id],
        )
        kept = {name: getattr(in_trace, name) for name in SPEC_COLUMNS if name != "duration_s"}
        assert {name: getattr(replayed, name) for name in kept} == kept
        # The trace keeps no command, workdir or env.
        assert replace(replayed, duration_s=None) == replace(in_trace, command=(), workdir=None, env={})


def vars_of(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}
