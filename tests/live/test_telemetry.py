"""GPU telemetry against a fake NVML (tests/fakes/pynvml.py, the pynvml boundary): readings,
their attribution to the jobs holding the GPUs, the stored history and a job's usage."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

from aifactory.core.cluster import Cluster, Node
from aifactory.core.job import Placement
from aifactory.live.telemetry import NvmlReader, Telemetry, holders_of, job_of_pid

FAKES = Path(__file__).resolve().parents[1] / "fakes"


def held_by(placements: dict[int, Placement]) -> Cluster:
    """A node "n" of 4 GPUs with these jobs holding their placements."""
    cluster = Cluster([Node("n", 4)])
    for job_id, placement in placements.items():
        cluster.allocate(job_id, placement)
    return cluster


def fake_gpus(path: Path, *gpus: dict[str, object]) -> None:
    path.write_text(json.dumps({"gpus": list(gpus)}))


def gpu(i: int, util: float, power_w: float | None = 300, used_mib: int = 1000, procs: list[list[int]] = ()) -> dict:  # type: ignore[assignment]
    out: dict[str, object] = {"name": "NVIDIA H100 80GB HBM3", "uuid": f"GPU-{i}", "total_mib": 81559}
    out |= {"util": util, "used_mib": used_mib, "temp": 60, "procs": list(procs)}
    if power_w is not None:
        out["power_mw"] = power_w * 1000
    return out


@pytest.fixture
def nvml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    spec = importlib.util.spec_from_file_location("pynvml", FAKES / "pynvml.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "pynvml", module)
    path = tmp_path / "nvml.json"
    monkeypatch.setenv("AIFACTORY_FAKE_NVML", str(path))
    return path


def test_no_nvml_is_no_telemetry(nvml: Path) -> None:
    assert NvmlReader("n").open() is False  # no file: the library is "missing"


def test_readings_and_a_gpu_without_power(nvml: Path) -> None:
    fake_gpus(nvml, gpu(0, 87), gpu(1, 3, power_w=None))
    reader = NvmlReader("node0")
    assert reader.open()
    first, second = reader.read()
    assert (first.node, first.index, first.uuid, first.utilization, first.power_w) == ("node0", 0, "GPU-0", 87, 300)
    assert (first.memory_used_mib, first.memory_total_mib, first.temperature_c) == (1000, 81559, 60)
    assert second.power_w is None  # not supported on that GPU: unknown, not zero
    reader.close()


def test_usage_is_folded_into_the_job_holding_each_gpu(nvml: Path) -> None:
    """A hand-checked minute: job 1 holds GPUs 0-1 whole, jobs 2 and 3 share GPU 2 half and half."""
    holders = holders_of(
        held_by(
            {
                1: Placement((("n", (0, 1)),)),
                2: Placement((("n", (2,)),), milli=500),
                3: Placement((("n", (2,)),), milli=500),
            }
        )
    )
    t = Telemetry(idle_threshold=5)
    fake_gpus(nvml, gpu(0, 90, used_mib=2000), gpu(1, 70), gpu(2, 40, power_w=200), gpu(3, 0, power_w=50))
    reader = NvmlReader("n")
    assert reader.open()
    for now in (0.0, 10.0, 20.0):  # three readings 10 s apart: 20 s counted (the first starts the clock)
        t.fold(reader.read(), now, holders, lambda j: "p")
    one, two, three = t.jobs[1], t.jobs[2], t.jobs[3]
    assert (one.samples, one.util_mean, one.util_peak, one.memory_peak_mib) == (6, 80, 90, 2000)
    assert one.energy_j == pytest.approx(2 * 300 * 20)  # two GPUs at 300 W for 20 s
    assert one.busy_gpu_s == pytest.approx((0.9 + 0.7) * 20) and one.gpu_s == pytest.approx(40)
    assert two.energy_j == pytest.approx(200 * 20 / 2) and two.gpu_s == pytest.approx(10)  # half the GPU
    assert two.busy_gpu_s == three.busy_gpu_s == pytest.approx(0.4 * 20 / 2)
    assert 4 not in t.jobs and one.idle_since is None
    samples = t.take_samples(flush=True)
    by_gpu = {(s.node, s.gpu): s for s in samples}
    assert by_gpu[("n", 0)].job_id == 1 and by_gpu[("n", 0)].project == "p" and by_gpu[("n", 0)].seconds == 20
    assert by_gpu[("n", 2)].job_id is None  # shared: nobody's alone
    assert by_gpu[("n", 3)].job_id is None and by_gpu[("n", 3)].utilization == 0


def test_a_job_whose_gpus_stay_idle_is_flagged_from_when_they_went_idle(nvml: Path) -> None:
    holders = holders_of(held_by({7: Placement((("n", (0,)),))}))
    t = Telemetry(idle_threshold=5)
    reader = NvmlReader("n")
    fake_gpus(nvml, gpu(0, 50))
    assert reader.open()
    t.fold(reader.read(), 0, holders, lambda j: "p")
    fake_gpus(nvml, gpu(0, 2))
    t.fold(reader.read(), 5, holders, lambda j: "p")
    t.fold(reader.read(), 10, holders, lambda j: "p")
    assert t.jobs[7].idle_since == 5
    fake_gpus(nvml, gpu(0, 60))
    t.fold(reader.read(), 15, holders, lambda j: "p")
    assert t.jobs[7].idle_since is None


def test_gpu_processes_are_mapped_to_jobs_by_process_group(nvml: Path) -> None:
    me = os.getpid()
    pgid = os.getpgid(me)
    fake_gpus(nvml, gpu(0, 50, procs=[[me, 700], [999_999_999, 5]]))
    reader = NvmlReader("n")
    assert reader.open()
    t = Telemetry()
    t.attribute_processes(reader.job_memory({pgid: 42}))
    assert t.process_memory == {42: 700}  # the vanished pid counts for nobody
    assert job_of_pid(me, {}) is None or job_of_pid(me, {}) != 42
