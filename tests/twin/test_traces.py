"""Our trace format (CSV and Parquet), its validation errors, and the Philly and openb loaders."""

from __future__ import annotations

from pathlib import Path

import pytest

from aifactory.core.errors import SpecError
from aifactory.twin.traces import openb, philly
from aifactory.twin.traces.format import read_trace, trace_job, write_trace

JOBS = [
    trace_job(0.0, "vision", 4.0, 3600.0, user="ada", gpu_model="A100", priority=2, multi_node=False),
    trace_job(12.5, "nlp", 0.5, 60.0, time_limit_s=120.0, priority_class="interactive"),
    trace_job(7.0, "nlp", 16.0, None, multi_node=True, work=1e18),
]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_write_then_read_gives_the_same_jobs_in_submit_order(tmp_path: Path, suffix: str) -> None:
    path = write_trace(JOBS, tmp_path / f"t{suffix}")
    assert read_trace(path) == sorted(JOBS, key=lambda j: j.submit_time)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "column", "words"),
    [
        ("submit_time,project,gpus\n0,a,1\n", "duration_s", "duration_s or a work column"),
        ("submit_time,project,duration_s\n0,a,1\n", "gpus", "required column"),
        ("submit_time,project,gpus,duration_s,colour\n", "colour", "unknown column"),
        ("submit_time,project,gpus,duration_s\n0,a,1,5\n1,a,two,5\n", "gpus", "row 2: not a number"),
        ("submit_time,project,gpus,duration_s\n0,a,1.5,5\n", "gpus", "row 1"),
        ("submit_time,project,gpus,duration_s\n-1,a,1,5\n", "submit_time", "negative"),
        ("submit_time,project,gpus,duration_s\n0,,1,5\n", "project", "row 1: missing"),
        ("submit_time,project,gpus,duration_s\n0,a,1,\n", "duration_s", "row 1: missing"),
        ("submit_time,project,gpus,duration_s,priority_class\n0,a,1,5,urgent\n", "priority_class", "urgent"),
        ("submit_time,project,gpus,duration_s,multi_node\n0,a,1,5,maybe\n", "multi_node", "boolean"),
        ("submit_time,project,gpus,duration_s,time_limit_s\n0,a,1,5,0\n", "time_limit_s", "positive"),
        ("submit_time,project,gpus,duration_s\n0,a,1,inf\n", "duration_s", "not finite"),
        ("submit_time,project,gpus,duration_s\n0,a,0,5\n", "gpus", "0 with CPU or memory"),
        ("submit_time,project,gpus,duration_s,cpu_milli\n0,a,1,5,-1\n", "cpu_milli", "negative"),
        ("submit_time,project,gpus,duration_s,memory_mib\n0,a,1,5,1.5\n", "memory_mib", "whole number"),
    ],
)
def test_bad_traces_name_the_column_and_the_row(tmp_path: Path, text: str, column: str, words: str) -> None:
    with pytest.raises(SpecError) as err:
        read_trace(write(tmp_path, text))
    assert err.value.field == column
    assert words in str(err.value)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        read_trace(tmp_path / "absent.csv")
    bad = tmp_path / "t.parquet"
    bad.write_text("not parquet")
    with pytest.raises(SpecError, match="Parquet"):
        read_trace(bad)


def test_philly_study_window(shared_data: Path) -> None:
    s = philly.load(shared_data / "traces" / "philly")
    assert len(s.jobs) == 68_503
    assert len(s.nodes) == 352 and sum(n.gpu_count for n in s.nodes) == 2816
    assert len(s.projects) == 11
    quotas = {p.name: p.quota for p in s.projects}
    assert quotas["6214e9"] == 512 and quotas["ed69ec"] == 64
    assert all(p.pool == p.name for p in s.projects)
    assert all(a.submit_time <= b.submit_time for a, b in zip(s.jobs, s.jobs[1:], strict=False))
    assert s.jobs[0].submit_time >= 0 and s.jobs[-1].submit_time < 61 * 86400
    assert all(j.spec.multi_node == (j.spec.gpus > 8) for j in s.jobs)
    assert sum(1 for j in s.jobs if j.spec.gpus == 1) == 64_073


def test_openb_pods_as_a_time_trace(shared_data: Path) -> None:
    s = openb.load(shared_data / "traces" / "openb")
    assert len(s.nodes) == 1213 and sum(n.gpu_count for n in s.nodes) == 6212
    assert all(j.spec.gpus > 0 for j in s.jobs)
    assert any(0 < j.spec.gpus < 1 for j in s.jobs)  # sharing pods keep their fraction
    assert {n.gpu_model for n in s.nodes} >= {"G2", "T4", "V100M32"}


def test_openb_time_trace_keeps_every_model_a_pod_allows(tmp_path: Path) -> None:
    head = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n"
    rows = ["p0,1000,10,1,1000,V100M16|V100M32,LS,Running,0,100,1", "p1,1000,10,1,500,,LS,Running,5,50,6"]
    (tmp_path / "pods.csv").write_text(head + "\n".join(rows) + "\n")
    jobs = openb.read_pods(tmp_path / "pods.csv")
    assert [(j.spec.gpu_model, j.spec.gpus, j.spec.duration_s) for j in jobs] == [
        ("V100M16|V100M32", 1.0, 100.0),
        (None, 0.5, 45.0),
    ]
