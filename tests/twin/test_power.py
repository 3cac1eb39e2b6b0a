"""The twin's power model and the power-off what-if, against energy worked out by hand."""

from __future__ import annotations

import pytest

from aifactory.core.cluster import NodeSpec
from aifactory.core.errors import SpecError
from aifactory.core.project import Project
from aifactory.twin.power import PowerSpec, power_spec
from aifactory.twin.traces.format import Scenario
from aifactory.twin.whatif import Variant, run_variants

from .helpers import job

# Round watts so the sums below can be checked by hand: per GPU slot 100 W host + 50 W idle, 250 W busy.
SPEC = PowerSpec(gpu="test", idle_w=50, busy_w=250, host_w=100, pue=1.0, grid_g_per_kwh=500, usd_per_kwh=0.2)
KWH = 3.6e6


def test_energy_of_one_job_on_one_node() -> None:
    scenario = Scenario("s", [job(0, 1, 3600.0)], [NodeSpec("n0", 2)], [Project("a", 2)])
    (r,) = run_variants(scenario, [Variant("fifo")], power=SPEC)
    joules = 2 * 150 * 3600 + 1 * 200 * 3600  # two GPUs powered for an hour, one of them busy
    assert r.summary["it_kwh"] == pytest.approx(joules / KWH)
    assert r.summary["energy_kwh"] == pytest.approx(0.5) and r.summary["peak_kw"] == pytest.approx(0.5)
    assert r.summary["tco2e"] == pytest.approx(0.5 * 500 / 1e6) and r.summary["energy_usd"] == pytest.approx(0.1)
    assert r.summary["projects"]["a"]["energy_kwh"] == pytest.approx(250 * 3600 / KWH)
    (r2,) = run_variants(scenario, [Variant("fifo")], power=PowerSpec("test", 50, 250, 100, pue=1.5))
    assert r2.summary["energy_kwh"] == pytest.approx(0.75)  # PUE multiplies the facility's energy


def test_idle_nodes_powered_off_and_booted_when_work_comes() -> None:
    """n0 runs A (0-100 s); n1 is never used; B arrives at 5,000 s when both are off."""
    jobs = [job(0, 1, 100.0), job(5000, 1, 100.0)]
    scenario = Scenario("s", jobs, [NodeSpec("n0", 1), NodeSpec("n1", 1)], [Project("a", 2)])
    on, off = run_variants(scenario, [Variant("fifo"), Variant("fifo", poweroff_after_s=600)], power=SPEC, boot_s=300)
    # Always on: two GPU slots at 150 W until B ends at 5,100 s, plus 200 W more while each job runs.
    assert on.summary["it_kwh"] == pytest.approx((2 * 150 * 5100 + 200 * 100 * 2) / KWH)
    assert on.summary["first_wait_s_mean"] == 0
    # Off after 600 s idle: n1 off at 600, n0 at 700; B boots n0 at 5,000 (drawing), runs 5,300-5,400.
    joules = 500 * 100 + 300 * 500 + 150 * 100 + 150 * 300 + 350 * 100
    assert off.summary["it_kwh"] == pytest.approx(joules / KWH)
    assert off.summary["first_wait_s_mean"] == pytest.approx(150)  # A 0 s, B 300 s (the boot)
    assert (off.summary["power_offs"], off.summary["boots"]) == (3, 1)  # n0 goes off again after B
    assert off.summary["finished"] == 2 and off.summary["rejected"] == 0


def test_power_spec_from_the_catalogue_names_its_sources() -> None:
    p100 = power_spec("P100")
    assert (p100.busy_w, p100.idle_w, p100.host_w) == (300, 60, 100)  # DGX-1: 3,200 W less 8 x 300 W, per GPU
    assert "DGX-1" in p100.sources["host_w"] and "Vadari" in p100.sources["idle_w"]
    assert power_spec("V100").busy_w == 330  # measured in training (Patterson et al. 2021)
    assert "Uptime" in p100.sources["pue"] and power_spec("H100", pue=1.3).sources["pue"] == "given"
    with pytest.raises(SpecError):
        PowerSpec("x", idle_w=300, busy_w=200, host_w=0)
    with pytest.raises(SpecError):
        PowerSpec("x", idle_w=10, busy_w=200, host_w=0, pue=0.9)


