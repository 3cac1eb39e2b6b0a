"""Alibaba openb (2023) pods as a time-based trace: heterogeneous GPU models and fractions.

The published experiment (twin/openb.py) ignores time; this loader keeps it: a pod
arrives at `creation_time` and runs until `deletion_time` (seconds from the trace
start). CPU-only pods and pods never scheduled in production are left out. All
pods belong to one project, `openb`, on the 1,213 GPU nodes of the node list.
"""

from __future__ import annotations

import csv
from pathlib import Path

from aifactory.core.cluster import NodeSpec
from aifactory.core.errors import SpecError
from aifactory.core.job import MILLI
from aifactory.core.project import Project
from aifactory.twin.traces.format import Scenario, TraceJob, trace_job

PROJECT = "openb"


def default_dir() -> Path:
    return Path(__file__).resolve().parents[5] / "shared" / "data" / "traces" / "openb"


def read_nodes(path: Path) -> list[NodeSpec]:
    if not path.is_file():
        raise SpecError("trace", f"openb node list not found: {path}")
    with path.open(newline="") as fh:
        return [
            NodeSpec(
                name=r["sn"],
                gpu_count=int(r["gpu"]),
                gpu_model=r["model"],
                cpu_milli=int(r["cpu_milli"]),
                memory_mib=int(r["memory_mib"]),
            )
            for r in csv.DictReader(fh)
        ]


def read_pods(path: Path) -> list[TraceJob]:
    if not path.is_file():
        raise SpecError("trace", f"openb pod list not found: {path}")
    jobs: list[TraceJob] = []
    with path.open(newline="") as fh:
        for i, r in enumerate(csv.DictReader(fh), start=1):
            try:
                num, milli = int(r["num_gpu"]), int(r["gpu_milli"])
                if num == 0 or not r["scheduled_time"] or not r["deletion_time"]:
                    continue
                created, deleted = float(r["creation_time"]), float(r["deletion_time"])
            except (KeyError, ValueError):
                raise SpecError("num_gpu", f"{path} row {i}: bad pod row") from None
            gpus = milli / MILLI if num == 1 and milli < MILLI else float(num)
            model = r["gpu_spec"].strip() or None  # every allowed model: "V100M16|V100M32" is any of them
            jobs.append(trace_job(created, PROJECT, gpus, max(0.0, deleted - created), gpu_model=model))
    jobs.sort(key=lambda j: j.submit_time)
    return jobs


def load(directory: Path | None = None, limit: int | None = None) -> Scenario:
    directory = directory or default_dir()
    nodes = read_nodes(directory / "openb_node_list_gpu_node.csv")
    jobs = read_pods(directory / "openb_pod_list_default.csv")
    if limit is not None:
        jobs = jobs[:limit]
    total = float(sum(n.gpu_count for n in nodes))
    return Scenario("openb", jobs, nodes, [Project(name=PROJECT, quota=total)])