def test_held_gpus_draw_by_their_mean_utilisation() -> None:
    half = PowerSpec(gpu="test", idle_w=50, busy_w=250, host_w=100, pue=1.0, util=0.5)
    scenario = Scenario("s", [job(0, 1, 3600.0)], [NodeSpec("n0", 2)], [Project("a", 2)])
    (r,) = run_variants(scenario, [Variant("fifo")], power=half)
    assert half.held_w == 150
    assert r.summary["it_kwh"] == pytest.approx((2 * 150 * 3600 + 1 * 100 * 3600) / KWH)
    with pytest.raises(SpecError):
        PowerSpec("x", 50, 250, 100, util=1.5)


def test_the_twin_obeys_the_cores_power_budget() -> None:
    # Two 1-GPU jobs at once on 2 GPUs: 2 x 150 W idle + 200 W per busy GPU. A 550 W budget allows one.
    scenario = Scenario("s", [job(0, 1, 100.0), job(0, 1, 100.0)], [NodeSpec("n0", 2)], [Project("a", 2)])
    free, capped = run_variants(scenario, [Variant("fifo"), Variant("fifo", power_budget_w=550)], power=SPEC)
    assert free.summary["peak_kw"] == pytest.approx(0.7) and free.summary["first_wait_s_mean"] == 0
    assert capped.summary["peak_kw"] == pytest.approx(0.5) and capped.summary["first_wait_s_mean"] == pytest.approx(50)
    with pytest.raises(SpecError, match="power"):
        run_variants(scenario, [Variant("fifo", power_budget_w=550)])  # no power model: no estimates


def test_a_power_cap_slows_jobs_and_lowers_their_draw_as_measured() -> None:
    from aifactory.twin.caps import power_factor, time_factor

    assert time_factor(0.6) == pytest.approx(1.068) and power_factor(0.6) * 1.068 == pytest.approx(0.863)
    assert time_factor(1.0) == 1.0 and power_factor(1.0) == 1.0
    scenario = Scenario("s", [job(0, 1, 3600.0)], [NodeSpec("n0", 1)], [Project("a", 1)])
    plain, capped = run_variants(scenario, [Variant("fifo"), Variant("fifo", power_cap=0.6)], power=SPEC)
    assert capped.summary["jct_s_mean"] == pytest.approx(3600 * 1.068)
    busy = 250 * power_factor(0.6)
    assert capped.summary["it_kwh"] == pytest.approx((100 + busy) * 3600 * 1.068 / KWH)
    assert plain.summary["it_kwh"] == pytest.approx((100 + 250) * 3600 / KWH)
    with pytest.raises(SpecError, match="measured"):
        run_variants(scenario, [Variant("fifo", power_cap=0.5)], power=SPEC)


def test_energy_per_job() -> None:
    scenario = Scenario("s", [job(0, 1, 3600.0), job(0, 2, 1800.0)], [NodeSpec("n0", 4)], [Project("a", 4)])
    (r,) = run_variants(scenario, [Variant("fifo")], power=SPEC)
    per_gpu_hour = 250 * 3600 / KWH  # held power x an hour
    assert r.summary["job_energy_kwh_max"] == pytest.approx(per_gpu_hour)
    assert r.summary["job_energy_kwh_mean"] == pytest.approx(per_gpu_hour)  # 1 GPU x 1 h, 2 GPUs x 0.5 h
    assert r.recorder.job_gpu_s == [3600.0, 3600.0]


def test_the_twin_obeys_a_pools_power_budget() -> None:
    nodes = [NodeSpec("a0", 2, pool="a"), NodeSpec("b0", 2, pool="b")]
    jobs = [job(0, 1, 100.0, "ta"), job(0, 1, 100.0, "ta"), job(0, 1, 100.0, "tb"), job(0, 1, 100.0, "tb")]
    projects = [Project("ta", 2, pool="a"), Project("tb", 2, pool="b")]
    scenario = Scenario("s", jobs, nodes, projects)
    # Pool a: its 2 slots at 150 W (300 W) and 200 W per busy GPU; 550 W lets one of its jobs run at a time.
    (r,) = run_variants(scenario, [Variant("fifo", pool_power_budgets_w=(("a", 550.0),))], power=SPEC)
    assert r.summary["projects"]["ta"]["first_wait_mean_s"] == pytest.approx(50)  # 0 and 100 s
    assert r.summary["projects"]["tb"]["first_wait_mean_s"] == 0
